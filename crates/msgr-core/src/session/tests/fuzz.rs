//! Random peer bytes at every stage: never a panic; an error always closes the link.

use super::*;
use proptest::prelude::*;

/// Feed `data` in chunks of the given sizes; check the error contract.
fn feed(s: &mut Session, data: &[u8], cuts: &[usize], now: Instant) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::new();
    let mut rest = data;
    let mut sizes = cuts.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&rest.len()))
            .min(rest.len())
            .max(1);
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        if s.handle_input(&mut buf, now).is_err() {
            prop_assert!(!s.has_link());
            let mut closed = false;
            while let Some(e) = s.poll_event() {
                closed |= matches!(e, SessionEvent::CloseLink);
            }
            prop_assert!(closed, "error without CloseLink");
            return Ok(());
        }
        let mut out = Vec::new();
        while s.poll_transmit(&mut out) > 0 {}
    }
    Ok(())
}

/// Bytes that take a server to the point of reading a connect message.
fn server_prefix() -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_slice(crate::wire::BANNER);
    addr(6800, 42).encode_legacy(&mut b);
    b.to_vec()
}

/// Bytes that take a client to the point of reading a connect reply.
fn client_prefix() -> Vec<u8> {
    let mut b = BytesMut::new();
    b.put_slice(crate::wire::BANNER);
    addr(6900, 42).encode_legacy(&mut b);
    addr(6800, 42).encode_legacy(&mut b);
    b.to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_peer_bytes(
        stage in 0u8..5,
        data in prop::collection::vec(any::<u8>(), 0..1500),
        cuts in prop::collection::vec(1usize..80, 1..16),
    ) {
        let mut p = Pair::new(Policy::lossless_peer(), Policy::lossless_peer());
        let now = p.now;
        match stage {
            // Fresh server, garbage instead of a banner.
            0 => {
                p.b.s.link_up(now);
                feed(&mut p.b.s, &data, &cuts, now)?;
            }
            // Server past banner and address: garbage connect messages.
            1 => {
                p.b.s.link_up(now);
                let mut d = server_prefix();
                d.extend_from_slice(&data);
                feed(&mut p.b.s, &d, &cuts, now)?;
                // Answer any connect that got through, then keep feeding.
                while let Some(e) = p.b.s.poll_event() {
                    if let SessionEvent::AcceptRequest(_) = e {
                        p.b.s.resolve_accept(AcceptDecision::New, None, now);
                    }
                }
                feed(&mut p.b.s, &data, &cuts, now)?;
            }
            // Client past the server's banner: garbage connect replies.
            2 => {
                p.a.s.link_up(now);
                let mut d = client_prefix();
                d.extend_from_slice(&data);
                feed(&mut p.a.s, &d, &cuts, now)?;
            }
            // Open sessions, garbage frames either way.
            _ => {
                p.link_up();
                p.exchange();
                prop_assert_eq!(p.a.s.state(), SessionState::Open);
                let s = if stage == 3 { &mut p.a.s } else { &mut p.b.s };
                feed(s, &data, &cuts, now)?;
            }
        }
    }
}
