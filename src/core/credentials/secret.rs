//! Secrets stored as Argon2id hashes in PHC form (`$argon2id$v=19$m=...,t=...,p=...$salt$hash`),
//! never in clear. Verifying one costs what its parameters say (the default, OWASP's minimum
//! for Argon2id: 19 MiB of memory and 2 passes, some tens of milliseconds), which is the
//! point: a stolen file is slow to attack. So a relay never verifies on a worker thread; the
//! I/O layer runs [`super::Credentials::verify_secret`] on its verifier thread.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Bytes of salt of a new hash (the PHC recommendation for passwords).
pub const SALT_BYTES: usize = 16;

/// Checks that `phc` is an Argon2 hash this build can verify.
pub fn check_hash(phc: &str) -> Result<(), String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("not a PHC hash string ({e})"))?;
    if !hash.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "algorithm {} is not argon2id, argon2i or argon2d",
            hash.algorithm
        ));
    }
    if hash.hash.is_none() {
        return Err("the PHC string has no hash part".into());
    }
    Ok(())
}

/// Whether `secret` is the secret `phc` was made from. `phc` passed [`check_hash`].
pub fn verify(phc: &str, secret: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default().verify_password(secret, &hash).is_ok(),
        Err(_) => false,
    }
}

/// A new Argon2id hash of `secret` with the default parameters and the given random salt.
pub fn hash_secret(secret: &[u8], salt: &[u8; SALT_BYTES]) -> Result<String, String> {
    let salt = SaltString::encode_b64(salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(secret, &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_secret_and_no_other() {
        let phc = hash_secret(b"s3cret", &[7; SALT_BYTES]).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(check_hash(&phc), Ok(()));
        assert!(verify(&phc, b"s3cret"));
        assert!(!verify(&phc, b"s3cret "));
        assert!(!verify(&phc, b""));
    }

    #[test]
    fn only_argon2_phc_strings_are_accepted() {
        assert!(check_hash("s3cret").is_err());
        assert!(check_hash("$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA").is_err());
        assert!(check_hash("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0").is_err());
    }
}
