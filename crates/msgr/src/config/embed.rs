//! [`Config`] as a serde value, so a daemon can embed it in its own TOML file (e.g. under a
//! `[messenger]` table), and [`load_toml`], the one loader: any type, errors naming the file,
//! the key path and the line.

use std::cell::RefCell;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_path_to_error::Segment;

use super::build::build;
use super::raw::{key_at, RawConfig};
use super::{Config, ConfigError};

thread_local! {
    /// The file [`load_toml`] is reading, so an embedded [`Config`] knows its origin.
    static ORIGIN: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// What a `Config` embedded without [`load_toml`] names as its origin.
const UNKNOWN_ORIGIN: &str = "<embedded config>";

/// The form of a check's error inside a deserializer: `key "rdma.port": expected ...`, which
/// [`load_toml`] turns back into a key path under the table holding the config.
const KEY_PREFIX: &str = "key \"";

impl<'de> Deserialize<'de> for Config {
    /// The same keys and checks as a file of its own ([`Config::from_toml_str`]); a check's
    /// error reads `key "KEY": what` (the key relative to the config's table).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawConfig::deserialize(d)?;
        let origin = ORIGIN.with(|o| o.borrow().clone());
        let origin = origin.as_deref().unwrap_or(UNKNOWN_ORIGIN);
        build(raw, origin).map_err(|e| {
            if e.key.is_empty() {
                D::Error::custom(e.message)
            } else {
                D::Error::custom(format!("{KEY_PREFIX}{}\": {}", e.key, e.message))
            }
        })
    }
}

/// Parse TOML `text` into `T` (a daemon's own config type, which may hold a [`Config`]
/// anywhere); `origin` names the text in errors. Errors name the key path
/// (`messenger.tcp.nodelay`) and, where toml knows it, the line.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Daemon {
///     data_dir: String,
///     messenger: msgr::Config,
/// }
/// let d: Daemon = msgr::load_toml(
///     "data_dir = \"/var/lib/d\"\n[messenger]\nname = \"osd.1\"\n",
///     "daemon.toml",
/// )?;
/// assert_eq!(d.messenger.name.to_string(), "osd.1");
/// # Ok::<(), msgr::ConfigError>(())
/// ```
pub fn load_toml<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, ConfigError> {
    let previous = ORIGIN.with(|o| o.replace(Some(origin.to_string())));
    let result = serde_path_to_error::deserialize(toml::Deserializer::new(text));
    ORIGIN.with(|o| *o.borrow_mut() = previous);
    result.map_err(|e| {
        let path = key_path(e.path());
        toml_error(origin, text, &path, e.inner())
    })
}

/// `messenger.transports[1]`: the dotted path serde walked to the failing value.
fn key_path(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for seg in path.iter() {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// Turn a toml / serde error at `path` into "file:line: key ...: what".
fn toml_error(origin: &str, text: &str, path: &str, e: &toml::de::Error) -> ConfigError {
    let message = e.message().trim().to_string();
    let line = e.span().map(|s| {
        let before = &text.as_bytes()[..s.start.min(text.len())];
        1 + before.iter().filter(|b| **b == b'\n').count()
    });
    // A check of an embedded Config names its key relative to the config's table.
    if let Some(rest) = message.strip_prefix(KEY_PREFIX) {
        if let Some((key, what)) = rest.split_once("\": ") {
            return ConfigError {
                file: origin.to_string(),
                key: join(path, key),
                message: what.to_string(),
                line,
            };
        }
    }
    // The path ends at the failing key (an unknown one included); toml's span is the
    // fallback where serde had no path yet (a syntax error).
    let key = if path.is_empty() {
        e.span().map(|s| key_at(text, s.start)).unwrap_or_default()
    } else {
        path.to_string()
    };
    ConfigError {
        file: origin.to_string(),
        key,
        message,
        line,
    }
}

fn join(path: &str, key: &str) -> String {
    match (path.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (_, true) => path.to_string(),
        _ => format!("{path}.{key}"),
    }
}
