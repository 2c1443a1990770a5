//! `--key value` command-line options, enough for the two netfault subcommands.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;

/// Options not yet taken; `finish` refuses leftovers (a typo must not pass silently).
pub struct Args {
    map: HashMap<String, String>,
    flags: Vec<String>,
}

impl Args {
    /// Parses `--key value` pairs and bare `--flag`s (a flag is an option followed by another
    /// option or by nothing).
    pub fn parse(items: &[String]) -> Result<Self, String> {
        let mut map = HashMap::new();
        let mut flags = Vec::new();
        let mut it = items.iter().peekable();
        while let Some(k) = it.next() {
            let Some(key) = k.strip_prefix("--") else {
                return Err(format!(
                    "unexpected argument `{k}` (options are --key value)"
                ));
            };
            match it.peek() {
                Some(v) if !v.starts_with("--") => {
                    map.insert(key.to_string(), it.next().expect("peeked").clone());
                }
                _ => flags.push(key.to_string()),
            }
        }
        Ok(Args { map, flags })
    }

    pub fn flag(&mut self, key: &str) -> bool {
        let had = self.flags.iter().any(|f| f == key);
        self.flags.retain(|f| f != key);
        had
    }

    pub fn opt_text(&mut self, key: &str) -> Option<String> {
        self.map.remove(key)
    }

    pub fn text_or(&mut self, key: &str, default: &str) -> String {
        self.opt_text(key).unwrap_or_else(|| default.to_string())
    }

    pub fn path(&mut self, key: &str) -> Result<PathBuf, String> {
        self.opt_text(key)
            .map(PathBuf::from)
            .ok_or_else(|| format!("--{key} is required"))
    }

    pub fn opt_num<T: FromStr>(&mut self, key: &str) -> Result<Option<T>, String> {
        self.opt_text(key)
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("--{key} {v}: expected a number"))
            })
            .transpose()
    }

    pub fn num<T: FromStr>(&mut self, key: &str) -> Result<T, String> {
        self.opt_num(key)?
            .ok_or_else(|| format!("--{key} is required"))
    }

    pub fn num_or<T: FromStr>(&mut self, key: &str, default: T) -> Result<T, String> {
        Ok(self.opt_num(key)?.unwrap_or(default))
    }

    /// Err naming the options nobody took.
    pub fn finish(self) -> Result<(), String> {
        let mut left: Vec<String> = self.map.into_keys().chain(self.flags).collect();
        left.sort();
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("unknown option(s): --{}", left.join(", --")))
        }
    }
}
