//! The credentials file (`ringrelay::core::credentials`): arbitrary text is loaded (a refusal
//! is fine, a panic is not), and for every entry of a file that loads, arbitrary subjects are
//! checked against its permissions: the cached verdict of the message path always equals the
//! rule's own decision, asked twice (the second answer comes from the cache). A HELLO token
//! made of the same bytes is admitted or refused without a panic. Secrets are never verified
//! (Argon2 takes tens of milliseconds by design).
//!
//! Input: the file's text, then a 0xFF byte, then subjects separated by 0x00 bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringrelay::core::credentials::{Action, Credentials, CredentialsInForce, Gate, Grant};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let (file, subjects) = match data.iter().position(|&b| b == 0xff) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(file) else {
        return;
    };
    let Ok(credentials) = Credentials::from_toml_str(text) else {
        return;
    };
    let entries: Vec<_> = credentials.entries().cloned().collect();
    let gate = Gate::new(
        Some(b"token"),
        Some(Arc::new(CredentialsInForce::new(credentials))),
    );
    for subject in subjects.split(|&b| b == 0) {
        let _ = gate.admit(subject);
        for entry in &entries {
            let _ = entry.may_register(subject);
            let rules = &entry.permissions;
            let mut grant = Grant::new(Arc::clone(entry));
            for _ in 0..2 {
                for action in Action::ALL {
                    assert_eq!(
                        grant.permits(action, subject),
                        rules.permits(action, subject)
                    );
                }
            }
        }
    }
});
