//! Ceph keyring files: INI sections named after entities, each with `key = <base64>`:
//!
//! ```text
//! [client.admin]
//!     key = AQDg0BRrG+GuLRAAEYVF3JR/dNWg8Ucn9fNVHg==
//!     caps mon = "allow *"
//! ```
//!
//! Other settings (caps) are ignored; `#` and `;` start comments.

use std::path::Path;

use super::{CephxError, CryptoKey};

/// The keys of a keyring, by entity name (`client.admin`), in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keyring {
    /// Where it came from, for error messages.
    pub source: String,
    /// (entity, key) pairs.
    pub entries: Vec<(String, CryptoKey)>,
}

impl Keyring {
    /// Reads and parses a keyring file.
    pub fn load(path: &Path) -> Result<Self, CephxError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| CephxError::Keyring {
            file: file.clone(),
            line: 0,
            reason: format!("cannot read the keyring: {e} (check keyring = in the config)"),
        })?;
        Self::parse(&text, &file)
    }

    /// Parses keyring text; `source` names it in errors.
    pub fn parse(text: &str, source: &str) -> Result<Self, CephxError> {
        let err = |line: usize, reason: String| CephxError::Keyring {
            file: source.to_string(),
            line,
            reason,
        };
        let mut entries = Vec::new();
        let mut section: Option<(String, usize, bool)> = None;
        let close = |s: &Option<(String, usize, bool)>| match s {
            Some((name, line, false)) => {
                Err(err(*line, format!("section [{name}] has no key = line")))
            }
            _ => Ok(()),
        };
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[') {
                let name = name
                    .strip_suffix(']')
                    .ok_or_else(|| err(n, format!("section header {line:?} lacks its closing ]")))?
                    .trim();
                if !name.contains('.') {
                    return Err(err(
                        n,
                        format!("section [{name}] is not an entity name like client.admin or mon."),
                    ));
                }
                close(&section)?;
                section = Some((name.to_string(), n, false));
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| err(n, format!("expected `name = value`, found {line:?}")))?;
            if k.trim() != "key" {
                continue;
            }
            let Some((name, _, has_key)) = section.as_mut() else {
                return Err(err(n, "key = before any [entity] section".to_string()));
            };
            let key = CryptoKey::from_base64(v.trim())
                .map_err(|e| err(n, format!("key of [{name}]: {e}")))?;
            entries.push((name.clone(), key));
            *has_key = true;
        }
        close(&section)?;
        Ok(Keyring {
            source: source.to_string(),
            entries,
        })
    }

    /// The key of `entity` (`client.admin`).
    pub fn get(&self, entity: &str) -> Result<&CryptoKey, CephxError> {
        self.entries
            .iter()
            .find(|(n, _)| n == entity)
            .map(|(_, k)| k)
            .ok_or_else(|| CephxError::NoSuchEntity {
                file: self.source.clone(),
                entity: entity.to_string(),
            })
    }
}
