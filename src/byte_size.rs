//! sans-IO: byte sizes as people write them in a config file: a plain number of bytes, or a
//! number with a binary unit (`64KiB`, `8 MiB`, `1GiB`).
//!
//! Units are powers of 1024 and spelled as IEC does (B, KiB, MiB, GiB, TiB; any case). `KB`,
//! `MB`, `K`, `M` are refused with the accepted spellings named, rather than guessed: the
//! difference between 1000 and 1024 matters for a memory bound.

#![forbid(unsafe_code)]

use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// Parses `text` as a size in bytes.
pub fn parse(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() {
        return Err(format!(
            "'{text}' is not a size: expected a number of bytes, optionally with a unit \
             (B, KiB, MiB, GiB, TiB), like 65536 or 64KiB"
        ));
    }
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is too large a size"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "kib" => 10,
        "mib" => 20,
        "gib" => 30,
        "tib" => 40,
        other => {
            return Err(format!(
                "'{text}': unknown unit '{other}'; use B, KiB, MiB, GiB or TiB (powers of 1024)"
            ))
        }
    };
    number
        .checked_mul(1u64 << shift)
        .ok_or_else(|| format!("'{text}' is too large a size"))
}

/// A size from TOML: an integer, or a string with a unit.
struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size in bytes: an integer, or a string like \"64KiB\" or \"8MiB\"")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("a size cannot be negative: {v}")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        parse(v).map_err(E::custom)
    }
}

/// `deserialize_with` for `usize` sizes.
pub fn usize_field<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let bytes = d.deserialize_any(SizeVisitor)?;
    usize::try_from(bytes).map_err(|_| de::Error::custom(format!("{bytes} bytes is too large")))
}

/// `deserialize_with` for optional `u64` sizes (absent: `None`, through `#[serde(default)]`).
pub fn option_u64_field<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_any(SizeVisitor).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_numbers_and_binary_units_parse() {
        assert_eq!(parse("65536"), Ok(65536));
        assert_eq!(parse("64KiB"), Ok(64 * 1024));
        assert_eq!(parse("8 MiB"), Ok(8 << 20));
        assert_eq!(parse("1gib"), Ok(1 << 30));
        assert_eq!(parse("2TiB"), Ok(2 << 40));
        assert_eq!(parse("1_048_576"), Ok(1 << 20));
        assert_eq!(parse("512B"), Ok(512));
    }

    #[test]
    fn ambiguous_units_and_garbage_are_refused_with_the_spellings() {
        for bad in ["64KB", "8M", "1.5MiB", "MiB", "", "-1", "x"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(bad.trim()) || bad.is_empty(), "{bad}: {err}");
        }
        assert!(parse("64KB").unwrap_err().contains("KiB"));
        assert!(parse("99999999999TiB").unwrap_err().contains("too large"));
    }
}
