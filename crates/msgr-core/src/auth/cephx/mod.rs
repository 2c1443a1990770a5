//! cephx (Ceph `src/auth/cephx/`, `src/auth/Crypto.cc`): keyrings, CryptoAES, and the
//! structures of the monitor authentication exchange, enough to authenticate a client to a
//! monitor, obtain the session key and the connection secret, and sign the msgr2 handshake.
//!
//! Module map: `keyring` (Ceph's INI keyring files), `crypto` (`CryptoKey`, AES-128-CBC with
//! Ceph's IV, HMAC-SHA256, the encrypt-with-magic envelope), `exchange` (challenge, authenticate
//! request, ticket reply and connection secret), `mon_v1` (the client's MAuth exchange with a
//! monitor over msgr1).

pub mod crypto;
pub mod exchange;
pub mod keyring;
pub mod mon_v1;

pub use crypto::CryptoKey;
pub use keyring::Keyring;

/// Everything that can go wrong in cephx.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CephxError {
    /// A keyring line could not be parsed.
    #[error("{file}:{line}: {reason}")]
    Keyring {
        /// The keyring file (or what the text came from).
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong and what to do.
        reason: String,
    },
    /// No entry for the entity in the keyring.
    #[error("keyring {file} has no key for {entity} (add a [{entity}] section with key = ..., or name another entity in the config)")]
    NoSuchEntity {
        /// The keyring file.
        file: String,
        /// The entity asked for.
        entity: String,
    },
    /// A key's binary form is malformed.
    #[error("malformed cephx key: {0} (copy the key = value from `ceph auth get` again)")]
    BadKey(&'static str),
    /// Decryption failed (bad padding or length): almost always the wrong key.
    #[error("cephx decryption of the {0} failed: wrong key for this entity (check the keyring against `ceph auth get`), or the data was corrupted")]
    Decrypt(&'static str),
    /// Decrypted data lacks Ceph's magic: the wrong key.
    #[error("cephx {0} decrypted to garbage (bad magic): wrong key for this entity (check the keyring against `ceph auth get`)")]
    BadMagic(&'static str),
    /// The monitor refused.
    #[error("cephx: the monitor answered {request} with error {status} ({})", errno_hint(*status))]
    Refused {
        /// Which request.
        request: &'static str,
        /// Negative errno.
        status: i32,
    },
    /// A field ran past the end of its structure.
    #[error(transparent)]
    Short(#[from] crate::v2::ShortRead),
    /// A structure has a version or type we do not know.
    #[error("cephx {what}: unsupported {field} {value}")]
    Unsupported {
        /// The structure.
        what: &'static str,
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
}

fn errno_hint(status: i32) -> &'static str {
    match -status {
        1 => "EPERM: the key does not match the monitor's, or the ticket expired",
        2 => "ENOENT: the monitor does not know this entity",
        13 => "EACCES: the key does not match the monitor's (check the keyring against `ceph auth get`), or the entity lacks caps",
        110 => "ETIMEDOUT: clock skew or an expired ticket",
        _ => "see the monitor log",
    }
}
