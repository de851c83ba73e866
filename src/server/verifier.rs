//! Verifying credentials off the workers. A HELLO that names a credentials entry carries a
//! secret whose Argon2 check takes tens of milliseconds by design; done on a worker it would
//! stall every other connection of that worker. So a worker hands it to the verifier thread
//! through a bounded queue and holds the HELLO; the outcome comes back as a worker command
//! (`Command::Verified`) and the worker applies it with `Engine::on_verified`.
//!
//! Each worker remembers, per entry, a keyed digest of the last secret that verified
//! ([`VerifiedSecrets`]): a reconnect storm of clients sharing an entry costs one Argon2
//! check per entry and worker, not one per client. The digest is HMAC-SHA256 under a key drawn
//! at start and never stored, and it only answers "same secret as before"; a failed
//! verification is never remembered, so guessing costs Argon2 every time. An entry replaced by
//! a reload is a different entry: its remembered digest no longer answers.
//!
//! Bounds: the queue holds [`VERIFY_QUEUE_MAX`] checks (a HELLO that would need one more is
//! refused at once with AUTH_FAILED "authentication busy"); at most [`WAITING_MAX`] HELLOs
//! per worker wait on a check already queued (beyond: "busy" too); a worker remembers at most
//! one digest per entry name, and forgets them all past
//! [`crate::core::credentials::file::ENTRIES_MAX`] names.

use super::control_lane::Command;
use super::Shared;
use crate::cluster::node::ClusterHost;
use crate::core::credentials::file::ENTRIES_MAX;
use crate::core::credentials::{
    digests_equal, Credentials, CredentialsInForce, Entry, Verification, Verified,
};
use crate::core::Location;
use crossbeam::channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// HELLOs waiting for the verifier at most. At some tens of milliseconds each, a full queue
/// is several seconds of work; beyond that a client is better told to retry than kept waiting.
pub const VERIFY_QUEUE_MAX: usize = 256;

/// HELLOs one worker holds waiting on a check already queued for the same name and secret
/// (a reconnect storm), at most.
pub const WAITING_MAX: usize = 16 * 1024;

/// The answer when the queue is full.
const BUSY: &str = "authentication busy: too many HELLOs waiting for credential checks; retry";

/// One secret to verify for the HELLO held at `at` on worker `worker`.
pub struct VerifyJob {
    worker: u16,
    at: Location,
    credentials: Arc<Credentials>,
    name: Box<str>,
    secret: Box<[u8]>,
    digest: [u8; 32],
}

/// The queue to the verifier thread; `None` parts when no credentials are in force.
pub fn queue() -> (Sender<VerifyJob>, Receiver<VerifyJob>) {
    crossbeam::channel::bounded(VERIFY_QUEUE_MAX)
}

/// The verifier thread: verifies each job and hands the outcome to its worker, until the node
/// stops.
pub fn run(shared: Arc<Shared>, jobs: Receiver<VerifyJob>) {
    loop {
        let job = match jobs.recv_timeout(Duration::from_millis(100)) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) if !shared.shutdown.load(Ordering::Acquire) => continue,
            Err(_) => return,
        };
        let mut secret = job.secret;
        let outcome = job.credentials.verify_secret(&job.name, &secret);
        secret.fill(0);
        let mut command = Command::Verified(Box::new(Verified {
            at: job.at,
            outcome,
            name: job.name,
            digest: job.digest,
        }));
        let queue = &shared.lane.commands[usize::from(job.worker)];
        // The worker drains its commands every loop iteration: a full queue empties soon.
        while let Err(back) = queue.push(command) {
            if shared.shutdown.load(Ordering::Acquire) {
                return;
            }
            command = back;
            std::thread::sleep(Duration::from_millis(1));
        }
        shared.wake_worker(usize::from(job.worker));
    }
}

/// A worker's side: the queue, the credentials in force and the digests of secrets verified.
pub struct VerifiedSecrets {
    worker: u16,
    jobs: Option<Sender<VerifyJob>>,
    credentials: Option<Arc<CredentialsInForce>>,
    key: [u8; 32],
    /// The key came from the OS's randomness; without it nothing is remembered (the digests
    /// would be guessable).
    keyed: bool,
    by_name: HashMap<Box<str>, (Arc<Entry>, [u8; 32])>,
    /// Checks queued by this worker, by digest, with the HELLOs that wait on each besides the
    /// one that queued it.
    waiting: HashMap<[u8; 32], Vec<Location>>,
    /// HELLOs in `waiting`'s lists.
    waiting_count: usize,
}

impl VerifiedSecrets {
    pub fn new(
        worker: u16,
        jobs: Option<Sender<VerifyJob>>,
        credentials: Option<Arc<CredentialsInForce>>,
    ) -> VerifiedSecrets {
        let mut key = [0; 32];
        let keyed = getrandom::fill(&mut key).is_ok();
        VerifiedSecrets {
            worker,
            jobs,
            credentials,
            key,
            keyed,
            by_name: HashMap::new(),
            waiting: HashMap::new(),
            waiting_count: 0,
        }
    }

    fn digest(&self, name: &str, secret: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length, so this cannot fail");
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(secret);
        mac.finalize().into_bytes().into()
    }

