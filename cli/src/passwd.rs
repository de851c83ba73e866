//! `ringrelay passwd`: the Argon2id hash of a secret for a credentials file's `secret_hash`.
//! The secret is read from standard input (never from the command line, where every local
//! user could read it through /proc); a trailing newline is not part of it.

use crate::CliFailure;
use clap::Args;
use ringrelay::core::credentials::file::NAME_LEN_MAX;
use ringrelay::core::credentials::secret::{hash_secret, SALT_BYTES};
use std::io::Read;

/// A secret longer than this is refused (HELLO's token holds at most 1,024 bytes, name and
/// colon included).
const SECRET_BYTES_MAX: usize = ringrelay::protocol::TOKEN_LEN_MAX;

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  \
    printf %s \"$SECRET\" | ringrelay passwd --name game >> credentials.toml\n\n\
    Clients of that entry then present the token game:$SECRET (native HELLO, \
    --token on the client verbs) or user game and password $SECRET (NATS CONNECT).")]
pub struct PasswdArgs {
    /// Print a whole `[[entry]]` named NAME (ids "*", every permission open: narrow them)
    /// instead of the hash alone.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// Reads the secret from stdin and prints its hash (or an entry with it).
pub fn passwd(args: &PasswdArgs) -> Result<(), CliFailure> {
    let mut secret = Vec::new();
    std::io::stdin()
        .take(SECRET_BYTES_MAX as u64 + 2)
        .read_to_end(&mut secret)?;
    for end in [b"\n".as_slice(), b"\r"] {
        if secret.ends_with(end) {
            secret.truncate(secret.len() - 1);
        }
    }
    if secret.is_empty() {
        return Err(CliFailure::new(
            "no secret on standard input (pipe it in: printf %s \"$SECRET\" | ringrelay passwd)",
        ));
    }
    if secret.len() > SECRET_BYTES_MAX {
        return Err(CliFailure::new(format!(
            "the secret is longer than {SECRET_BYTES_MAX} bytes"
        )));
    }
    let mut salt = [0; SALT_BYTES];
    getrandom::fill(&mut salt).map_err(|e| CliFailure::new(format!("no OS randomness: {e}")))?;
    let hash = hash_secret(&secret, &salt).map_err(CliFailure::new)?;
    secret.fill(0);
    match &args.name {
        None => println!("{hash}"),
        Some(name) => {
            if name.is_empty() || name.len() > NAME_LEN_MAX || name.contains([':', '"', '\\']) {
                return Err(CliFailure::new(format!(
                    "--name: 1 to {NAME_LEN_MAX} bytes without ':', '\"' or '\\'"
                )));
            }
            println!("\n[[entry]]\nname = \"{name}\"\nsecret_hash = \"{hash}\"\nids = [\"*\"]");
        }
    }
    Ok(())
}
