//! Rules of credentials and permissions: a HELLO whose secret is verified off the worker, and
//! the check of a SEND, PUBLISH, SUBSCRIBE or WATCH against the connection's grant.

use super::{ConnRelay, Counter, Engine, Output};
use crate::core::credentials::{Action, Entry, Grant, Verification};
use crate::core::location::Location;
use crate::core::router::Guards;
use crate::core::session::{Hello, Phase};
use crate::protocol::{CloseReason, ErrorCode, Frame};
use std::sync::Arc;

const RELOADED_DURING_CHECK: &str =
    "credentials were reloaded while the secret was checked: connect again";
const ENTRY_REMOVED: &str = "credentials entry removed by a reload";
const ID_NO_LONGER_ALLOWED: &str =
    "id no longer among the ids its credentials entry may register, after a reload";

const ID_NOT_ALLOWED: &str = "HELLO's id is not among the ids this credentials entry may register";

impl Engine<'_> {
    /// Whether the connection may do `action` on `subject`. A connection without a grant
    /// (no credentials in force, or the shared token) may do anything: one branch. A refusal
    /// answers ERROR PERMISSION_DENIED naming the subject, is counted, and leaves the
    /// connection open.
    #[inline]
    pub(super) fn permitted(
        &self,
        grant: &mut Option<Box<Grant>>,
        at: Location,
        action: Action,
        subject: &[u8],
        out: &mut impl Output,
    ) -> bool {
        let Some(grant) = grant else {
            return true;
        };
        if grant.permits(action, subject) {
            return true;
        }
        self.permission_denied(at, action, subject, out);
        false
    }

    #[cold]
    #[inline(never)]
    fn permission_denied(
        &self,
        at: Location,
        action: Action,
        subject: &[u8],
        out: &mut impl Output,
    ) {
        out.count(Counter::PermissionDenied);
        let frame = Frame::Error {
            code: ErrorCode::PERMISSION_DENIED,
            subject,
            text: action.denied_text().as_bytes(),
        };
        out.send_frame_local(at, &frame);
    }

    /// A HELLO that names a credentials entry: held (frames after it too) while the I/O
    /// layer verifies its secret off the worker, unless it can decide at once.
    #[cold]
    #[inline(never)]
    pub(super) fn verify_hello(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        hello: Hello<'_>,
        guards: &Guards<'_>,
        scratch: &mut Vec<Location>,
        out: &mut impl Output,
    ) {
        conn.held_hello = Some(hello.client_id.into());
        conn.verifying = true;
        if let Verification::Done(outcome) = out.verify_secret(at, hello.name, hello.secret) {
            self.on_verified(conn, at, outcome, guards, scratch, out);
        }
    }

    /// The outcome of a verification [`Output::verify_secret`] asked for: the client is
    /// welcomed with the entry's permissions (once the node is ready), or closed with
    /// AUTH_FAILED and the reason. Ignored when the connection closed meanwhile.
    #[cold]
    #[inline(never)]
    pub fn on_verified(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        outcome: Result<Arc<Entry>, &'static str>,
        guards: &Guards<'_>,
        scratch: &mut Vec<Location>,
        out: &mut impl Output,
    ) {
        if !std::mem::take(&mut conn.verifying) || conn.session.phase() != Phase::Open {
            return;
        }
        let entry = match outcome {
            Ok(entry) => entry,
            Err(reason) => return self.refuse_hello(conn, at, reason, out),
        };
        // The secret was checked against the entry in force when it was queued; a reload
        // since may have changed or removed it.
        let current = self.config.session.gate.entry(&entry.name);
        if !current.is_some_and(|current| Arc::ptr_eq(&current, &entry)) {
            return self.refuse_hello(conn, at, RELOADED_DURING_CHECK, out);
        }
        let id = conn.held_hello.as_deref().unwrap_or_default();
        if !conn.id_generated && !entry.may_register(id) {
            return self.refuse_hello(conn, at, ID_NOT_ALLOWED, out);
        }
        conn.grant = Some(Box::new(Grant::new(entry)));
        if out.node_ready() {
            self.on_ready(conn, at, guards, scratch, out);
        } else {
            out.hello_held(at);
        }
    }

    /// Admits a HELLO whose entry (if any) is known now: `true` with the grant set, or
    /// `false` with the connection refused because the entry may not register `client_id`.
    pub(super) fn admit_entry(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        client_id: &[u8],
        entry: Option<Arc<Entry>>,
        out: &mut impl Output,
    ) -> bool {
        match entry {
            None => conn.grant = None,
            Some(entry) if conn.id_generated || entry.may_register(client_id) => {
                conn.grant = Some(Box::new(Grant::new(entry)));
            }
            Some(_) => {
                self.refuse_hello(conn, at, ID_NOT_ALLOWED, out);
                return false;
            }
        }
        true
    }

    pub(super) fn refuse_hello(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        reason: &'static str,
        out: &mut impl Output,
    ) {
        conn.held_hello = None;
        conn.held_frames = Vec::new();
        conn.session.close();
        out.count(Counter::AuthFailed);
        out.close_conn(at, CloseReason::AUTH_FAILED, reason.into());
    }

    /// The credentials were reloaded: an open connection that came in with an entry takes the
    /// entry of the same name in force now (its new permissions), or is closed with
    /// AUTH_FAILED and the reason when that entry is gone or may no longer register its id.
    /// Connections without an entry (the shared token) are left alone.
    #[cold]
    #[inline(never)]
    pub fn on_credentials_reloaded(
        &self,
        conn: &mut ConnRelay,
        at: Location,
        out: &mut impl Output,
    ) {
        let Some(grant) = &conn.grant else {
            return;
        };
        if conn.session.phase() != Phase::Open {
            return;
        }
        let refusal = match self.config.session.gate.entry(&grant.entry.name) {
            None => ENTRY_REMOVED,
            Some(entry)
                if conn.id_generated
                    || entry
                        .may_register(conn.held_hello.as_deref().unwrap_or(&conn.client_id)) =>
            {
                if !Arc::ptr_eq(&entry, &grant.entry) {
                    conn.grant = Some(Box::new(Grant::new(entry)));
                }
                return;
            }
            Some(_) => ID_NO_LONGER_ALLOWED,
        };
        self.refuse_hello(conn, at, refusal, out);
    }
}
