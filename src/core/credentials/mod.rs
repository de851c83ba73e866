//! Who may connect, as which ids, and what each may do (sans-IO).
//!
//! A [`Credentials`] set comes from a credentials file ([`file`]): named entries, each with a
//! secret stored as an Argon2id hash ([`secret`]), the id patterns it may register, and
//! allow/deny lists for SEND targets, PUBLISH topics, SUBSCRIBE topics and WATCH targets
//! ([`rule`]). [`Gate::admit`] decides a HELLO's token: the shared token (the `token` setting,
//! compared in constant time over SHA-256 digests) lets a client in unrestricted; with
//! credentials, a token `NAME:SECRET` is verified against entry NAME (expensive, so the I/O
//! layer does it off the worker), a token `NAME` naming an entry with a public key is answered
//! with a nonce to sign ([`public_key`], protocol version 4), and an empty token takes the `anonymous` entry if the file
//! names one. An admitted connection holds a [`Grant`]: the entry and a bounded cache of the
//! verdicts on its message path ([`verdicts`]).

pub mod file;
pub mod id_glob;
/// The keys are wire-protocol matters (the client signs with them too); re-exported here,
/// where the credentials file names them.
pub use crate::protocol::public_key;
pub mod rule;
pub mod secret;
pub mod verdicts;

pub use file::CredentialsError;
pub use rule::Rule;
pub use verdicts::Action;

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use verdicts::Verdicts;

/// What an entry may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    /// SEND targets (ids; acknowledged SENDs too).
    pub send: Rule,
    /// PUBLISH topics.
    pub publish: Rule,
    /// SUBSCRIBE topics and patterns.
    pub subscribe: Rule,
    /// WATCH targets (ids).
    pub watch: Rule,
}

impl Permissions {
    /// The rule that decides `action`.
    #[inline]
    pub fn rule(&self, action: Action) -> &Rule {
        match action {
            Action::Send => &self.send,
            Action::Publish => &self.publish,
            Action::Subscribe => &self.subscribe,
            Action::Watch => &self.watch,
        }
    }

    /// The rules' own decision, uncached: ids (SEND, WATCH) match as globs, topics (PUBLISH,
    /// SUBSCRIBE) as NATS subjects.
    pub fn permits(&self, action: Action, subject: &[u8]) -> bool {
        let rule = self.rule(action);
        match action {
            Action::Send | Action::Watch => rule.permits_id(subject),
            Action::Publish | Action::Subscribe => rule.permits_subject(subject),
        }
    }
}

/// One entry of the credentials file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: Box<str>,
    /// Argon2 PHC string; `None` for the anonymous entry and for a public-key entry.
    secret_hash: Option<Box<str>>,
    /// The Ed25519 public key a client proves it holds (protocol version 4, NATS nkeys);
    /// an entry has this or `secret_hash`, never both.
    pub public_key: Option<[u8; public_key::PUBLIC_KEY_LEN]>,
    /// Globs of the ids the entry may register.
    ids: Box<[Box<[u8]>]>,
    pub permissions: Permissions,
}

impl Entry {
    /// Whether a client of this entry may register `id`.
    pub fn may_register(&self, id: &[u8]) -> bool {
        self.ids.iter().any(|p| id_glob::glob_matches(p, id))
    }
}

/// The entries of one credentials file.
#[derive(Debug)]
pub struct Credentials {
    entries: HashMap<String, Arc<Entry>>,
    /// The entries with a public key, by key: a NATS nkey CONNECT names the key, not the entry.
    by_public_key: HashMap<[u8; public_key::PUBLIC_KEY_LEN], Arc<Entry>>,
    anonymous: Option<Arc<Entry>>,
}

/// The answer to an unknown name or a wrong secret: the same for both, so a client cannot
/// tell which names exist.
pub const REFUSED_SECRET: &str = "credentials refused: name or secret does not match";

impl Credentials {
    fn new(entries: HashMap<String, Arc<Entry>>, anonymous: Option<Arc<Entry>>) -> Credentials {
        let by_public_key = entries
            .values()
            .filter_map(|entry| Some((entry.public_key?, Arc::clone(entry))))
            .collect();
        Credentials {
            entries,
            by_public_key,
            anonymous,
        }
    }

    /// The entry whose public key is `key`.
    pub fn entry_by_public_key(
        &self,
        key: &[u8; public_key::PUBLIC_KEY_LEN],
    ) -> Option<&Arc<Entry>> {
        self.by_public_key.get(key)
    }

