//! sans-IO: who may read the metrics endpoint. With `metrics_token` set, every request but
//! `/healthz` must carry `Authorization: Bearer <token>`; the check compares SHA-256 digests of
//! the presented and the configured token, both 32 bytes whatever the lengths, without an early
//! exit, so its time tells an attacker neither a matching prefix nor the token's length. The
//! admin endpoints to come (credentials reload) take the same token.
//!
//! Without a token, [`exposure_warning`] names the risk of a listener other hosts can reach.

#![forbid(unsafe_code)]

use crate::core::credentials::{digest, digests_equal};
use std::net::SocketAddr;

/// The one path open without the token: load balancers and orchestrators probe readiness
/// without credentials, and it tells nothing but ready or not.
pub const OPEN_PATH: &str = "/healthz";

/// The `WWW-Authenticate` challenge of a refused request (RFC 6750).
pub const CHALLENGE: &str = "Bearer";

/// The configured token, kept only as its digest.
pub struct BearerToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(redacted)")
    }
}

impl BearerToken {
    pub fn new(token: &str) -> BearerToken {
        BearerToken {
            digest: digest(token.as_bytes()),
        }
    }

    /// Whether an `Authorization` header value (`None`: no header) carries this token. The
    /// scheme is case-insensitive (RFC 7235); the token is compared exactly.
    pub fn admits(&self, authorization: Option<&str>) -> bool {
        let presented = authorization.and_then(bearer_credentials);
        // A missing or malformed header is hashed too (as nothing), so every refusal costs
        // the same work; whether there was a token at all counts only after the comparison.
        let same = digests_equal(&digest(presented.unwrap_or("").as_bytes()), &self.digest);
        same && presented.is_some()
    }
}

/// The credentials of a `Bearer` header value, without the scheme and surrounding blanks.
fn bearer_credentials(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// The warning for a metrics listener on `addr` without a token, when other hosts may reach
/// it (any address but loopback: the wildcards 0.0.0.0 and :: included); `None` on loopback
/// or with a token.
pub fn exposure_warning(addr: SocketAddr, authenticated: bool) -> Option<String> {
    if authenticated || addr.ip().to_canonical().is_loopback() {
        return None;
    }
    Some(format!(
        "metrics endpoint on {addr} is reachable beyond this host and has no authentication: \
         anyone who reaches it can read /metrics, /config, /connections (client ids and \
         addresses), /subscriptions and /cluster; set metrics_token_file (or \
         RINGRELAY_METRICS_TOKEN) or bind it to 127.0.0.1"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let token = BearerToken::new("s3cret-token");
        assert!(token.admits(Some("Bearer s3cret-token")));
        assert!(token.admits(Some("bearer s3cret-token")));
        assert!(token.admits(Some("BEARER   s3cret-token  ")));
        for refused in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("s3cret-token"),
            Some("Basic s3cret-token"),
            Some("Bearer s3cret-toke"),
            Some("Bearer s3cret-token2"),
            Some("Bearer S3CRET-TOKEN"),
            Some("Bearers3cret-token"),
        ] {
            assert!(!token.admits(refused), "{refused:?}");
        }
        assert!(
            !BearerToken::new("").admits(Some("Bearer ")),
            "an empty token never admits (config refuses one anyway)"
        );
    }

    #[test]
    fn digests_compare_equal_only_when_every_byte_is() {
        let a = digest(b"a");
        assert!(digests_equal(&a, &a));
        for i in [0, 17, 31] {
            let mut b = a;
            b[i] ^= 1;
            assert!(!digests_equal(&a, &b), "byte {i}");
        }
    }

    #[test]
    fn warns_beyond_loopback_without_a_token_only() {
        let warned = |a: &str, auth| exposure_warning(a.parse().unwrap(), auth).is_some();
        for open in [
            "0.0.0.0:9400",
            "[::]:9400",
            "10.0.0.5:9400",
            "[2001:db8::1]:9400",
        ] {
            assert!(warned(open, false), "{open}");
            assert!(!warned(open, true), "{open} with a token");
        }
        for local in [
            "127.0.0.1:9400",
            "127.1.2.3:9400",
            "[::1]:9400",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(!warned(local, false), "{local}");
        }
        let text = exposure_warning("0.0.0.0:9400".parse().unwrap(), false).unwrap();
        assert!(
            text.contains("0.0.0.0:9400") && text.contains("metrics_token_file"),
            "{text}"
        );
    }
}
