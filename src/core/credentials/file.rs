//! The credentials file (TOML), read into [`Credentials`]. Every pattern, name and hash is
//! checked here, so a file that loads is a file the relay can apply; a bad one is refused
//! whole with an error naming the entry and the field.
//!
//! ```toml
//! anonymous = "guest"            # optional: the entry of a HELLO with an empty token
//!
//! [[entry]]
//! name = "game"                  # HELLO's token is "game:<secret>"
//! secret_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."   # `ringrelay passwd`
//! ids = ["game-server-*"]        # the ids it may register (globs: * is any run of bytes)
//! send = { allow = ["lobby-*"] } # SEND targets (globs)
//! publish = { allow = ["game.>"], deny = ["game.admin.>"] }   # topics (NATS patterns)
//! subscribe = { allow = ["game.>", "_INBOX.>"] }
//! watch = { allow = [] }         # nobody: an empty allow list permits nothing
//!
//! [[entry]]
//! name = "sensor"                # HELLO's token is "sensor" (protocol version 4)
//! public_key = "ed25519:..."     # `ringrelay keygen`; or a NATS nkey user key "U..."
//! ids = ["sensor-*"]
//! ```
//!
//! An entry has exactly one of `secret_hash` and `public_key` (only the anonymous entry has
//! neither); two entries may not share a public key.

use super::rule::{Rule, PATTERNS_PER_LIST_MAX};
use super::{Credentials, Entry, Permissions};
use crate::core::subject::check_pattern;
use crate::protocol::{CLIENT_ID_LEN_MAX, TOPIC_LEN_MAX};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

/// Entries one file holds at most.
pub const ENTRIES_MAX: usize = 65_536;
/// The longest entry name, in bytes.
pub const NAME_LEN_MAX: usize = 64;

