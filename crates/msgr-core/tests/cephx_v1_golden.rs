//! msgr1 + cephx against real traffic (`tests/data/v1-cephx/`, see its README): the captured
//! MAuth exchange (the same cephx structures msgr2 carries in AUTH frames) verifies with the
//! keyring and the session key comes out of the MAuthReply.
//!
//! Finding: although the cluster had `cephx_sign_messages` on, no message of these monitor
//! sessions is signed (every footer sig is 0): Ceph signs msgr1 messages only on connections
//! authenticated by an authorizer (to OSDs, MDSs, managers), never on a client's monitor
//! session. Signing therefore has no golden vector here and is not implemented yet.

use std::path::PathBuf;

use msgr_core::auth::cephx::exchange::{
    challenge_proof, read_session_key_reply, AuthenticateRequest, ServerChallenge,
};
use msgr_core::auth::cephx::{CryptoKey, Keyring};
use msgr_core::wire::crc::ceph_crc32c;
use msgr_core::wire::{ConnectMsg, ConnectReply, MsgFooter, MsgHeader, LEGACY_ADDR_LEN};

const CEPH_MSG_AUTH: u16 = 17;
const CEPH_MSG_AUTH_REPLY: u16 = 18;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/v1-cephx")
        .join(name)
}

fn load(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(data(&format!("{name}.hex"))).unwrap();
    let hex: String = text.split_whitespace().collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn client_key() -> CryptoKey {
    *Keyring::load(&data("cephx.keyring"))
        .unwrap()
        .get("client.admin")
        .unwrap()
}

/// A message as it was on the wire.
struct Wire {
    header: MsgHeader,
    front: Vec<u8>,
    middle: Vec<u8>,
    footer: MsgFooter,
    /// Offset of the front in the stream.
    front_at: usize,
}

/// The messages of one direction (handshake skipped; no authorizers in these sessions; the SEQ
/// exchange adds a u64 each way).
fn messages(stream: &[u8], client: bool) -> Vec<Wire> {
    let mut at = if client {
        let c = ConnectMsg::decode(&stream[9 + LEGACY_ADDR_LEN..]).unwrap();
        9 + LEGACY_ADDR_LEN + ConnectMsg::LEN + c.authorizer_len as usize + 8
    } else {
        let r = ConnectReply::decode(&stream[9 + 2 * LEGACY_ADDR_LEN..]).unwrap();
        9 + 2 * LEGACY_ADDR_LEN + ConnectReply::LEN + r.authorizer_len as usize + 8
    };
    let mut out = Vec::new();
    while at < stream.len() {
        match stream[at] {
            7 => {
                let header = MsgHeader::decode(&stream[at + 1..]).unwrap();
                let front_at = at + 1 + MsgHeader::LEN;
                let mut p = front_at;
                let mut take = |n: u32| {
                    let s = stream[p..p + n as usize].to_vec();
                    p += n as usize;
                    s
                };
                let (front, middle) = (take(header.front_len), take(header.middle_len));
                let p = front_at + front.len() + middle.len() + header.data_len as usize;
                let footer = MsgFooter::decode(&stream[p..], true).unwrap();
                at = p + MsgFooter::LEN_NEW;
                out.push(Wire {
                    header,
                    front,
                    middle,
                    footer,
                    front_at,
                });
            }
            8 | 14 | 15 => at += 9,
            t => panic!("unexpected tag {t} at {at}"),
        }
    }
    out
}

/// MAuthReply front: le32 protocol, le32 result, le64 global id, bufferlist, string.
fn auth_reply_payload(front: &[u8]) -> (u32, i32, Vec<u8>) {
    let protocol = u32::from_le_bytes(front[0..4].try_into().unwrap());
    let result = i32::from_le_bytes(front[4..8].try_into().unwrap());
    let len = u32::from_le_bytes(front[16..20].try_into().unwrap()) as usize;
    (protocol, result, front[20..20 + len].to_vec())
}

/// MAuth front: paxos header (18 bytes), le32 protocol, bufferlist payload, le32 epoch.
fn auth_payload(front: &[u8]) -> Vec<u8> {
    let len = u32::from_le_bytes(front[22..26].try_into().unwrap()) as usize;
    front[26..26 + len].to_vec()
}

/// The session key of a connection from its captured MAuth exchange, after checking the proof.
fn session_key_of(conn: &str) -> CryptoKey {
    let c2s = messages(&load(&format!("{conn}.c2s")), true);
    let s2c = messages(&load(&format!("{conn}.s2c")), false);
    let auths: Vec<&Wire> = c2s
        .iter()
        .filter(|m| m.header.msg_type == CEPH_MSG_AUTH)
        .collect();
    let replies: Vec<&Wire> = s2c
        .iter()
        .filter(|m| m.header.msg_type == CEPH_MSG_AUTH_REPLY)
        .collect();
    assert!(
        auths.len() >= 2 && replies.len() >= 2,
        "{conn}: two MAuth rounds"
    );
    // Round 1 answer: the challenge, as in msgr2.
    let (protocol, result, challenge) = auth_reply_payload(&replies[0].front);
    assert_eq!((protocol, result), (2, 0), "{conn}: cephx chosen");
    let challenge = ServerChallenge::decode(&challenge).unwrap();
    // Round 2: the client's proof, then the ticket reply.
    let request = AuthenticateRequest::decode(&auth_payload(&auths[1].front)).unwrap();
    let proof = challenge_proof(&client_key(), challenge.0, request.client_challenge);
    assert_eq!(proof, request.key, "{conn}: proof of the client key");
    let (_, result, tickets) = auth_reply_payload(&replies[1].front);
    assert_eq!(result, 0);
    let reply = read_session_key_reply(&tickets, &client_key()).unwrap();
    *reply.session_key().unwrap()
}

#[test]
fn captured_mauth_exchange_verifies_and_yields_the_session_key() {
    for conn in ["0", "1"] {
        session_key_of(conn);
    }
}

#[test]
fn monitor_sessions_are_not_signed() {
    let mut count = 0;
    for (name, client) in [
        ("0.c2s", true),
        ("0.s2c", false),
        ("1.c2s", true),
        ("1.s2c", false),
    ] {
        for m in messages(&load(name), client) {
            // The crcs are the sections' own, so the footers were decoded in the right place.
            assert_eq!(m.footer.front_crc, ceph_crc32c(0, &m.front), "{name}");
            assert_eq!(m.footer.middle_crc, ceph_crc32c(0, &m.middle), "{name}");
            assert_eq!(
                m.footer.sig, 0,
                "{name} seq {} at {}",
                m.header.seq, m.front_at
            );
            assert_eq!(m.footer.flags & MsgFooter::FLAG_SIGNED, 0);
            count += 1;
        }
    }
    assert!(count >= 20, "only {count} messages");
}

/// [`MonAuthV1`] fed the monitor's captured MAuthReplies: it answers the challenge with an
/// MAuth carrying a correct proof of the key (as the CLI's second MAuth did), and takes the
/// session key out of the final reply. A wrong key fails there, saying so.
#[test]
fn mon_auth_v1_replays_the_captured_exchange() {
    use msgr_core::auth::cephx::mon_v1::{MonAuthStep, MonAuthV1, MSG_AUTH};
    use msgr_core::wire::EntityType;
    use msgr_core::Message;

    let s2c = messages(&load("0.s2c"), false);
    let replies: Vec<&Wire> = s2c
        .iter()
        .filter(|m| m.header.msg_type == CEPH_MSG_AUTH_REPLY)
        .collect();
    let reply = |i: usize| Message::new(CEPH_MSG_AUTH_REPLY, replies[i].front.clone());

    let mut a = MonAuthV1::new(client_key(), EntityType::CLIENT, "admin");
    let first = a.start();
    assert_eq!(first.msg_type, MSG_AUTH);
    // Offers cephx only, as client.admin with no global id yet.
    assert_eq!(
        &first.front[18..],
        &[
            0, 0, 0, 0, 30, 0, 0, 0, 1, 1, 0, 0, 0, 2, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, b'a', b'd',
            b'm', b'i', b'n', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ][..]
    );
    let MonAuthStep::Send(proof) = a.handle_reply(&reply(0)).unwrap() else {
        panic!("the challenge is answered with a proof")
    };
    let (_, _, challenge) = auth_reply_payload(&replies[0].front);
    let challenge = ServerChallenge::decode(&challenge).unwrap();
    let req = AuthenticateRequest::decode(&auth_payload(&proof.front)).unwrap();
    assert_eq!(
        req.key,
        challenge_proof(&client_key(), challenge.0, req.client_challenge)
    );
    let MonAuthStep::Done {
        global_id,
        session_key,
    } = a.handle_reply(&reply(1)).unwrap()
    else {
        panic!("the ticket reply finishes it")
    };
    assert!(global_id > 0);
    assert_eq!(session_key, session_key_of("0"));
    assert!(
        a.handle_reply(&reply(1)).is_err(),
        "nothing is waiting any more"
    );

    let mut wrong = client_key();
    wrong.secret[0] ^= 1;
    let mut a = MonAuthV1::new(wrong, EntityType::CLIENT, "admin");
    a.start();
    a.handle_reply(&reply(0)).unwrap();
    let e = a.handle_reply(&reply(1)).unwrap_err().to_string();
    assert!(e.contains("wrong key"), "{e}");
}
