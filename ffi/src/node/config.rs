//! `ringrelay_node_config`: the settings of an embedded node, set by the same keys as the
//! relay's TOML file (`ringrelay serve --config`), plus the host's hooks.

use super::hooks::{
    new_hook, ringrelay_authorize_fn, ringrelay_log_fn, ringrelay_presence_fn, Hooks,
};
use crate::boundary::{guard, str_arg, write_out};
use crate::status::{ringrelay_status, Failure};
use ringrelay::config::Config;
use std::ffi::{c_char, c_void};

/// Node settings (opaque). Made by `ringrelay_node_config_new`, freed by
/// `ringrelay_node_config_free`; `ringrelay_node_start` copies what it needs, so the config may
/// be freed (or reused for another node) once it returns.
#[allow(non_camel_case_types)]
pub struct ringrelay_node_config {
    /// The keys set so far, as TOML values.
    pub(crate) table: toml::Table,
    pub(crate) hooks: Hooks,
}

impl ringrelay_node_config {
    /// The relay configuration the keys make (defaults for the rest), checked whole, with
    /// the secrets of `token_file` and the like read from their files.
    pub(crate) fn config(&self) -> Result<Config, Failure> {
        Config::from_toml_str(&self.text()?)
            .and_then(|c| c.read_secret_files(|_, path| std::fs::read_to_string(path)))
            .map_err(|e| Failure::new(ringrelay_status::Config, e.to_string()))
    }

    /// Whether the keys make a configuration: each known, each of its type. The rules between
    /// settings (`node_id` needs `cluster_listen`) wait for `config`, at start, so keys can be
    /// set in any order.
    fn parses(&self) -> Result<(), Failure> {
        toml::from_str::<Config>(&self.text()?)
            .map(|_| ())
            .map_err(|e| Failure::new(ringrelay_status::Config, e.to_string()))
    }

    fn text(&self) -> Result<String, Failure> {
        toml::to_string(&self.table)
            .map_err(|e| Failure::new(ringrelay_status::Config, e.to_string()))
    }

    /// Sets `key` to `value`, read as a TOML value (`4`, `true`, `[0, 1]`, `"text"`), or as a
    /// plain string when the setting refuses it that way (`127.0.0.1:0`, `secret123`).
    fn set(&mut self, key: &str, value: &str) -> Result<(), Failure> {
        let previous = self.table.get(key).cloned();
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"));
        let mut last_error = None;
        for candidate in parsed
            .into_iter()
            .chain([toml::Value::String(value.into())])
        {
            self.table.insert(key.to_string(), candidate);
            match self.parses() {
                Ok(_) => return Ok(()),
                Err(e) => last_error = Some(e),
            }
        }
        match previous {
            Some(v) => self.table.insert(key.to_string(), v),
            None => self.table.remove(key),
        };
        Err(last_error.unwrap_or_else(|| Failure::new(ringrelay_status::Config, "refused")))
    }
}

/// The config behind a handle from C.
///
/// # Safety
/// Unless NULL, `config` is a live config from `ringrelay_node_config_new`.
pub(crate) unsafe fn config_mut<'a>(
    config: *mut ringrelay_node_config,
) -> Result<&'a mut ringrelay_node_config, Failure> {
    // SAFETY: the caller's promise.
    unsafe { config.as_mut() }.ok_or_else(|| Failure::invalid("config is NULL"))
}

/// Makes a config with every setting at its default (as a relay with an empty config file, but
/// workers are never pinned to CPUs unless `cpus` is set). `*out` receives it.
///
/// # Safety
/// `out` points to a writable pointer.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_node_config_new(
    out: *mut *mut ringrelay_node_config,
) -> ringrelay_status {
    guard(|| {
        let config = Box::new(ringrelay_node_config {
            table: toml::Table::new(),
            hooks: Hooks::default(),
        });
        let raw = Box::into_raw(config);
        // SAFETY: the caller's promise about `out`.
        unsafe { write_out(out, raw, "out") }.inspect_err(|_| {
            // SAFETY: `raw` came from Box::into_raw above and was not handed out.
            drop(unsafe { Box::from_raw(raw) });
        })
    })
}

/// Frees a config (and the hooks' userdata through their `drop` functions, unless a node
/// started from it still uses them). NULL is ignored.
///
/// # Safety
/// Unless NULL, `config` is a live config, not used again.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_node_config_free(config: *mut ringrelay_node_config) {
    crate::boundary::guard_value((), || {
        if !config.is_null() {
            // SAFETY: a live config is a Box from `ringrelay_node_config_new`, freed once.
            drop(unsafe { Box::from_raw(config) });
        }
    })
}

