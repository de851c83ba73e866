//! Ed25519 public keys of credentials entries, so that a client proves it holds the private
//! key instead of sending a secret: no secret crosses the wire, and a proof signs a nonce the
//! relay chose for that one connection, so it cannot be replayed (PROTOCOL.md section 14).
//!
//! The file writes a key as `ed25519:<standard base64 of the 32 raw bytes>` or as a NATS nkey
//! user public key (`U...`: base32 of a prefix byte, the 32 bytes and a CRC-16, as
//! nats-io/nkeys encodes it), so NATS clients with nkeys can use the same entry.

use base64::Engine as _;

/// Bytes of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// What a version-4 PROOF signs before the nonce and the client id.
pub const HELLO_PROOF_CONTEXT: &[u8] = b"ringrelay-hello-v4\0";

/// The prefix of a key written as base64.
const ED25519_PREFIX: &str = "ed25519:";
/// nkeys' prefix byte of a user public key (`U`: 20 << 3).
const NKEY_USER_PREFIX_BYTE: u8 = 20 << 3;
/// RFC 4648 base32 alphabet, as nkeys uses it (no padding).
const BASE32_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A public key as the file writes it, checked: the 32 raw bytes.
pub fn parse(text: &str) -> Result<[u8; PUBLIC_KEY_LEN], String> {
    if let Some(b64) = text.strip_prefix(ED25519_PREFIX) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("{text:?}: not standard base64 after \"ed25519:\" ({e})"))?;
        return raw.try_into().map_err(|raw: Vec<u8>| {
            format!("{text:?}: {} bytes, an ed25519 key has 32", raw.len())
        });
    }
    if text.starts_with('U') {
        return decode_nkey_user(text).map_err(|e| format!("{text:?}: {e}"));
    }
    Err(format!(
        "{text:?}: expected \"ed25519:<base64 of 32 bytes>\" or a NATS nkey user public key (U...)"
    ))
}

/// The 32 raw bytes of a NATS nkey user public key (`U` + 55 base32 characters).
pub fn decode_nkey_user(text: &str) -> Result<[u8; PUBLIC_KEY_LEN], String> {
    let raw = base32_decode(text.as_bytes()).ok_or("not base32 (A-Z, 2-7)")?;
    if raw.len() != 1 + PUBLIC_KEY_LEN + 2 {
        return Err("not the length of an nkey public key (56 characters)".into());
    }
    if raw[0] != NKEY_USER_PREFIX_BYTE {
        return Err("not a user nkey (it starts with U)".into());
    }
    let (body, crc) = raw.split_at(1 + PUBLIC_KEY_LEN);
    if crc16(body).to_le_bytes() != crc {
        return Err("the nkey's checksum does not match".into());
    }
    let mut key = [0; PUBLIC_KEY_LEN];
    key.copy_from_slice(&body[1..]);
    Ok(key)
}

/// `key` as a NATS nkey user public key (what [`decode_nkey_user`] reads).
pub fn encode_nkey_user(key: &[u8; PUBLIC_KEY_LEN]) -> String {
    let mut raw = Vec::with_capacity(1 + PUBLIC_KEY_LEN + 2);
    raw.push(NKEY_USER_PREFIX_BYTE);
    raw.extend_from_slice(key);
    let crc = crc16(&raw);
    raw.extend_from_slice(&crc.to_le_bytes());
    base32_encode(&raw)
}

/// nkeys' prefix byte of a seed (`S`: 18 << 3).
const NKEY_SEED_PREFIX_BYTE: u8 = 18 << 3;
/// Bytes of an Ed25519 private key's seed.
pub const SEED_LEN: usize = 32;

/// `seed` as a NATS nkey user seed (`SU...`, what `nsc` and the NATS clients read): the seed
/// prefix and the user prefix packed into two bytes, the 32 bytes, a CRC-16, in base32.
pub fn encode_nkey_user_seed(seed: &[u8; SEED_LEN]) -> String {
    let mut raw = Vec::with_capacity(2 + SEED_LEN + 2);
    raw.push(NKEY_SEED_PREFIX_BYTE | (NKEY_USER_PREFIX_BYTE >> 5));
    raw.push((NKEY_USER_PREFIX_BYTE & 31) << 3);
    raw.extend_from_slice(seed);
    let crc = crc16(&raw);
    raw.extend_from_slice(&crc.to_le_bytes());
    base32_encode(&raw)
}

/// The 32-byte seed of a NATS nkey user seed (`SU` + 56 base32 characters).
pub fn decode_nkey_user_seed(text: &str) -> Result<[u8; SEED_LEN], String> {
    let raw = base32_decode(text.as_bytes()).ok_or("not base32 (A-Z, 2-7)")?;
    if raw.len() != 2 + SEED_LEN + 2 {
        return Err("not the length of an nkey seed (58 characters)".into());
    }
    let (body, crc) = raw.split_at(2 + SEED_LEN);
    if raw[0] & 0xf8 != NKEY_SEED_PREFIX_BYTE {
        return Err("not an nkey seed (it starts with S)".into());
    }
    let prefix = ((raw[0] & 7) << 5) | (raw[1] >> 3);
    if prefix != NKEY_USER_PREFIX_BYTE {
        return Err("not a user nkey seed (it starts with SU)".into());
    }
    if crc16(body).to_le_bytes() != crc {
        return Err("the nkey seed's checksum does not match".into());
    }
    let mut seed = [0; SEED_LEN];
    seed.copy_from_slice(&body[2..]);
    Ok(seed)
}

