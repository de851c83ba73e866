//! Reading the credentials file (the I/O around the sans-IO parser in
//! [`crate::core::credentials::file`]).

use super::error::ServeError;
use crate::core::credentials::Credentials;
use std::io::Read;
use std::path::Path;

/// A credentials file longer than this is refused: 65,536 entries with their patterns and
/// hashes fit in far less, and reading a wrong path (a log, a device) must not exhaust memory.
pub const CREDENTIALS_FILE_BYTES_MAX: u64 = 16 << 20;

/// Reads and checks the credentials file at `path`.
pub fn read(path: &Path) -> Result<Credentials, ServeError> {
    let fail = |reason: String| ServeError::Credentials {
        path: path.display().to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot open: {e}")))?;
    let mut text = String::new();
    file.take(CREDENTIALS_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(|e| fail(format!("cannot read as UTF-8 text: {e}")))?;
    if text.len() as u64 > CREDENTIALS_FILE_BYTES_MAX {
        return Err(fail(format!(
            "longer than {CREDENTIALS_FILE_BYTES_MAX} bytes"
        )));
    }
    Credentials::from_toml_str(&text).map_err(|e| fail(e.to_string()))
}