/// Sets one setting by its key in the relay's TOML file (README, "Configuration"), with the
/// value as text: `"listen"` `"127.0.0.1:7000"`, `"workers"` `"2"`, `"cpus"` `"[0, 1]"`,
/// `"token"` `"secret"`. The value is read as TOML first and as a plain string when the
/// setting refuses that. `RINGRELAY_STATUS_CONFIG` (and the reason in the last error) when the
/// key is unknown or the value is not of the setting's type; the config is then unchanged.
/// Bounds and the rules between settings (`node_id` needs `cluster_listen`) are checked by
/// `ringrelay_node_start`, so keys can be set in any order.
///
/// # Safety
/// `config` is a live config; `key` and `value` are NUL-terminated strings.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_node_config_set(
    config: *mut ringrelay_node_config,
    key: *const c_char,
    value: *const c_char,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promises.
        let (config, key, value) = unsafe {
            (
                config_mut(config)?,
                str_arg(key, "key")?,
                str_arg(value, "value")?,
            )
        };
        config.set(key, value)
    })
}

/// Asks `authorize(userdata, id, id_len, token, token_len, peer)` at every client HELLO that
/// passed the token check; false refuses the client (CLOSE AUTH_FAILED). `peer` is
/// `"IP:PORT"`, or `"local"` for a local client. It runs on a worker thread, for one client at
/// a time per worker but on several workers at once, so it must be quick and thread-safe, and
/// should call no ringrelay function but `ringrelay_status_str`, `ringrelay_last_error` and
/// `ringrelay_version*`: every call that returns a `ringrelay_status` is refused there with
/// `RINGRELAY_STATUS_IN_CALLBACK` (most could wait on the worker that waits for the hook). `drop(userdata)`, when
/// not NULL, runs once the last node started from this config is freed (or the config, if none
/// was started). Set before `ringrelay_node_start`; NULL `authorize` removes the hook.
///
/// # Safety
/// `config` is a live config; the functions are valid for as long as a node uses them.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_node_config_set_authorize(
    config: *mut ringrelay_node_config,
    authorize: ringrelay_authorize_fn,
    userdata: *mut c_void,
    drop: Option<unsafe extern "C" fn(*mut c_void)>,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promise.
        let config = unsafe { config_mut(config)? };
        config.hooks.authorize = authorize.map(|f| new_hook(f, userdata, drop));
        Ok(())
    })
}

/// Tells `presence(userdata, id, id_len, online)` when a client id registers on this node
/// (`online` true) and when that registration ends (false). Runs on a worker thread, with the
/// rules of `ringrelay_node_config_set_authorize`.
///
/// # Safety
/// As `ringrelay_node_config_set_authorize`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_node_config_set_presence(
    config: *mut ringrelay_node_config,
    presence: ringrelay_presence_fn,
    userdata: *mut c_void,
    drop: Option<unsafe extern "C" fn(*mut c_void)>,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promise.
        let config = unsafe { config_mut(config)? };
        config.hooks.presence = presence.map(|f| new_hook(f, userdata, drop));
        Ok(())
    })
}

/// Sends the node's log lines at `max_level` or more severe (1 error, 2 warn, 3 info, 4 debug,
/// 5 trace) to `log(userdata, level, message)`, a NUL-terminated line valid during the call.
/// Without it the node logs nothing (the library installs no logger of its own). Runs on every
/// thread of the node (workers, cluster links, the metrics endpoint) and on the threads that
/// call `ringrelay_node_start` and `ringrelay_node_stop`, with the rules of
/// `ringrelay_node_config_set_authorize`.
///
/// # Safety
/// As `ringrelay_node_config_set_authorize`.
#[no_mangle]
pub unsafe extern "C" fn ringrelay_node_config_set_log(
    config: *mut ringrelay_node_config,
    log: ringrelay_log_fn,
    userdata: *mut c_void,
    drop: Option<unsafe extern "C" fn(*mut c_void)>,
    max_level: u32,
) -> ringrelay_status {
    guard(|| {
        // SAFETY: the caller's promise.
        let config = unsafe { config_mut(config)? };
        config.hooks.log = log.map(|f| (new_hook(f, userdata, drop), max_level.clamp(1, 5)));
        Ok(())
    })
}