/// Why a credentials file was refused.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("credentials file is not valid TOML or has an unknown field: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("credentials entry {entry:?}: {reason}")]
    Entry { entry: String, reason: String },
    #[error("credentials file: {0}")]
    File(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    anonymous: Option<String>,
    #[serde(default)]
    entry: Vec<EntryDoc>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryDoc {
    name: String,
    secret_hash: Option<String>,
    public_key: Option<String>,
    ids: Vec<String>,
    #[serde(default)]
    send: RuleDoc,
    #[serde(default)]
    publish: RuleDoc,
    #[serde(default)]
    subscribe: RuleDoc,
    #[serde(default)]
    watch: RuleDoc,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RuleDoc {
    allow: Option<Vec<String>>,
    #[serde(default)]
    deny: Vec<String>,
}

/// What the patterns of a list stand for.
#[derive(Clone, Copy)]
enum Patterns {
    Ids,
    Subjects,
}

impl Credentials {
    /// Reads and checks a credentials file's text.
    pub fn from_toml_str(text: &str) -> Result<Credentials, CredentialsError> {
        let doc: FileDoc = toml::from_str(text)?;
        if doc.entry.len() > ENTRIES_MAX {
            return Err(CredentialsError::File(format!(
                "{} entries, more than the {ENTRIES_MAX} a file may hold",
                doc.entry.len()
            )));
        }
        let mut entries = HashMap::with_capacity(doc.entry.len());
        let mut keys = HashMap::new();
        for entry in doc.entry {
            let name = entry.name.clone();
            let entry = parse_entry(entry, doc.anonymous.as_deref())?;
            if let Some(key) = entry.public_key {
                if let Some(other) = keys.insert(key, name.clone()) {
                    return Err(CredentialsError::Entry {
                        entry: name,
                        reason: format!("public_key: entry {other:?} has the same key"),
                    });
                }
            }
            if entries.insert(name.clone(), Arc::new(entry)).is_some() {
                return Err(CredentialsError::File(format!(
                    "two entries are named {name:?}"
                )));
            }
        }
        let anonymous = match doc.anonymous {
            None => None,
            Some(name) => Some(Arc::clone(entries.get(&name).ok_or_else(|| {
                CredentialsError::File(format!("anonymous names {name:?}, which no entry has"))
            })?)),
        };
        Ok(Credentials::new(entries, anonymous))
    }
}

fn parse_entry(doc: EntryDoc, anonymous: Option<&str>) -> Result<Entry, CredentialsError> {
    let fail = |reason: String| CredentialsError::Entry {
        entry: doc.name.clone(),
        reason,
    };
    let name = &doc.name;
    if name.is_empty() || name.len() > NAME_LEN_MAX {
        return Err(fail(format!("a name has 1 to {NAME_LEN_MAX} bytes")));
    }
    if name.contains(':') || name.chars().any(char::is_control) {
        return Err(fail(
            "a name has no ':' (it separates name and secret in HELLO's token) and no control character".into(),
        ));
    }
    let public_key = match (&doc.secret_hash, &doc.public_key) {
        (Some(_), Some(_)) => {
            return Err(fail(
                "has both secret_hash and public_key: an entry has exactly one".into(),
            ))
        }
        (Some(hash), None) => {
            super::secret::check_hash(hash).map_err(|e| fail(format!("secret_hash: {e}")))?;
            None
        }
        (None, Some(key)) => {
            Some(super::public_key::parse(key).map_err(|e| fail(format!("public_key: {e}")))?)
        }
        (None, None) if anonymous == Some(name.as_str()) => None,
        (None, None) => return Err(fail(
            "has neither secret_hash nor public_key, so no client could use it (only the anonymous entry may go without)".into(),
        )),
    };
    if doc.ids.is_empty() {
        return Err(fail(
            "ids is empty: the entry could register no id (use [\"*\"] for any)".into(),
        ));
    }
    let ids = list(&doc.ids, Patterns::Ids).map_err(|e| fail(format!("ids: {e}")))?;
    let rule = |field: &str, doc: &RuleDoc, patterns: Patterns| {
        let allow = match &doc.allow {
            None => None,
            Some(allow) => {
                Some(list(allow, patterns).map_err(|e| fail(format!("{field}.allow: {e}")))?)
            }
        };
        let deny = list(&doc.deny, patterns).map_err(|e| fail(format!("{field}.deny: {e}")))?;
        Ok::<_, CredentialsError>(Rule::new(allow, deny))
    };
    let permissions = Permissions {
        send: rule("send", &doc.send, Patterns::Ids)?,
        publish: rule("publish", &doc.publish, Patterns::Subjects)?,
        subscribe: rule("subscribe", &doc.subscribe, Patterns::Subjects)?,
        watch: rule("watch", &doc.watch, Patterns::Ids)?,
    };
    Ok(Entry {
        name: doc.name.clone().into(),
        secret_hash: doc.secret_hash.map(Into::into),
        public_key,
        ids: ids.into_boxed_slice(),
        permissions,
    })
}

/// Checks one list of patterns.
fn list(patterns: &[String], kind: Patterns) -> Result<Vec<Box<[u8]>>, String> {
    if patterns.len() > PATTERNS_PER_LIST_MAX {
        return Err(format!(
            "{} patterns, more than the {PATTERNS_PER_LIST_MAX} a list may hold",
            patterns.len()
        ));
    }
    patterns
        .iter()
        .map(|p| {
            let len_max = match kind {
                Patterns::Ids => CLIENT_ID_LEN_MAX,
                Patterns::Subjects => TOPIC_LEN_MAX,
            };
            if p.is_empty() || p.len() > len_max {
                return Err(format!("{p:?}: a pattern has 1 to {len_max} bytes"));
            }
            if let Patterns::Subjects = kind {
                check_pattern(p.as_bytes()).map_err(|e| format!("{p:?}: {}", e.text()))?;
            }
            Ok(p.as_bytes().into())
        })
        .collect()
}
