//! msgr2 decoders refuse bad input with errors that say what happened.

use bytes::BytesMut;
use msgr_core::v2::banner::{Banner, FEATURE_COMPRESSION};
use msgr_core::v2::frame::{decode_crc, Decoded, FrameLimits, Preamble};
use msgr_core::v2::payload::Control;
use msgr_core::v2::secure::{Role, SecureKeys};
use msgr_core::v2::{encode_crc, Tag, V2Error};

fn frame(tag: Tag, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_crc(tag, &[(payload, 8)], &mut out);
    out.to_vec()
}

#[test]
fn msgr1_banner_is_refused_with_a_hint() {
    let err = Banner::decode(b"ceph v027").unwrap_err();
    assert!(matches!(err, V2Error::BadBanner(_)));
    assert!(err.to_string().contains("v1:"), "{err}");
    assert_eq!(
        Banner::decode(b"ceph v2"),
        Ok(None),
        "a partial banner waits"
    );
}

#[test]
fn revision_0_peer_is_refused() {
    let ours = Banner::default();
    let err = ours
        .check_peer(&Banner {
            supported: 0,
            required: 0,
        })
        .unwrap_err();
    assert_eq!(err, V2Error::Revision0Peer);
    assert!(err.to_string().contains("msgr2.0 is refused"), "{err}");
    let err = ours
        .check_peer(&Banner {
            supported: 3,
            required: FEATURE_COMPRESSION,
        })
        .unwrap_err();
    assert!(
        matches!(err, V2Error::MissingFeatures { missing: 2, .. }),
        "{err:?}"
    );
}

#[test]
fn preamble_and_segment_crcs_are_checked() {
    let good = frame(Tag::Ack, &7u64.to_le_bytes());
    let mut bad = good.clone();
    bad[5] ^= 1;
    assert!(matches!(
        decode_crc(&bad, &FrameLimits::default()),
        Err(V2Error::PreambleCrc { .. })
    ));
    let mut bad = good.clone();
    bad[33] ^= 1;
    assert!(matches!(
        decode_crc(&bad, &FrameLimits::default()),
        Err(V2Error::SegmentCrc { index: 0, .. })
    ));
    assert_eq!(
        decode_crc(&good[..40], &FrameLimits::default()),
        Ok(Decoded::Need(good.len()))
    );
}

fn with_preamble(edit: impl FnOnce(&mut Preamble)) -> Vec<u8> {
    let mut p = Preamble::new(Tag::Ack, &[(8, 8)]);
    edit(&mut p);
    p.to_bytes().to_vec()
}

#[test]
fn preamble_fields_are_checked_before_buffering() {
    let limits = FrameLimits { max_segment: 1000 };
    let huge = with_preamble(|p| p.segments[0].len = 1 << 30);
    let err = decode_crc(&huge, &limits).unwrap_err();
    assert_eq!(
        err,
        V2Error::SegmentTooLong {
            index: 0,
            len: 1 << 30,
            limit: 1000
        }
    );
    let zero = with_preamble(|p| p.num_segments = 0);
    assert_eq!(
        decode_crc(&zero, &limits).unwrap_err(),
        V2Error::BadSegmentCount(0)
    );
    let compressed = with_preamble(|p| p.flags = 1);
    assert_eq!(
        decode_crc(&compressed, &limits).unwrap_err(),
        V2Error::Compressed(1)
    );
    // An unknown tag passes the framing checks and is refused by name.
    let mut unknown = with_preamble(|p| p.tag = 99);
    unknown.extend_from_slice(&[0; 8]);
    let crc = msgr_core::wire::crc::ceph_crc32c(u32::MAX, &[0; 8]);
    unknown.extend_from_slice(&crc.to_le_bytes());
    let Ok(Decoded::Frame(f, 44)) = decode_crc(&unknown, &limits) else {
        panic!()
    };
    assert_eq!(f.tag().unwrap_err(), V2Error::UnknownTag(99));
}

#[test]
fn aborted_and_garbled_late_status_are_errors() {
    let mut out = BytesMut::new();
    encode_crc(Tag::Message, &[(&[0u8; 41], 8), (b"front", 8)], &mut out);
    let status_at = 32 + 41 + 4 + 5;
    for (status, want) in [
        (0x1, V2Error::Aborted(0x1)),
        (0x5, V2Error::BadLateStatus(0x5)),
    ] {
        let mut bad = out.to_vec();
        bad[status_at] = status;
        assert_eq!(decode_crc(&bad, &FrameLimits::default()).unwrap_err(), want);
    }
}

#[test]
fn truncated_payloads_name_the_frame() {
    let err = Control::decode(Tag::ClientIdent, &[2, 0, 0, 0, 0]).unwrap_err();
    assert!(err.to_string().contains("CLIENT_IDENT"), "{err}");
    let err = Control::decode(Tag::Message, &[]).unwrap_err();
    assert!(matches!(
        err,
        V2Error::UnexpectedTag {
            tag: Tag::Message,
            ..
        }
    ));
}

#[test]
fn short_connection_secret_is_refused() {
    let err = SecureKeys::from_connection_secret(&[0; 39], Role::Client).unwrap_err();
    assert_eq!(err, V2Error::SecretTooShort(39));
}