    /// Whether some entry has a public key (a NATS INFO then carries a nonce to sign).
    pub fn has_public_keys(&self) -> bool {
        !self.by_public_key.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entry(&self, name: &str) -> Option<&Arc<Entry>> {
        self.entries.get(name)
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.entries.values()
    }

    /// Verifies `secret` against entry `name`: the expensive step (Argon2), for a thread that
    /// may block for tens of milliseconds. An unknown name costs a verification too, against
    /// a hash no secret matches, so the time taken does not tell names apart.
    pub fn verify_secret(&self, name: &str, secret: &[u8]) -> Result<Arc<Entry>, &'static str> {
        match self.entries.get(name) {
            Some(entry) => match &entry.secret_hash {
                Some(phc) if secret::verify(phc, secret) => Ok(Arc::clone(entry)),
                _ => Err(REFUSED_SECRET),
            },
            None => {
                secret::verify(UNMATCHABLE_HASH, secret);
                Err(REFUSED_SECRET)
            }
        }
    }
}

/// An Argon2id hash (default parameters) of 32 random bytes nobody kept: verified against
/// for unknown names.
const UNMATCHABLE_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$q7ZRrbDKNZgHbgX3N2mUgg$7yYSZ7i6Uwq8R4MzSK0XxWoWPH3ZE9E3pP5V0ssf1i4";

/// Where a verification [`crate::core::Output::verify_secret`] asked for stands.
#[derive(Debug)]
pub enum Verification {
    /// Queued off the worker: the outcome comes back later (`Engine::on_verified`).
    Pending,
    /// Decided at once (a secret verified before, or a refusal such as a full queue).
    Done(Result<Arc<Entry>, &'static str>),
}

/// The outcome of a verification done off the worker, for the HELLO held at `at`.
#[derive(Debug)]
pub struct Verified {
    pub at: crate::core::Location,
    pub outcome: Result<Arc<Entry>, &'static str>,
    /// The entry named and a keyed digest of the secret (see the I/O layer's verifier), so
    /// the worker can remember a secret that verified.
    pub name: Box<str>,
    pub digest: [u8; 32],
}

/// A HELLO's way in.
#[derive(Debug)]
pub enum Admission<'t> {
    /// No restriction: nothing is configured, or the token is the shared token.
    Open,
    /// The entry that needs no secret (the file's `anonymous`).
    Entry(Arc<Entry>),
    /// `secret` must be verified against entry `name` (off the worker) before the HELLO is
    /// welcomed or refused.
    Verify { name: &'t str, secret: &'t [u8] },
    /// The token is a NAME alone and some entry has a public key: the client must sign a
    /// nonce of the relay's (CHALLENGE, PROOF; protocol version 4) before it is welcomed or
    /// refused. `None`: no public-key entry has that name; the client is challenged all the
    /// same and its PROOF refused with the text a bad proof gets, so that a HELLO cannot
    /// probe which names are key entries.
    Challenge(Option<Arc<Entry>>),
    /// Refused, with the reason the client is told.
    Refused(&'static str),
}

/// The credentials in force, replaced whole by a reload. Read at each HELLO (never on the
/// message path: a connection keeps the entry it came in with in its [`Grant`]); `generation`
/// tells the workers a reload happened, so they re-check their connections.
#[derive(Debug)]
pub struct CredentialsInForce {
    current: RwLock<Arc<Credentials>>,
    generation: AtomicU64,
}

impl CredentialsInForce {
    pub fn new(credentials: Credentials) -> CredentialsInForce {
        CredentialsInForce {
            current: RwLock::new(Arc::new(credentials)),
            generation: AtomicU64::new(0),
        }
    }

