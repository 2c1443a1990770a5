//! cephx and secure mode against real traffic (see `tests/data/v2/README.md`): the captured
//! exchange verifies with the keyring, the session key and connection secret come out of the
//! captured AUTH_DONE, the AUTH_SIGNATUREs match, and the secure-mode frames decrypt; a flipped
//! byte anywhere fails the GCM tag.

mod v2_data;

use bytes::BytesMut;
use msgr_core::auth::cephx::exchange::{
    auth_signature, challenge_proof, read_session_key_reply, AuthenticateRequest, MonAuthRequest,
    ServerChallenge, SessionKeyReply,
};
use msgr_core::auth::cephx::{CephxError, CryptoKey, Keyring};
use msgr_core::auth::{METHOD_CEPHX, MODE_SECURE};
use msgr_core::v2::frame::{decode_crc, Decoded, FrameLimits};
use msgr_core::v2::payload::Control;
use msgr_core::v2::secure::{Role, SecureDecoded, SecureKeys};
use msgr_core::v2::{Banner, Tag, V2Error};
use v2_data::{load, path};

fn keyring() -> Keyring {
    Keyring::load(&path("cephx.keyring")).unwrap()
}

fn client_key() -> CryptoKey {
    *keyring().get("client.admin").unwrap()
}

/// The crc-mode frames at the start of a stream (those before secure mode starts, or all):
/// (tag, payload, offset just past the frame). Stops at the first frame that does not decode.
fn crc_prefix(stream: &[u8]) -> Vec<(Tag, Control, usize)> {
    let (_, mut at) = Banner::decode(stream).unwrap().unwrap();
    let mut out = Vec::new();
    while let Ok(Decoded::Frame(f, used)) = decode_crc(&stream[at..], &FrameLimits::default()) {
        at += used;
        let tag = f.tag().unwrap();
        if tag == Tag::Message {
            break;
        }
        out.push((tag, Control::decode(tag, f.payload()).unwrap(), at));
    }
    out
}

struct Exchange {
    c2s: Vec<u8>,
    s2c: Vec<u8>,
    request: AuthenticateRequest,
    challenge: ServerChallenge,
    done_payload: Vec<u8>,
    con_mode: u32,
    /// Offsets just past the client's AUTH_REQUEST_MORE and the server's AUTH_DONE.
    c2s_pre_auth: usize,
    s2c_pre_auth: usize,
}

fn exchange(capture: &str) -> Exchange {
    let c2s = load(&format!("{capture}.c2s"));
    let s2c = load(&format!("{capture}.s2c"));
    let cf = crc_prefix(&c2s);
    let sf = crc_prefix(&s2c);
    let Control::AuthRequest {
        method,
        auth_payload,
        ..
    } = &cf[1].1
    else {
        panic!("{:?}", cf[1])
    };
    assert_eq!(*method, METHOD_CEPHX);
    let req = MonAuthRequest::decode(auth_payload).unwrap();
    assert_eq!((req.entity_type, req.entity_id.as_str()), (8, "admin"));
    let Control::AuthRequestMore { auth_payload } = &cf[2].1 else {
        panic!("{:?}", cf[2])
    };
    let request = AuthenticateRequest::decode(auth_payload).unwrap();
    let Control::AuthReplyMore { auth_payload } = &sf[1].1 else {
        panic!("{:?}", sf[1])
    };
    let challenge = ServerChallenge::decode(auth_payload).unwrap();
    let Control::AuthDone {
        auth_payload,
        con_mode,
        ..
    } = &sf[2].1
    else {
        panic!("{:?}", sf[2])
    };
    Exchange {
        c2s_pre_auth: cf[2].2,
        s2c_pre_auth: sf[2].2,
        done_payload: auth_payload.clone(),
        con_mode: *con_mode,
        c2s,
        s2c,
        request,
        challenge,
    }
}

fn reply(x: &Exchange) -> SessionKeyReply {
    read_session_key_reply(&x.done_payload, &client_key()).unwrap()
}

#[test]
fn keyring_parses_with_both_entities() {
    let k = keyring();
    let names: Vec<&str> = k.entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["mon.", "client.admin"]);
    let err = k.get("client.bob").unwrap_err();
    assert!(err.to_string().contains("no key for client.bob"), "{err}");
}

#[test]
fn captured_proof_verifies_with_the_keyring_only() {
    for capture in [
        "crc-cephx.0",
        "crc-cephx.1",
        "secure-cephx.0",
        "secure-cephx.1",
    ] {
        let x = exchange(capture);
        let proof = challenge_proof(&client_key(), x.challenge.0, x.request.client_challenge);
        assert_eq!(proof, x.request.key, "{capture}: proof of the client key");
        let mon_key = *keyring().get("mon.").unwrap();
        let wrong = challenge_proof(&mon_key, x.challenge.0, x.request.client_challenge);
        assert_ne!(wrong, x.request.key);
        // Our encoder reproduces the captured request.
        let mut again = BytesMut::new();
        x.request.encode(&mut again);
        let Control::AuthRequestMore { auth_payload } = &crc_prefix(&x.c2s)[2].1 else {
            panic!()
        };
        assert_eq!(&again[..], &auth_payload[..]);
    }
}

#[test]
fn session_key_and_signatures_match_the_capture() {
    for capture in ["crc-cephx.0", "crc-cephx.1"] {
        let x = exchange(capture);
        let r = reply(&x);
        let key = r.session_key().expect("auth ticket");
        assert!(
            r.connection_secret.is_empty(),
            "crc mode needs no connection secret"
        );
        // Each side signs what it received before AUTH_SIGNATURE, banner included.
        let client_sig = crc_prefix(&x.c2s)[3].1.clone();
        let server_sig = crc_prefix(&x.s2c)[3].1.clone();
        assert_eq!(
            client_sig,
            Control::AuthSignature {
                signature: auth_signature(key, &x.s2c[..x.s2c_pre_auth])
            },
            "{capture}: client signature"
        );
        assert_eq!(
            server_sig,
            Control::AuthSignature {
                signature: auth_signature(key, &x.c2s[..x.c2s_pre_auth])
            },
            "{capture}: server signature"
        );
    }
}