    /// Decides at once from a remembered digest, or queues the verification.
    pub fn verify(&mut self, at: Location, name: &str, secret: &[u8]) -> Verification {
        let (Some(jobs), Some(credentials)) = (&self.jobs, &self.credentials) else {
            return Verification::Done(Err("credentials are not in force on this node"));
        };
        let credentials = credentials.current();
        let digest = self.digest(name, secret);
        if let (Some(current), Some((entry, remembered))) =
            (credentials.entry(name), self.by_name.get(name))
        {
            if Arc::ptr_eq(current, entry) && digests_equal(remembered, &digest) {
                return Verification::Done(Ok(Arc::clone(current)));
            }
        }
        if let Some(waiters) = self.waiting.get_mut(&digest) {
            if self.waiting_count >= WAITING_MAX {
                return Verification::Done(Err(BUSY));
            }
            waiters.push(at);
            self.waiting_count += 1;
            return Verification::Pending;
        }
        let job = VerifyJob {
            worker: self.worker,
            at,
            credentials: Arc::clone(&credentials),
            name: name.into(),
            secret: secret.into(),
            digest,
        };
        match jobs.try_send(job) {
            Ok(()) => {
                self.waiting.insert(digest, Vec::new());
                Verification::Pending
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                Verification::Done(Err(BUSY))
            }
        }
    }

    /// Takes a check's outcome: remembers the digest of a secret that verified, and returns
    /// the HELLOs that waited on the check (besides `verified.at`), which get the same outcome.
    pub fn settle(&mut self, verified: &Verified) -> Vec<Location> {
        self.remember(verified);
        let waiters = self.waiting.remove(&verified.digest).unwrap_or_default();
        self.waiting_count -= waiters.len();
        waiters
    }

    fn remember(&mut self, verified: &Verified) {
        if let (true, Ok(entry)) = (self.keyed, &verified.outcome) {
            if self.by_name.len() >= ENTRIES_MAX {
                self.by_name.clear();
            }
            self.by_name
                .insert(verified.name.clone(), (Arc::clone(entry), verified.digest));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::credentials::secret::{hash_secret, SALT_BYTES};

    fn at(slot: u32) -> Location {
        Location {
            node: 0,
            worker: 0,
            slot,
            generation: 1,
        }
    }

    fn secrets() -> (
        VerifiedSecrets,
        Receiver<VerifyJob>,
        Arc<CredentialsInForce>,
    ) {
        let hash = hash_secret(b"pw", &[5; SALT_BYTES]).unwrap();
        let text = format!("[[entry]]\nname = \"game\"\nsecret_hash = \"{hash}\"\nids = [\"*\"]\n");
        let credentials = Arc::new(CredentialsInForce::new(
            Credentials::from_toml_str(&text).unwrap(),
        ));
        let (jobs, queue) = queue();
        let secrets = VerifiedSecrets::new(0, Some(jobs), Some(Arc::clone(&credentials)));
        (secrets, queue, credentials)
    }

    /// What the verifier thread would send back for `job`.
    fn check(job: VerifyJob) -> Verified {
        Verified {
            at: job.at,
            outcome: job.credentials.verify_secret(&job.name, &job.secret),
            name: job.name,
            digest: job.digest,
        }
    }

    #[test]
    fn hellos_with_the_same_secret_wait_on_one_check_then_a_verified_secret_is_remembered() {
        let (mut secrets, queue, _) = secrets();
        assert!(matches!(
            secrets.verify(at(1), "game", b"pw"),
            Verification::Pending
        ));
        assert!(matches!(
            secrets.verify(at(2), "game", b"pw"),
            Verification::Pending
        ));
        assert!(matches!(
            secrets.verify(at(3), "game", b"px"),
            Verification::Pending
        ));
        assert_eq!(queue.len(), 2, "one check per distinct secret");
        let right = check(queue.recv().unwrap());
        assert!(right.outcome.is_ok());
        assert_eq!(secrets.settle(&right), vec![at(2)]);
        let wrong = check(queue.recv().unwrap());
        assert!(wrong.outcome.is_err());
        assert_eq!(secrets.settle(&wrong), vec![]);
        assert!(matches!(
            secrets.verify(at(4), "game", b"pw"),
            Verification::Done(Ok(_))
        ));
        assert!(
            matches!(secrets.verify(at(5), "game", b"px"), Verification::Pending),
            "a refused secret is never remembered"
        );
        assert_eq!(queue.len(), 1);
    }

    #[test]
    fn a_remembered_secret_no_longer_answers_once_a_reload_replaced_its_entry() {
        let (mut secrets, queue, credentials) = secrets();
        secrets.verify(at(1), "game", b"pw");
        secrets.settle(&check(queue.recv().unwrap()));
        let hash = hash_secret(b"pw", &[6; SALT_BYTES]).unwrap();
        let file = format!("[[entry]]\nname = \"game\"\nsecret_hash = \"{hash}\"\nids = [\"*\"]\n");
        credentials.replace(Credentials::from_toml_str(&file).unwrap());
        assert!(matches!(
            secrets.verify(at(2), "game", b"pw"),
            Verification::Pending
        ));
    }

    #[test]
    fn past_the_queue_bound_a_hello_is_refused_at_once_as_busy() {
        let (mut secrets, _queue, _) = secrets();
        for i in 0..VERIFY_QUEUE_MAX {
            let secret = format!("s{i}");
            assert!(matches!(
                secrets.verify(at(i as u32), "game", secret.as_bytes()),
                Verification::Pending
            ));
        }
        assert!(matches!(
            secrets.verify(at(9999), "game", b"one more"),
            Verification::Done(Err(BUSY))
        ));
    }
}