    pub fn current(&self) -> Arc<Credentials> {
        // A panic while holding the lock leaves the value whole (a swap of one Arc).
        Arc::clone(&self.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Puts `credentials` in force and returns the new generation.
    pub fn replace(&self, credentials: Credentials) -> u64 {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(credentials);
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// How many reloads there were.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// What the relay checks a HELLO's token against.
#[derive(Debug, Default, Clone)]
pub struct Gate {
    /// SHA-256 of the shared token, if one is set.
    shared_token: Option<[u8; 32]>,
    pub credentials: Option<Arc<CredentialsInForce>>,
}

impl Gate {
    pub fn new(shared_token: Option<&[u8]>, credentials: Option<Arc<CredentialsInForce>>) -> Gate {
        Gate {
            shared_token: shared_token.map(digest),
            credentials,
        }
    }

    /// The entry named `name` in the credentials in force.
    pub fn entry(&self, name: &str) -> Option<Arc<Entry>> {
        let credentials = self.credentials.as_ref()?.current();
        credentials.entry(name).cloned()
    }

    /// Whether the credentials in force have a public-key entry (a NATS INFO then carries a
    /// nonce for an nkey to sign).
    pub fn has_public_keys(&self) -> bool {
        self.credentials
            .as_ref()
            .is_some_and(|c| c.current().has_public_keys())
    }

    /// The entry whose public key is `key`, in the credentials in force.
    pub fn entry_by_public_key(
        &self,
        key: &[u8; public_key::PUBLIC_KEY_LEN],
    ) -> Option<Arc<Entry>> {
        let credentials = self.credentials.as_ref()?.current();
        credentials.entry_by_public_key(key).cloned()
    }

    /// Whether any check is configured (else every HELLO is [`Admission::Open`]).
    pub fn is_open(&self) -> bool {
        self.shared_token.is_none() && self.credentials.is_none()
    }

    pub fn admit<'t>(&self, token: &'t [u8]) -> Admission<'t> {
        if self.is_open() {
            return Admission::Open;
        }
        if let Some(expected) = &self.shared_token {
            if digests_equal(expected, &digest(token)) {
                return Admission::Open;
            }
        }
        let Some(credentials) = &self.credentials else {
            return Admission::Refused("token does not match");
        };
        let credentials = credentials.current();
        if token.is_empty() {
            return match &credentials.anonymous {
                Some(entry) => Admission::Entry(Arc::clone(entry)),
                None => Admission::Refused(
                    "credentials required: HELLO's token must be NAME:SECRET of an entry",
                ),
            };
        }
        let Some(colon) = token.iter().position(|&b| b == b':') else {
            if !credentials.has_public_keys() {
                return Admission::Refused(
                    "token does not match, and is not NAME:SECRET of a credentials entry",
                );
            }
            let key_entry = std::str::from_utf8(token)
                .ok()
                .and_then(|name| credentials.entry(name))
                .filter(|entry| entry.public_key.is_some());
            return Admission::Challenge(key_entry.cloned());
        };
        match std::str::from_utf8(&token[..colon]) {
            Ok(name) => Admission::Verify {
                name,
                secret: &token[colon + 1..],
            },
            Err(_) => Admission::Refused(REFUSED_SECRET),
        }
    }
}

/// SHA-256 of `bytes`: what secrets are compared by ([`digests_equal`]).
pub fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Compares two digests without an early exit: fixed length, so neither the time nor an
/// early length mismatch tells how much of a secret matched or how long it is.
pub fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Kept opaque so the compiler cannot turn the fold into an early-exit comparison.
    std::hint::black_box(difference) == 0
}

/// What one admitted connection may do: its entry, and the verdicts of its message path.
#[derive(Debug)]
pub struct Grant {
    pub entry: Arc<Entry>,
    /// Built on the first SEND or PUBLISH that needs a check.
    verdicts: Option<Box<Verdicts>>,
}

impl Grant {
    pub fn new(entry: Arc<Entry>) -> Grant {
        Grant {
            entry,
            verdicts: None,
        }
    }

    /// Whether the connection may SEND to `target` (decided once per target while cached).
    #[inline]
    pub fn permits_send(&mut self, target: &[u8]) -> bool {
        self.cached(Action::Send, target, Rule::permits_id)
    }

    /// Whether the connection may PUBLISH on `topic` (decided once per topic while cached).
    #[inline]
    pub fn permits_publish(&mut self, topic: &[u8]) -> bool {
        self.cached(Action::Publish, topic, Rule::permits_subject)
    }

    /// The message path's check: an open rule costs one branch; otherwise the verdict cache
    /// answers, deciding with the rule on a miss.
    #[inline]
    fn cached(&mut self, action: Action, subject: &[u8], decide: fn(&Rule, &[u8]) -> bool) -> bool {
        let rule = self.entry.permissions.rule(action);
        rule.is_open()
            || self
                .verdicts
                .get_or_insert_with(Default::default)
                .get_or_decide(action, subject, |s| decide(rule, s))
    }

    /// Whether the connection may do `action` on `subject`.
    #[inline]
    pub fn permits(&mut self, action: Action, subject: &[u8]) -> bool {
        match action {
            Action::Send => self.permits_send(subject),
            Action::Publish => self.permits_publish(subject),
            Action::Subscribe => self.permits_subscribe(subject),
            Action::Watch => self.permits_watch(subject),
        }
    }

    /// Whether the connection may SUBSCRIBE to `topic` (a pattern or a literal topic).
    pub fn permits_subscribe(&self, topic: &[u8]) -> bool {
        self.entry.permissions.permits(Action::Subscribe, topic)
    }

    /// Whether the connection may WATCH `id`.
    pub fn permits_watch(&self, id: &[u8]) -> bool {
        self.entry.permissions.permits(Action::Watch, id)
    }
}

#[cfg(test)]
mod tests;