/// `key` as the file's `ed25519:<base64>` form.
pub fn encode_ed25519(key: &[u8; PUBLIC_KEY_LEN]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(key);
    format!("{ED25519_PREFIX}{b64}")
}

/// Whether `signature` is `key`'s Ed25519 signature of `message`.
pub fn verify(key: &[u8; PUBLIC_KEY_LEN], message: &[u8], signature: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
        .verify(message, signature)
        .is_ok()
}

/// What a version-4 PROOF signs: the context, the relay's nonce, the HELLO's client id (so a
/// proof names the id it was made for).
pub fn hello_proof_message(nonce: &[u8; 32], client_id: &[u8]) -> Vec<u8> {
    [HELLO_PROOF_CONTEXT, nonce, client_id].concat()
}

/// CRC-16/XMODEM (polynomial 0x1021, initial 0), the checksum of nkeys.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |mut crc, &byte| {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
        crc
    })
}

fn base32_decode(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &c in text {
        let value = BASE32_ALPHABET.iter().position(|&a| a == c)? as u32;
        buffer = (buffer << 5) | value;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32_ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(BASE32_ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A user public key of the NATS client libraries' test data (nats.py, nkeys.rb).
    const NATS_USER_KEY: &str = "UCK5N7N66OBOINFXAYC2ACJQYFSOD4VYNU6APEJTAVFZB2SVHLKGEW7L";

    #[test]
    fn both_forms_name_the_same_key() {
        let key = [7u8; 32];
        assert_eq!(parse(&encode_ed25519(&key)), Ok(key));
        let nkey = encode_nkey_user(&key);
        assert_eq!(nkey.len(), 56);
        assert!(nkey.starts_with('U'), "{nkey}");
        assert_eq!(parse(&nkey), Ok(key));
    }

    #[test]
    fn a_real_nkey_decodes_and_reencodes() {
        let key = parse(NATS_USER_KEY).unwrap();
        assert_eq!(encode_nkey_user(&key), NATS_USER_KEY);
    }

    #[test]
    fn bad_keys_are_refused_with_the_reason() {
        let mut wrong_crc = NATS_USER_KEY.to_string();
        wrong_crc.replace_range(10..11, if &wrong_crc[10..11] == "A" { "B" } else { "A" });
        for (text, reason) in [
            ("ed25519:AAAA", "3 bytes"),
            ("ed25519:!!", "base64"),
            ("secret", "expected"),
            ("Uabc", "base32"),
            ("UAAA", "length"),
            (wrong_crc.as_str(), "checksum"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }

    /// The user seed of the NATS client libraries' test data (nats.py, nkeys.rb), whose public
    /// key is [`NATS_USER_KEY`].
    const NATS_USER_SEED: &str = "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU";

    #[test]
    fn a_real_nkey_seed_makes_its_public_key_and_signs_as_nkeys_does() {
        use ring::signature::KeyPair;
        let seed = decode_nkey_user_seed(NATS_USER_SEED).unwrap();
        assert_eq!(encode_nkey_user_seed(&seed), NATS_USER_SEED);
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
        let key: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
        assert_eq!(encode_nkey_user(&key), NATS_USER_KEY);
        // nkeys.rb's spec: this nonce's signature, in standard base64.
        let signature = pair.sign(b"PXoWU7zWAMt75FY");
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(signature.as_ref()),
            "ZaAiVDgB5CeYoXoQ7cBCmq+ZllzUnGUoDVb8C7PilWvCs8XKfUchAUhz2P4BYAF++Dg3w05CqyQFRDiGL6LrDw=="
        );
    }

    #[test]
    fn bad_nkey_seeds_are_refused_with_the_reason() {
        let mut wrong_crc = NATS_USER_SEED.to_string();
        wrong_crc.replace_range(10..11, if &wrong_crc[10..11] == "A" { "B" } else { "A" });
        for (text, reason) in [
            (wrong_crc.as_str(), "checksum"),
            (NATS_USER_KEY, "length"),
            ("SU!", "base32"),
        ] {
            let error = decode_nkey_user_seed(text).unwrap_err();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }

    /// PROTOCOL.md section 14.2's worked example, byte for byte.
    #[test]
    fn the_worked_example_of_protocol_md_signs_as_printed() {
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap();
        use ring::signature::KeyPair;
        let key: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
        assert_eq!(
            encode_ed25519(&key),
            "ed25519:iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="
        );
        let nonce: [u8; 32] = std::array::from_fn(|i| i as u8);
        let signature = pair.sign(&hello_proof_message(&nonce, b"sensor-1"));
        let hex: String = signature
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, "c80d0313dda3cbf2ad635f5f9de823107bbe62fc2ebd2bd0031151cfc4b2a61c3eaca9f7b864accf26971ca04ce26d77118a1549cb32d8bc67755b84f413ac00");
    }

    #[test]
    fn a_signature_verifies_against_its_key_only() {
        use ring::signature::KeyPair;
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[1; 32]).unwrap();
        let key: [u8; 32] = pair.public_key().as_ref().try_into().unwrap();
        let message = hello_proof_message(&[9; 32], b"client");
        let signature = pair.sign(&message);
        assert!(verify(&key, &message, signature.as_ref()));
        assert!(!verify(
            &key,
            &hello_proof_message(&[8; 32], b"client"),
            signature.as_ref()
        ));
        assert!(!verify(&[2; 32], &message, signature.as_ref()));
    }
}