#[test]
fn wrong_key_fails_clearly() {
    let x = exchange("crc-cephx.0");
    let mon_key = *keyring().get("mon.").unwrap();
    let err = read_session_key_reply(&x.done_payload, &mon_key).unwrap_err();
    assert!(
        matches!(err, CephxError::Decrypt(_) | CephxError::BadMagic(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("wrong key"), "{err}");
}

/// A decrypted frame: tag, segments, and the stream range it took.
type Opened = (Tag, Vec<Vec<u8>>, usize, usize);

/// Opens every frame after AUTH_DONE in one direction; returns the frames' (tag, payload) and
/// the byte ranges they took.
fn open_all(stream: &[u8], start: usize, keys: &SecureKeys) -> Result<Vec<Opened>, V2Error> {
    let mut rx = keys.rx();
    let mut at = start;
    let mut out = Vec::new();
    while at < stream.len() {
        match rx.open(&stream[at..], &FrameLimits::default())? {
            SecureDecoded::Frame(f, used) => {
                let fr = f.frame();
                let segs = fr.present().iter().map(|s| s.to_vec()).collect();
                out.push((fr.tag()?, segs, at, at + used));
                at += used;
            }
            SecureDecoded::Need(n) => panic!("stream ends inside a frame at {at} (need {n})"),
        }
    }
    Ok(out)
}

#[test]
fn secure_frames_decrypt_with_the_derived_connection_secret() {
    for capture in ["secure-cephx.0", "secure-cephx.1"] {
        let x = exchange(capture);
        assert_eq!(x.con_mode, MODE_SECURE);
        let r = reply(&x);
        let key = *r.session_key().unwrap();
        assert!(
            r.connection_secret.len() >= 40,
            "{}",
            r.connection_secret.len()
        );
        let client =
            SecureKeys::from_connection_secret(&r.connection_secret, Role::Client).unwrap();
        let server =
            SecureKeys::from_connection_secret(&r.connection_secret, Role::Server).unwrap();
        assert_eq!((client.rx, client.tx), (server.tx, server.rx));

        let down = open_all(&x.s2c, x.s2c_pre_auth, &client).unwrap();
        let up = open_all(&x.c2s, x.c2s_pre_auth, &server).unwrap();
        let tags =
            |v: &[(Tag, Vec<Vec<u8>>, usize, usize)]| v.iter().map(|f| f.0).collect::<Vec<_>>();
        assert_eq!(
            tags(&down)[..2],
            [Tag::AuthSignature, Tag::ServerIdent],
            "{capture}"
        );
        assert_eq!(
            tags(&up)[..2],
            [Tag::AuthSignature, Tag::ClientIdent],
            "{capture}"
        );
        assert!(tags(&down).iter().filter(|t| **t == Tag::Message).count() >= 3);
        // The signatures inside the sealed frames match too.
        assert_eq!(down[0].1[0], auth_signature(&key, &x.c2s[..x.c2s_pre_auth]));
        assert_eq!(up[0].1[0], auth_signature(&key, &x.s2c[..x.s2c_pre_auth]));
        // Every decrypted control frame decodes.
        for (tag, segs, ..) in down.iter().chain(&up) {
            if *tag != Tag::Message {
                Control::decode(*tag, &segs[0]).unwrap();
            }
        }
    }
}

#[test]
fn sealing_the_opened_frames_again_reproduces_the_capture() {
    let x = exchange("secure-cephx.1");
    let r = reply(&x);
    let client = SecureKeys::from_connection_secret(&r.connection_secret, Role::Client).unwrap();
    let server = SecureKeys::from_connection_secret(&r.connection_secret, Role::Server).unwrap();
    // The client's frames, sealed by our client-side sender, are the captured bytes.
    let up = open_all(&x.c2s, x.c2s_pre_auth, &server).unwrap();
    let mut tx = client.tx();
    for (tag, segs, from, to) in &up {
        let aligns = if *tag == Tag::Message {
            msgr_core::v2::message::MESSAGE_ALIGNMENTS.to_vec()
        } else {
            vec![8]
        };
        let parts: Vec<(&[u8], u16)> = segs.iter().map(|s| &s[..]).zip(aligns).collect();
        let mut out = BytesMut::new();
        tx.seal(*tag, &parts, &mut out);
        assert_eq!(&out[..], &x.c2s[*from..*to], "{tag:?} frame at {from}");
    }
}

#[test]
fn a_flipped_byte_anywhere_fails_the_tag_check() {
    let x = exchange("secure-cephx.0");
    let r = reply(&x);
    let client = SecureKeys::from_connection_secret(&r.connection_secret, Role::Client).unwrap();
    let frames = open_all(&x.s2c, x.s2c_pre_auth, &client).unwrap();
    let end = frames.last().unwrap().3;
    // Every byte of the sealed part of the stream, one at a time.
    let mut checked = 0;
    for pos in x.s2c_pre_auth..end {
        let mut bad = x.s2c.clone();
        bad[pos] ^= 0x40;
        let err = open_all(&bad, x.s2c_pre_auth, &client).unwrap_err();
        assert!(matches!(err, V2Error::AuthTag(_)), "byte {pos}: {err:?}");
        checked += 1;
    }
    assert!(checked > 1000);
}
