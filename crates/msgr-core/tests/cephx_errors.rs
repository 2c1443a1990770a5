//! cephx refuses bad keyrings and keys with errors that name the file, line and entity.

use msgr_core::auth::cephx::{CephxError, CryptoKey, Keyring};

const KEY: &str = "AQDJ0BRr87oVAhAAR9CeN8KTtPQ/7gmrokPq8g==";

fn parse_err(text: &str) -> String {
    Keyring::parse(text, "/etc/ceph/test.keyring")
        .unwrap_err()
        .to_string()
}

#[test]
fn good_keyring_with_comments_and_caps() {
    let text = format!("# admin\n[client.admin]\n\tkey = {KEY}\n\tcaps mon = \"allow *\"\n; end\n");
    let k = Keyring::parse(&text, "k").unwrap();
    let key = k.get("client.admin").unwrap();
    assert_eq!(key.secret.len(), 16);
    let mut enc = bytes::BytesMut::new();
    key.encode(&mut enc);
    assert_eq!(CryptoKey::decode(&enc).unwrap(), *key);
    assert!(
        !format!("{key:?}").contains(&format!("{:?}", key.secret)),
        "Debug hides the secret"
    );
}

#[test]
fn keyring_errors_name_file_and_line() {
    let e = parse_err(&format!("[client.admin]\nkey = {}\n", &KEY[..20]));
    assert!(
        e.starts_with("/etc/ceph/test.keyring:2: key of [client.admin]"),
        "{e}"
    );
    let e = parse_err(&format!("key = {KEY}\n"));
    assert!(e.contains(":1: key = before any [entity] section"), "{e}");
    let e = parse_err("[client.admin]\ncaps mon = x\n");
    assert!(e.contains(":1: section [client.admin] has no key"), "{e}");
    let e = parse_err("[client.admin\n");
    assert!(e.contains(":1: section header"), "{e}");
    let e = parse_err("[client.admin]\nnonsense\n");
    assert!(e.contains(":2: expected `name = value`"), "{e}");
    let missing = Keyring::load(std::path::Path::new("/nonexistent/k")).unwrap_err();
    assert!(
        missing.to_string().contains("cannot read the keyring"),
        "{missing}"
    );
}

#[test]
fn sealed_envelope_roundtrips_and_wrong_key_is_named() {
    let a = CryptoKey::from_base64(KEY).unwrap();
    let b = CryptoKey {
        secret: [9; 16],
        ..a
    };
    let sealed = a.seal(b"ticket");
    assert_eq!(sealed.len() % 16, 0);
    assert_eq!(a.open(&sealed, "ticket").unwrap(), b"ticket");
    let err = b.open(&sealed, "ticket").unwrap_err();
    assert!(
        matches!(err, CephxError::Decrypt(_) | CephxError::BadMagic(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("wrong key"), "{err}");
}
