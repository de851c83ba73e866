//! `ringrelay keygen`: a new Ed25519 private key for a public-key credentials entry
//! (PROTOCOL.md section 14), written to a file only its owner may read, and the entry's
//! `public_key` line for the credentials file. `--public FILE` prints that line again for an
//! existing key.

use crate::CliFailure;
use clap::Args;
use ringrelay::client::SigningKey;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Mode of a new key file: read and write by its owner only.
const KEY_FILE_MODE: u32 = 0o600;

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  \
    ringrelay keygen --out sensor.key\n  \
    # paste the printed public_key line into the credentials file's entry \"sensor\", then:\n  \
    ringrelay send --key-file sensor.key --name sensor --id sensor-1 --to hub hello\n\n\
    The key file holds one line, ed25519-seed:<base64 of the 32-byte seed> (--nkey: a NATS \
    nkey user seed SU..., which NATS clients read too, and so does --key-file). Either \
    printed public_key line names the same key.")]
pub struct KeygenArgs {
    /// Write the new private key to FILE (mode 0600). An existing file is never overwritten.
    #[arg(long, value_name = "FILE", required_unless_present = "public")]
    pub out: Option<PathBuf>,
    /// Write the key as a NATS nkey user seed (SU...) instead of ed25519-seed:<base64>.
    #[arg(long, requires = "out")]
    pub nkey: bool,
    /// Print the public key of the private key in FILE; make no key.
    #[arg(long, value_name = "FILE", conflicts_with = "out")]
    pub public: Option<PathBuf>,
}

/// Makes and writes a key (or reads one, with `--public`) and prints its public key lines.
pub fn keygen(args: &KeygenArgs) -> Result<(), CliFailure> {
    let key = match (&args.public, &args.out) {
        (Some(path), _) => SigningKey::from_file(path).map_err(CliFailure::new)?,
        (None, Some(path)) => {
            let key = SigningKey::generate().map_err(CliFailure::new)?;
            let text = match args.nkey {
                true => format!("{}\n", key.nkey_seed()),
                false => key.file_text(),
            };
            write_new_key_file(path, &text)?;
            eprintln!(
                "ringrelay: private key written to {} (mode 0600); keep it secret",
                path.display()
            );
            key
        }
        (None, None) => return Err(CliFailure::new("give --out FILE or --public FILE")),
    };
    println!("{}", public_key_lines(&key));
    Ok(())
}

/// The credentials file lines for `key`: the `public_key` setting, and the same key as a NATS
/// nkey in a comment (either form may be used).
pub fn public_key_lines(key: &SigningKey) -> String {
    format!(
        "public_key = \"{}\"\n# the same key as a NATS nkey user key (either line will do):\n\
         # public_key = \"{}\"",
        key.public_key_ed25519(),
        key.public_key_nkey()
    )
}

/// Creates `path` with mode 0600 and writes `text`; refuses a path that exists.
fn write_new_key_file(path: &Path, text: &str) -> Result<(), CliFailure> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(KEY_FILE_MODE)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => CliFailure::new(format!(
                "{} exists: not overwritten (remove it, or choose another --out)",
                path.display()
            )),
            _ => CliFailure::new(format!("cannot create {}: {e}", path.display())),
        })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| CliFailure::new(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_key_file_is_private_and_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("rr-keygen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k");
        let _ = std::fs::remove_file(&path);
        let args = KeygenArgs {
            out: Some(path.clone()),
            nkey: false,
            public: None,
        };
        keygen(&args).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let key = SigningKey::from_file(&path).unwrap();
        let again = keygen(&args).unwrap_err();
        assert!(
            again.message.contains("not overwritten"),
            "{}",
            again.message
        );
        assert_eq!(SigningKey::from_file(&path).unwrap(), key);
        let lines = public_key_lines(&key);
        assert!(lines.starts_with("public_key = \"ed25519:"), "{lines}");
        assert!(lines.contains(&key.public_key_nkey()), "{lines}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
