//! Where `serve` takes its secrets from (`token`, `cluster_secret`, `metrics_token`): the
//! command line, the environment, files, the config file. Files are read here (the library's
//! `Config::read_secret_files` applies the rules to what this reads), and two warnings are
//! logged: a secret on the command line, which every local user can read in /proc/PID/cmdline,
//! and a secret file that group or others may read.

use super::serve::ServeArgs;
use clap::parser::ValueSource;
use clap::ArgMatches;
use ringrelay::config::Config;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The metrics token's environment variable (read here: it has no command-line flag, so it
/// never lands in /proc/PID/cmdline).
pub const METRICS_TOKEN_ENV: &str = "RINGRELAY_METRICS_TOKEN";

/// A secret's flag, and what to use instead of it: its file flag and environment variable.
struct ArgvSecret {
    /// The clap id of the flag (the field name).
    id: &'static str,
    flag: &'static str,
    file_flag: &'static str,
    env: &'static str,
}

const ARGV_SECRETS: [ArgvSecret; 2] = [
    ArgvSecret {
        id: "token",
        flag: "--token",
        file_flag: "--token-file",
        env: "RINGRELAY_TOKEN",
    },
    ArgvSecret {
        id: "cluster_secret",
        flag: "--cluster-secret",
        file_flag: "--cluster-secret-file",
        env: "RINGRELAY_CLUSTER_SECRET",
    },
];

/// The secret flags of `serve` given on the command line itself (not taken from their
/// environment variable), from the parsed `serve` matches.
pub fn given_on_command_line(serve: &ArgMatches) -> Vec<&'static str> {
    ARGV_SECRETS
        .iter()
        .filter(|s| serve.value_source(s.id) == Some(ValueSource::CommandLine))
        .map(|s| s.flag)
        .collect()
}

/// Refuses a secret given both as a value (its flag or its environment variable) and as a
/// file flag, and an empty value, naming where the value came from. (Not left to clap's
/// `conflicts_with`: it would blame `--token` for a value that came from `RINGRELAY_TOKEN`.)
pub fn check_secret_flags(args: &ServeArgs) -> Result<(), String> {
    let given = [
        (args.token.as_deref(), args.token_file.is_some()),
        (
            args.cluster_secret.as_deref(),
            args.cluster_secret_file.is_some(),
        ),
    ];
    for (secret, (value, file_given)) in ARGV_SECRETS.iter().zip(given) {
        let Some(value) = value else {
            continue;
        };
        let source = match args.secrets_on_command_line.contains(&secret.flag) {
            true => secret.flag,
            false => secret.env,
        };
        if file_given {
            return Err(format!(
                "{source} and {} are both set: give one",
                secret.file_flag
            ));
        }
        if value.is_empty() {
            return Err(format!("{source} is empty (a secret cannot be empty)"));
        }
    }
    Ok(())
}

/// Logs one warning per secret flag given on the command line.
pub fn warn_about_command_line(flags: &[&'static str]) {
    for secret in ARGV_SECRETS.iter().filter(|s| flags.contains(&s.flag)) {
        tracing::warn!(
            "{} was given on the command line, where every local user can read it \
             (/proc/PID/cmdline, ps); use {} FILE or the environment variable {} instead",
            secret.flag,
            secret.file_flag,
            secret.env
        );
    }
}

/// `RINGRELAY_METRICS_TOKEN` (`env_value`), which overrides the config file's metrics token
/// as a flag would; with `--metrics-token-file` as well it is an error, as a value and a file
/// for one secret always are.
pub fn apply_metrics_token_env(
    mut cfg: Config,
    env_value: Option<std::ffi::OsString>,
    file_flag_given: bool,
) -> Result<Config, String> {
    let Some(value) = env_value else {
        return Ok(cfg);
    };
    if file_flag_given {
        return Err(format!(
            "{METRICS_TOKEN_ENV} and --metrics-token-file are both set: give one"
        ));
    }
    let value = value
        .into_string()
        .map_err(|_| format!("{METRICS_TOKEN_ENV} is not UTF-8"))?;
    if value.is_empty() {
        return Err(format!(
            "{METRICS_TOKEN_ENV} is empty (unset it for no authentication)"
        ));
    }
    cfg.metrics_token = Some(value);
    cfg.metrics_token_file = None;
    Ok(cfg)
}

/// Reads a secret file for `Config::read_secret_files`, warning (once, at start) when group or
/// others may read it, as ssh does for a private key. The mode is the open file's, so it is the
/// file that was read.
pub fn read_secret_file(setting: &'static str, path: &Path) -> std::io::Result<String> {
    read_private_file(setting, path, "the user the relay runs as")
}

/// Reads the file of a secret `setting` (a token, a key), warning when group or others may
/// read it; `owner` says who should own it instead.
pub fn read_private_file(setting: &str, path: &Path, owner: &str) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o044 != 0 {
        tracing::warn!(
            "{setting} {} is readable by group or others (mode {:04o}): anyone in them can \
             read the secret; chmod 600 it, owned by {owner}",
            path.display(),
            mode & 0o7777
        );
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    tracing::info!(setting, path = %path.display(), "secret read from file");
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_token_from_the_environment_overrides_the_file_but_not_a_flag() {
        let file = Config {
            metrics_token_file: Some("/from/toml".into()),
            ..Config::default()
        };
        let cfg = apply_metrics_token_env(file.clone(), Some("m".into()), false).unwrap();
        assert_eq!(cfg.metrics_token.as_deref(), Some("m"));
        assert_eq!(cfg.metrics_token_file, None);
        assert_eq!(
            apply_metrics_token_env(file.clone(), None, true).unwrap(),
            file
        );
        let both = apply_metrics_token_env(file.clone(), Some("m".into()), true).unwrap_err();
        assert!(both.contains("--metrics-token-file"), "{both}");
        let empty = apply_metrics_token_env(file, Some("".into()), false).unwrap_err();
        assert!(
            empty.starts_with("RINGRELAY_METRICS_TOKEN is empty"),
            "{empty}"
        );
    }

    #[test]
    fn only_secrets_typed_on_the_command_line_are_reported_as_such() {
        use clap::CommandFactory;
        let matches = crate::Cli::command()
            .try_get_matches_from(["ringrelay", "serve", "--token", "t", "--workers", "1"])
            .unwrap();
        let (_, serve) = matches.subcommand().unwrap();
        assert_eq!(given_on_command_line(serve), ["--token"]);
        let matches = crate::Cli::command()
            .try_get_matches_from(["ringrelay", "serve", "--token-file", "/t"])
            .unwrap();
        let (_, serve) = matches.subcommand().unwrap();
        assert!(given_on_command_line(serve).is_empty());
    }

    #[test]
    fn a_secret_file_is_read_whole() {
        let path = std::env::temp_dir().join(format!("rr-secret-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_file("token_file", &path).unwrap(), "s3cret\n");
        std::fs::remove_file(&path).unwrap();
        assert!(read_secret_file("token_file", &path).is_err());
    }
}
