//! Link authentication: nonces, incarnations and the HMAC-SHA256 challenge-response that
//! proves both ends of a link know the cluster secret (PROTOCOL.md "Cluster links").
//!
//! Each side sends a fresh nonce in LINK_HELLO, then a mac over both nonces and its own node
//! id. Binding the receiver's nonce makes a recorded mac useless on another link (replay);
//! binding the sender's nonce and id, in a fixed order, makes the two directions' macs differ,
//! so a peer cannot reflect our own mac back at us. The secret itself never crosses the wire.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Domain separation: a mac made for links can never be mistaken for any other use of the
/// same secret, and a future link version gets macs of its own.
pub const LINK_MAC_LABEL: &[u8] = b"ringrelay-link-v1";

type HmacSha256 = Hmac<Sha256>;

/// A fresh 16-byte nonce from the OS generator. If the OS generator fails (it essentially
/// never does), falls back to hashing the time, pid, thread, a process-wide counter and a
/// stack address: weaker, but unique per call, which is what a challenge needs. Never panics.
pub fn new_nonce() -> [u8; 16] {
    let mut nonce = [0u8; 16];
    if getrandom::fill(&mut nonce).is_ok() {
        return nonce;
    }
    fallback_bytes()
}

/// A random id for this process start, so peers tell a restarted node (new incarnation, same
/// node id) from two live nodes configured with the same id.
pub fn new_incarnation() -> u64 {
    let n = new_nonce();
    let mut a = [0u8; 8];
    a.copy_from_slice(&n[..8]);
    u64::from_le_bytes(a)
}

fn fallback_bytes() -> [u8; 16] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let local = 0u8;
    let mut h = Sha256::new();
    h.update(now.as_nanos().to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    h.update(format!("{:?}", std::thread::current().id()).as_bytes());
    h.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    h.update((&local as *const u8 as usize).to_le_bytes());
    let digest = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

fn keyed(secret: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length (long ones are hashed), so this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(secret)
        .expect("HMAC accepts keys of any length, so this never fails")
}

fn link_hmac(secret: &[u8], first: &[u8; 16], second: &[u8; 16], node_id: u16) -> HmacSha256 {
    let mut mac = keyed(secret);
    mac.update(LINK_MAC_LABEL);
    mac.update(first);
    mac.update(second);
    mac.update(&node_id.to_le_bytes());
    mac
}

/// The mac this side SENDS in LINK_AUTH: HMAC-SHA256(secret, label || their_nonce ||
/// our_nonce || our_node_id LE). `their_nonce` is the nonce from the peer's LINK_HELLO.
pub fn link_mac(
    secret: &[u8],
    their_nonce: &[u8; 16],
    our_nonce: &[u8; 16],
    our_node_id: u16,
) -> [u8; 32] {
    link_hmac(secret, their_nonce, our_nonce, our_node_id)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks a mac RECEIVED in LINK_AUTH: it must be what the peer computes with [`link_mac`]
/// from its side, i.e. over label || our_nonce || their_nonce || their_node_id LE. The
/// comparison is constant-time, so timing reveals nothing about the expected mac.
pub fn mac_is_valid(
    secret: &[u8],
    our_nonce: &[u8; 16],
    their_nonce: &[u8; 16],
    their_node_id: u16,
    mac: &[u8; 32],
) -> bool {
    link_hmac(secret, our_nonce, their_nonce, their_node_id)
        .verify_slice(mac)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"cluster secret";

    /// Dialer D (node 1) and acceptor A (node 2) as in the handshake.
    fn nonces() -> ([u8; 16], [u8; 16]) {
        (new_nonce(), new_nonce())
    }

    #[test]
    fn handshake_macs_verify_both_ways() {
        let (d_nonce, a_nonce) = nonces();
        let from_a = link_mac(SECRET, &d_nonce, &a_nonce, 2);
        assert!(mac_is_valid(SECRET, &d_nonce, &a_nonce, 2, &from_a));
        let from_d = link_mac(SECRET, &a_nonce, &d_nonce, 1);
        assert!(mac_is_valid(SECRET, &a_nonce, &d_nonce, 1, &from_d));
        assert_ne!(from_a, from_d);
    }

    #[test]
    fn wrong_secret_is_rejected() {
        let (d_nonce, a_nonce) = nonces();
        let from_a = link_mac(b"other secret", &d_nonce, &a_nonce, 2);
        assert!(!mac_is_valid(SECRET, &d_nonce, &a_nonce, 2, &from_a));
        let empty = link_mac(b"", &d_nonce, &a_nonce, 2);
        assert!(!mac_is_valid(SECRET, &d_nonce, &a_nonce, 2, &empty));
    }

    #[test]
    fn swapped_nonces_are_rejected() {
        let (d_nonce, a_nonce) = nonces();
        let from_a = link_mac(SECRET, &a_nonce, &d_nonce, 2);
        assert!(!mac_is_valid(SECRET, &d_nonce, &a_nonce, 2, &from_a));
    }

    #[test]
    fn reflected_mac_is_rejected() {
        // Same node id on both sides: only the nonce order tells the directions apart.
        let (d_nonce, a_nonce) = nonces();
        let ours = link_mac(SECRET, &a_nonce, &d_nonce, 5);
        assert!(!mac_is_valid(SECRET, &d_nonce, &a_nonce, 5, &ours));
    }

    #[test]
    fn different_node_id_is_rejected() {
        let (d_nonce, a_nonce) = nonces();
        let from_a = link_mac(SECRET, &d_nonce, &a_nonce, 2);
        assert!(!mac_is_valid(SECRET, &d_nonce, &a_nonce, 3, &from_a));
        let mut flipped = from_a;
        flipped[31] ^= 1;
        assert!(!mac_is_valid(SECRET, &d_nonce, &a_nonce, 2, &flipped));
    }

    #[test]
    fn mac_matches_the_documented_construction() {
        let their = [1u8; 16];
        let ours = [2u8; 16];
        let mut m = keyed(SECRET);
        let mut msg = b"ringrelay-link-v1".to_vec();
        msg.extend_from_slice(&their);
        msg.extend_from_slice(&ours);
        msg.extend_from_slice(&0x0102u16.to_le_bytes());
        m.update(&msg);
        let expected: [u8; 32] = m.finalize().into_bytes().into();
        assert_eq!(link_mac(SECRET, &their, &ours, 0x0102), expected);
    }

    #[test]
    fn nonces_and_incarnations_differ() {
        assert_ne!(new_nonce(), new_nonce());
        assert_ne!(new_incarnation(), new_incarnation());
        assert_ne!(fallback_bytes(), fallback_bytes());
    }
}
