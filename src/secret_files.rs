//! sans-IO: the secrets a config may name a file for (`token_file`, `cluster_secret_file`,
//! `metrics_token_file`), read into the values the relay uses (`token`, ...). The caller reads
//! the files (`ringrelay serve` opens each one and warns when others may read it), so the rules
//! here are the same for every program that embeds the library: a file holds the secret and at
//! most one trailing newline (`\n` or `\r\n`, as editors and `echo` leave one), and an empty
//! secret is an error, never "no secret".

#![forbid(unsafe_code)]

use crate::config::{Config, ConfigError};
use std::path::{Path, PathBuf};

/// The secret in a file's text: the text less one trailing `\n` or `\r\n`.
pub fn secret_in_file_text(text: &str) -> &str {
    text.strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text)
}

/// One secret: its value's and its file's settings.
struct SecretSlot<'a> {
    file_setting: &'static str,
    value: &'a mut Option<String>,
    file: &'a mut Option<PathBuf>,
}

impl Config {
    fn secret_slots(&mut self) -> [SecretSlot<'_>; 3] {
        [
            SecretSlot {
                file_setting: "token_file",
                value: &mut self.token,
                file: &mut self.token_file,
            },
            SecretSlot {
                file_setting: "cluster_secret_file",
                value: &mut self.cluster_secret,
                file: &mut self.cluster_secret_file,
            },
            SecretSlot {
                file_setting: "metrics_token_file",
                value: &mut self.metrics_token,
                file: &mut self.metrics_token_file,
            },
        ]
    }

    /// Reads every secret file into its value and clears the file setting, so the result holds
    /// each secret as a value only. `read(setting, path)` returns the file's whole text. A
    /// value and a file for the same secret, a file that cannot be read, and an empty secret
    /// are errors naming the setting.
    pub fn read_secret_files(
        mut self,
        mut read: impl FnMut(&'static str, &Path) -> std::io::Result<String>,
    ) -> Result<Config, ConfigError> {
        self.validate_secrets()?;
        for slot in self.secret_slots() {
            let Some(path) = slot.file.take() else {
                continue;
            };
            let failure = |why: String| ConfigError::SecretFile {
                setting: slot.file_setting,
                path: path.clone(),
                why,
            };
            let text = read(slot.file_setting, &path)
                .map_err(|e| failure(format!("cannot read it: {e}")))?;
            let secret = secret_in_file_text(&text);
            if secret.is_empty() {
                return Err(failure("is empty (a secret cannot be empty)".into()));
            }
            *slot.value = Some(secret.to_string());
        }
        Ok(self)
    }

    /// The first secret file setting still set (not read by [`Config::read_secret_files`]):
    /// the relay refuses to start with one, since it would run without that secret.
    pub fn unread_secret_file(&self) -> Option<&'static str> {
        [
            ("token_file", &self.token_file),
            ("cluster_secret_file", &self.cluster_secret_file),
            ("metrics_token_file", &self.metrics_token_file),
        ]
        .into_iter()
        .find_map(|(setting, file)| file.is_some().then_some(setting))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error, ErrorKind};

    fn files(text: &'static str) -> impl FnMut(&'static str, &Path) -> std::io::Result<String> {
        move |_, _| Ok(text.to_string())
    }

    #[test]
    fn one_trailing_newline_is_dropped_and_nothing_else() {
        assert_eq!(secret_in_file_text("s3cret\n"), "s3cret");
        assert_eq!(secret_in_file_text("s3cret\r\n"), "s3cret");
        assert_eq!(secret_in_file_text("s3cret"), "s3cret");
        assert_eq!(secret_in_file_text("s3cret\n\n"), "s3cret\n");
        assert_eq!(secret_in_file_text(" s3cret \n"), " s3cret ");
        assert_eq!(secret_in_file_text("\n"), "");
    }

    #[test]
    fn files_are_read_into_values_and_cleared() {
        let cfg = Config::from_toml_str(
            "token_file = \"/t\"\nmetrics_token_file = \"/m\"\ncluster_secret = \"c\"\n",
        )
        .unwrap();
        assert_eq!(cfg.unread_secret_file(), Some("token_file"));
        let mut asked = Vec::new();
        let read = cfg
            .read_secret_files(|setting, path| {
                asked.push((setting, path.to_path_buf()));
                Ok(format!("from {}\n", path.display()))
            })
            .unwrap();
        assert_eq!(read.token.as_deref(), Some("from /t"));
        assert_eq!(read.metrics_token.as_deref(), Some("from /m"));
        assert_eq!(read.cluster_secret.as_deref(), Some("c"));
        assert_eq!(read.unread_secret_file(), None);
        assert_eq!(
            asked,
            [
                ("token_file", PathBuf::from("/t")),
                ("metrics_token_file", PathBuf::from("/m"))
            ]
        );
        read.validate().unwrap();
        let json = read.redacted_json().to_string();
        assert!(!json.contains("from /"), "{json}");
    }

    #[test]
    fn empty_unreadable_or_doubled_secrets_are_errors_naming_the_setting() {
        let with_file = |key: &str| Config {
            cluster_secret_file: (key == "cluster_secret_file").then(|| "/s".into()),
            token_file: (key == "token_file").then(|| "/s".into()),
            ..Config::default()
        };
        for text in ["", "\n", "\r\n"] {
            let err = with_file("cluster_secret_file")
                .read_secret_files(files(text))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("cluster_secret_file /s: is empty"), "{err}");
        }
        let err = with_file("token_file")
            .read_secret_files(|_, _| Err(Error::new(ErrorKind::PermissionDenied, "denied")))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "token_file /s: cannot read it: denied");
        let both = Config {
            token: Some("t".into()),
            ..with_file("token_file")
        };
        let err = both.clone().read_secret_files(files("x")).unwrap_err();
        assert!(err.to_string().contains("token and token_file"), "{err}");
        assert!(both.validate().is_err());
        let empty = Config {
            metrics_token: Some(String::new()),
            ..Config::default()
        };
        let err = empty.validate().unwrap_err().to_string();
        assert!(err.starts_with("metrics_token must not be empty"), "{err}");
    }
}
