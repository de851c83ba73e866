//! `ringrelay serve`: build the config (defaults, then `--config FILE`, then flags), start the
//! relay, print `listening ADDR`, and run until SIGINT or SIGTERM (SIGHUP reloads the credentials).

use super::secrets;
use super::signals::{ServeSignals, Signal};
use super::CliFailure;
use clap::Args;
use ringrelay::config::Config;
use ringrelay::endpoint::Endpoint;
use ringrelay::server::{host_probe, Reloader, Server, Stopper};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Flags of `ringrelay serve`; each one overrides the config file.
#[derive(Args, Debug, Clone)]
#[command(after_help = "\
Every setting has a documented default (src/config.rs, README \"Configuration\"); a TOML file
may set any of them and the flags override it. Addresses are HOST:PORT, IP:PORT or [IPv6]:PORT.

Secrets (the client token, the cluster secret, the metrics token) come from a file
(--token-file, token_file in the TOML file; the file's contents less one trailing newline) or
the environment (RINGRELAY_TOKEN, RINGRELAY_CLUSTER_SECRET, RINGRELAY_METRICS_TOKEN); flags and
environment override the TOML file. --token and --cluster-secret work too, but every local
user can read the command line (/proc/PID/cmdline), so they log a warning.

Examples:
  ringrelay serve                                   # 127.0.0.1:7400, one worker per CPU
  ringrelay serve --listen 0.0.0.0:7400 --token-file /etc/ringrelay/token \\
                  --metrics 127.0.0.1:7402
  ringrelay serve --config /etc/ringrelay/ringrelay.toml --check-config
  RINGRELAY_CLUSTER_SECRET=S ringrelay serve --node-id 2 --cluster-listen 10.0.0.2:7401 \\
                  --peers 10.0.0.1:7401             # a cluster node

Stops cleanly on SIGINT or SIGTERM (clients get CLOSE SHUTDOWN); a signal during start-up ends
it with status 128 + the signal. Logs go to stderr, filtered by RINGRELAY_LOG (default info).")]
pub struct ServeArgs {
    /// Client listen address, HOST:PORT (port 0 picks a free port) [default: 127.0.0.1:7400]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<Endpoint>,
    /// Also serve NATS clients (the NATS text protocol) on this address, like
    /// 127.0.0.1:4222 (off by default)
    #[arg(long, value_name = "ADDR")]
    pub nats_listen: Option<Endpoint>,
    /// Worker threads; 0 means one per available CPU [default: 0]
    #[arg(long, value_name = "N", conflicts_with = "cpus")]
    pub workers: Option<usize>,
    /// CPUs to pin one worker each to, like `0,2-3`.
    #[arg(long, value_name = "LIST", value_parser = parse_cpu_list)]
    pub cpus: Option<CpuList>,
    /// TOML config file (unknown keys are errors).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Token every client HELLO must carry. On the command line every local user can read it
    /// (/proc/PID/cmdline): prefer --token-file or the environment variable.
    #[arg(
        long,
        value_name = "T",
        env = "RINGRELAY_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// File holding the token every client HELLO must carry (one trailing newline is dropped).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Credentials file (TOML): entries with a hashed secret, the ids each may register and
    /// what each may send, publish, subscribe to and watch (`ringrelay passwd` makes entries).
    #[arg(long, value_name = "FILE")]
    pub credentials_file: Option<PathBuf>,
    /// Serve Prometheus metrics and /healthz over HTTP on this address (off by default).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<Endpoint>,
    /// File holding the bearer token every metrics request but /healthz must carry (or the
    /// token itself in the environment variable RINGRELAY_METRICS_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// This node's id in a cluster (1..65535); enables the cluster links.
    #[arg(long, value_name = "ID", value_parser = clap::value_parser!(u16).range(1..))]
    pub node_id: Option<u16>,
    /// Address for links from other nodes of the cluster.
    #[arg(long, value_name = "ADDR")]
    pub cluster_listen: Option<Endpoint>,
    /// Cluster members to join through (their --cluster-listen addresses); one is enough.
    #[arg(long, value_name = "ADDR[,ADDR...]", value_delimiter = ',', value_parser = parse_dialled)]
    pub peers: Option<Vec<String>>,
    /// Secret shared by every node of the cluster (links prove it with HMAC). On the command
    /// line every local user can read it: prefer --cluster-secret-file or the environment.
    #[arg(
        long,
        value_name = "S",
        env = "RINGRELAY_CLUSTER_SECRET",
        hide_env_values = true
    )]
    pub cluster_secret: Option<String>,
    /// File holding the cluster secret (one trailing newline is dropped).
    #[arg(long, value_name = "FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Address peers should dial to reach this node (default: --cluster-listen).
    #[arg(long, value_name = "ADDR", value_parser = parse_dialled)]
    pub cluster_advertise: Option<String>,
    /// Print the memory budget of these settings on this host (every store's worst case, and
    /// what is lowered to fit memory_max_bytes), then exit without serving.
    #[arg(long)]
    pub print_budget: bool,
    /// Read and check the settings, print the effective ones (JSON, secrets redacted, bounds
    /// as lowered for this host's memory and open-files limit) and the memory budget, then
    /// exit: 0 when the relay would start with them, 1 when not. Starts nothing.
    #[arg(long, conflicts_with = "print_budget")]
    pub check_config: bool,
    /// Print, as one JSON object, the least value of each host setting these settings need
    /// (`limit.nofile`, `limit.memlock`, `net.core.somaxconn`), then exit: what
    /// `ringrelay-tune check` compares the host against, so the two never disagree.
    #[arg(long, conflicts_with_all = ["print_budget", "check_config"])]
    pub print_host_needs: bool,
    /// The secret flags given on the command line itself, not by their environment variables
    /// (`--token`, `--cluster-secret`): warned about at start. Filled from the parsed matches
    /// (`secrets::given_on_command_line`), which know where each value came from.
    #[arg(skip)]
    pub secrets_on_command_line: Vec<&'static str>,
    #[command(flatten)]
    pub tls: TlsServeArgs,
}

/// The TLS client listener (README "TLS").
#[derive(clap::Args, Debug, Default, Clone)]
pub struct TlsServeArgs {
    /// Also serve clients over TLS 1.3 (or 1.2, see --tls-min-version) on this address, like
    /// 0.0.0.0:7443 (off by default; needs --tls-cert-file and --tls-key-file)
    #[arg(long, value_name = "ADDR")]
    pub tls_listen: Option<Endpoint>,
    /// The TLS listener's certificate chain (PEM, leaf first)
    #[arg(long, value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of --tls-cert-file (PEM)
    #[arg(long, value_name = "FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to
    #[arg(long, value_name = "FILE")]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificates: none, optional, or required (mutual TLS; needs --tls-ca-file)
    /// [default: none]
    #[arg(long, value_name = "POLICY", value_parser = parse_client_auth)]
    pub tls_client_auth: Option<ringrelay::tls::ClientAuth>,
    /// The oldest TLS version --tls-listen, --nats-tls-listen and --metrics-tls accept: 1.3,
    /// or 1.2 for clients that cannot speak 1.3 (cluster links stay 1.3) [default: 1.3]
    #[arg(long, value_name = "VERSION", value_parser = ringrelay::tls::TlsVersion::parse)]
    pub tls_min_version: Option<ringrelay::tls::TlsVersion>,
    /// Also serve NATS clients over TLS on this address, like 0.0.0.0:4443 (INFO in clear,
    /// then TLS, as nats-server does; the certificate flags of --tls-listen)
    #[arg(long, value_name = "ADDR")]
    pub nats_tls_listen: Option<Endpoint>,
    /// On --nats-tls-listen, the TLS handshake first, then INFO (nats-server's
    /// handshake_first; for clients set up with tls_first)
    #[arg(long)]
    pub nats_tls_handshake_first: bool,
    /// Mutual TLS on cluster links: this node's certificate chain (PEM), presented to every
    /// peer (with --cluster-tls-key-file and --cluster-tls-ca-file)
    #[arg(long, value_name = "FILE")]
    pub cluster_tls_cert_file: Option<PathBuf>,
    /// The private key of --cluster-tls-cert-file (PEM)
    #[arg(long, value_name = "FILE")]
    pub cluster_tls_key_file: Option<PathBuf>,
    /// The cluster's CA (PEM): every peer's certificate must chain to it
    #[arg(long, value_name = "FILE")]
    pub cluster_tls_ca_file: Option<PathBuf>,
    /// Serve the metrics endpoint (--metrics) over HTTPS with --tls-cert-file and
    /// --tls-key-file (reloaded with them) instead of plain HTTP
    #[arg(long)]
    pub metrics_tls: bool,
}

fn parse_client_auth(text: &str) -> Result<ringrelay::tls::ClientAuth, String> {
    use ringrelay::tls::ClientAuth;
    match text {
        "none" => Ok(ClientAuth::None),
        "optional" => Ok(ClientAuth::Optional),
        "required" => Ok(ClientAuth::Required),
        other => Err(format!("{other:?}: expected none, optional or required")),
    }
}

/// Overrides the TLS settings with the flags given.
fn apply_tls_flags(mut cfg: Config, tls: &TlsServeArgs) -> Config {
    if let Some(listen) = &tls.tls_listen {
        cfg.tls_listen = Some(listen.clone());
    }
    if let Some(listen) = &tls.nats_tls_listen {
        cfg.nats_tls_listen = Some(listen.clone());
    }
    if tls.nats_tls_handshake_first {
        cfg.nats_tls_handshake_first = true;
    }
    for (flag, setting) in [
        (&tls.tls_cert_file, &mut cfg.tls_cert_file),
        (&tls.tls_key_file, &mut cfg.tls_key_file),
        (&tls.tls_ca_file, &mut cfg.tls_ca_file),
        (&tls.cluster_tls_cert_file, &mut cfg.cluster_tls_cert_file),
        (&tls.cluster_tls_key_file, &mut cfg.cluster_tls_key_file),
        (&tls.cluster_tls_ca_file, &mut cfg.cluster_tls_ca_file),
    ] {
        if let Some(path) = flag {
            *setting = Some(path.clone());
        }
    }
    if let Some(auth) = tls.tls_client_auth {
        cfg.tls_client_auth = auth;
    }
    if let Some(min) = tls.tls_min_version {
        cfg.tls_min_version = min;
    }
    if tls.metrics_tls {
        cfg.metrics_tls = true;
    }
    cfg
}

/// A parsed `--cpus` list, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// Parses `0,2-3` style lists (`ringrelay::cpu_list`).
pub fn parse_cpu_list(text: &str) -> Result<CpuList, String> {
    ringrelay::cpu_list::parse(text).map(CpuList)
}

/// A peer or advertised address: checked by the same parser as the config file (empty entries
/// of a list, as in `--peers a:1,`, are dropped later), kept as text for the cluster to dial.
fn parse_dialled(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Ok(String::new());
    }
    text.parse::<Endpoint>().map(|e| e.to_string())
}

/// Defaults, then the file named by `--config`, then the flags and the secrets' environment
/// variables, then the secret files read; validated.
pub fn build_config(args: &ServeArgs) -> Result<Config, CliFailure> {
    let base = match &args.config {
        Some(path) => Config::from_toml_file(path)?,
        None => Config::default(),
    };
    secrets::check_secret_flags(args).map_err(CliFailure::new)?;
    let cfg = apply_flags(base, args);
    let metrics_token = std::env::var_os(secrets::METRICS_TOKEN_ENV);
    let cfg =
        secrets::apply_metrics_token_env(cfg, metrics_token, args.metrics_token_file.is_some())
            .map_err(CliFailure::new)?;
    let cfg = cfg.read_secret_files(secrets::read_secret_file)?;
    cfg.validate()?;
    Ok(cfg)
}

/// Overrides `cfg` with every flag that was given. `--workers` clears a file's `cpus` and
/// `--cpus` takes precedence over a file's `workers` (as it does in the config itself).
fn apply_flags(cfg: Config, args: &ServeArgs) -> Config {
    let mut cfg = apply_tls_flags(cfg, &args.tls);
    if let Some(listen) = &args.listen {
        cfg.listen = listen.clone();
    }
    if let Some(nats_listen) = &args.nats_listen {
        cfg.nats_listen = Some(nats_listen.clone());
    }
    if let Some(workers) = args.workers {
        cfg.workers = workers;
        cfg.cpus = None;
    }
    if let Some(CpuList(cpus)) = &args.cpus {
        cfg.cpus = Some(cpus.clone());
    }
    if let Some(token) = &args.token {
        cfg.token = Some(token.clone());
        cfg.token_file = None;
    }
    if let Some(path) = &args.token_file {
        cfg.token_file = Some(path.clone());
        cfg.token = None;
    }
    if let Some(path) = &args.credentials_file {
        cfg.credentials_file = Some(path.clone());
    }
    if let Some(metrics) = &args.metrics {
        cfg.metrics = Some(metrics.clone());
    }
    if let Some(path) = &args.metrics_token_file {
        cfg.metrics_token_file = Some(path.clone());
        cfg.metrics_token = None;
    }
    if let Some(node_id) = args.node_id {
        cfg.node_id = node_id;
    }
    if let Some(addr) = &args.cluster_listen {
        cfg.cluster_listen = Some(addr.clone());
    }
    if let Some(peers) = &args.peers {
        cfg.peers = peers.iter().filter(|p| !p.is_empty()).cloned().collect();
    }
    if let Some(secret) = &args.cluster_secret {
        cfg.cluster_secret = Some(secret.clone());
        cfg.cluster_secret_file = None;
    }
    if let Some(path) = &args.cluster_secret_file {
        cfg.cluster_secret_file = Some(path.clone());
        cfg.cluster_secret = None;
    }
    if let Some(addr) = &args.cluster_advertise {
        cfg.cluster_advertise = Some(addr.clone());
    }
    cfg
}

/// Raises the soft limits the relay needs to their hard limits, then logs one warning per
/// host setting that still limits the relay, naming the `ringrelay-tune` command that fixes it.
fn check_host(cfg: &Config) {
    for (setting, result) in host_probe::raise_soft_limits(cfg) {
        match result {
            Ok(r) => tracing::info!(
                setting,
                from = r.from,
                to = r.to,
                "raised soft limit to the hard limit"
            ),
            Err(e) => tracing::debug!(setting, "cannot raise soft limit: {e}"),
        }
    }
    let limits = host_probe::ProcessLimits::current();
    for finding in host_probe::probe(std::path::Path::new("/"), cfg, &limits) {
        match finding.level {
            host_probe::Level::Limiting => tracing::warn!("{finding}"),
            host_probe::Level::Unknown => tracing::debug!("{finding}"),
        }
    }
}

/// Runs the relay until SIGINT/SIGTERM, then shuts it down.
pub fn run(args: &ServeArgs) -> Result<(), CliFailure> {
    secrets::warn_about_command_line(&args.secrets_on_command_line);
    let cfg = build_config(args)?;
    if args.print_budget {
        let plan = ringrelay::server::MemoryPlan::for_host(&cfg)?;
        print!("{}", plan.report());
        return Ok(());
    }
    if args.check_config {
        return check_config(&cfg);
    }
    if args.print_host_needs {
        let needs: serde_json::Map<String, serde_json::Value> = host_probe::needs(&cfg)
            .into_iter()
            .map(|(key, least)| (key.to_string(), least.into()))
            .collect();
        println!("{}", serde_json::Value::Object(needs));
        return Ok(());
    }
    // Block the signals before any worker thread exists, so every thread inherits the mask
    // and only the signal thread ever sees them.
    let signals = ServeSignals::block()?;
    let workers = cfg.worker_count();
    check_host(&cfg);
    // The signal thread runs from before the start: a signal while the relay starts (which
    // can take a while with many workers) ends the process at once, since no client has been
    // told anything yet; once it runs, a signal stops it cleanly. This thread waits for the
    // workers, so a worker that fails on its own also ends the process (with its error).
    let running: Arc<Mutex<Option<(Stopper, Reloader)>>> = Arc::default();
    let slot = Arc::clone(&running);
    std::thread::Builder::new()
        .name("ringrelay-signals".into())
        .spawn(move || handle_signals(&signals, &slot))
        .map_err(|e| CliFailure::new(format!("cannot start the signal thread: {e}")))?;
    let server = Server::start(cfg)?;
    let addr = server.local_addr();
    *running.lock().unwrap_or_else(|p| p.into_inner()) =
        Some((server.stopper(), server.reloader()));
    announce(&server)?;
    tracing::info!(%addr, workers, "relay running");
    server.wait()?;
    Ok(())
}

/// The signal thread: SIGHUP reloads the credentials (the relay logs the outcome), SIGINT or
/// SIGTERM stops the relay, or ends the process at once while it is still starting (no client
/// has been told anything yet).
fn handle_signals(signals: &ServeSignals, running: &Mutex<Option<(Stopper, Reloader)>>) {
    let signal = loop {
        match signals.wait() {
            Ok(Signal::Reload) => {
                let handles = running.lock().unwrap_or_else(|p| p.into_inner());
                match &*handles {
                    // The relay logs the outcome, and why a file was refused.
                    Some((_, reloader)) => {
                        let _ = reloader.reload();
                    }
                    None => tracing::warn!("SIGHUP during start-up: nothing reloaded"),
                }
            }
            Ok(Signal::Stop(signal)) => break Some(signal),
            Err(e) => {
                tracing::error!("waiting for signals failed: {e}; shutting down");
                break None;
            }
        }
    };
    let handles = running.lock().unwrap_or_else(|p| p.into_inner()).take();
    match (handles, signal) {
        (Some((stopper, _)), signal) => {
            tracing::info!(signal = signal.map(|s| s.name()), "shutting down");
            stopper.stop();
        }
        (None, Some(signal)) => {
            let _ = writeln!(
                std::io::stderr(),
                "ringrelay: {} during start-up: stopped",
                signal.name()
            );
            std::process::exit(128 + signal.number());
        }
        (None, None) => {}
    }
}

/// `serve --check-config`: the effective settings and the budget, or why they cannot serve.
fn check_config(cfg: &Config) -> Result<(), CliFailure> {
    let plan = ringrelay::server::MemoryPlan::for_host(cfg)?;
    let mut effective = plan.config.clone();
    let nofile = host_probe::ProcessLimits::current().nofile.map(|l| l.soft);
    effective.connections_per_worker_max =
        host_probe::connections_per_worker_effective(&effective, nofile);
    let json = serde_json::to_string_pretty(&effective.redacted_json())
        .map_err(|e| CliFailure::new(format!("cannot print the settings: {e}")))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{json}")?;
    write!(stdout, "{}", plan.report())?;
    writeln!(stdout, "config ok")?;
    Ok(())
}

/// Prints the `listening ADDR` line scripts wait for (after `nats listening ADDR`, `tls
/// listening ADDR` and `nats tls listening ADDR` when those are served, so the line scripts
/// wait for still comes last).
fn announce(server: &Server) -> Result<(), CliFailure> {
    let mut stdout = std::io::stdout().lock();
    if let Some(nats) = server.nats_addr() {
        writeln!(stdout, "nats listening {nats}")?;
    }
    if let Some(tls) = server.tls_addr() {
        writeln!(stdout, "tls listening {tls}")?;
    }
    if let Some(nats_tls) = server.nats_tls_addr() {
        writeln!(stdout, "nats tls listening {nats_tls}")?;
    }
    let addr = server.local_addr();
    writeln!(stdout, "listening {addr}")?;
    stdout.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::FromArgMatches;

    fn args() -> ServeArgs {
        ServeArgs {
            listen: None,
            nats_listen: None,
            workers: None,
            cpus: None,
            config: None,
            token: None,
            token_file: None,
            credentials_file: None,
            metrics: None,
            metrics_token_file: None,
            node_id: None,
            cluster_listen: None,
            peers: None,
            cluster_secret: None,
            cluster_secret_file: None,
            cluster_advertise: None,
            print_budget: false,
            check_config: false,
            print_host_needs: false,
            secrets_on_command_line: Vec::new(),
            tls: Default::default(),
        }
    }

    #[test]
    fn cpu_lists_parse_singles_and_ranges() {
        assert_eq!(parse_cpu_list("0,2-3"), Ok(CpuList(vec![0, 2, 3])));
        assert_eq!(parse_cpu_list("5"), Ok(CpuList(vec![5])));
        assert_eq!(parse_cpu_list(" 1 , 4-4 "), Ok(CpuList(vec![1, 4])));
        assert_eq!(parse_cpu_list("3,1"), Ok(CpuList(vec![3, 1])));
    }

    #[test]
    fn bad_cpu_lists_are_errors_not_panics() {
        for bad in [
            "",
            ",",
            "0,",
            "a",
            "1-",
            "-1",
            "3-1",
            "0-2,1",
            "1,1",
            "0-99999999999999999999",
            "4096",
        ] {
            assert!(parse_cpu_list(bad).is_err(), "'{bad}' should be rejected");
        }
    }

    #[test]
    fn flags_override_the_file() {
        let file = Config::from_toml_str("workers = 3\ncpus = [1]\ntoken = \"file\"\n").unwrap();
        let mut flags = args();
        flags.workers = Some(2);
        flags.token = Some("flag".into());
        flags.listen = Some("127.0.0.1:0".parse().unwrap());
        flags.metrics = Some("127.0.0.1:9400".parse().unwrap());
        let cfg = apply_flags(file.clone(), &flags);
        assert_eq!(cfg.metrics, flags.metrics);
        assert_eq!(
            (cfg.workers, cfg.cpus.clone(), cfg.token.as_deref()),
            (2, None, Some("flag"))
        );
        assert_eq!(cfg.listen.port(), 0);

        let mut flags = args();
        flags.cpus = Some(CpuList(vec![0, 2]));
        let cfg = apply_flags(file.clone(), &flags);
        assert_eq!(cfg.cpus, Some(vec![0, 2]));
        assert_eq!(cfg.worker_count(), 2);

        assert_eq!(apply_flags(file.clone(), &args()), file);
    }

    #[test]
    fn metrics_tls_flag_turns_on_https_for_the_metrics_endpoint() {
        let mut flags = args();
        assert!(!apply_flags(Config::default(), &flags).metrics_tls);
        flags.tls.metrics_tls = true;
        assert!(apply_flags(Config::default(), &flags).metrics_tls);
    }

    #[test]
    fn a_secret_flag_replaces_the_files_value_or_file() {
        let file =
            Config::from_toml_str("token = \"toml\"\ncluster_secret_file = \"/c\"\n").unwrap();
        let mut flags = args();
        flags.token_file = Some(PathBuf::from("/t"));
        flags.cluster_secret = Some("flag".into());
        flags.metrics_token_file = Some(PathBuf::from("/m"));
        let cfg = apply_flags(file, &flags);
        assert_eq!(
            (cfg.token, cfg.token_file),
            (None, flags.token_file.clone())
        );
        assert_eq!(
            (cfg.cluster_secret.as_deref(), cfg.cluster_secret_file),
            (Some("flag"), None)
        );
        assert_eq!(cfg.metrics_token_file, flags.metrics_token_file.clone());
        flags.token = Some("both".into());
        let err = build_config(&flags).unwrap_err().message;
        assert_eq!(
            err, "RINGRELAY_TOKEN and --token-file are both set: give one",
            "not typed on the command line, so it came from the environment"
        );
        flags.secrets_on_command_line = vec!["--token"];
        let err = build_config(&flags).unwrap_err().message;
        assert!(err.starts_with("--token and --token-file"), "{err}");
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let mut flags = args();
        flags.config = Some(PathBuf::from("/nonexistent/ringrelay.toml"));
        let err = build_config(&flags).unwrap_err();
        assert!(
            err.message.contains("cannot read config"),
            "{}",
            err.message
        );
        assert_eq!(build_config(&args()).unwrap(), Config::default());
    }

    #[test]
    fn flags_and_the_file_take_the_same_addresses() {
        let file = Config::from_toml_str("listen = \"localhost:7400\"\n").unwrap();
        let flag = ServeArgs::augment_args(clap::Command::new("t"))
            .try_get_matches_from(["t", "--listen", "localhost:7400"])
            .unwrap();
        let flag = ServeArgs::from_arg_matches(&flag).unwrap();
        assert_eq!(flag.listen.as_ref(), Some(&file.listen));
        for bad in ["127.0.0.1", "localhost", "a b:1"] {
            let toml = format!("listen = \"{bad}\"\n");
            let from_file = Config::from_toml_str(&toml).unwrap_err().to_string();
            let from_flag = ServeArgs::augment_args(clap::Command::new("t"))
                .try_get_matches_from(["t", "--listen", bad])
                .unwrap_err()
                .to_string();
            let why = bad.parse::<Endpoint>().unwrap_err();
            assert!(from_file.contains(&why), "{from_file}");
            assert!(from_flag.contains(&why), "{from_flag}");
        }
        assert!(parse_dialled("127.0.0.1").is_err());
        assert_eq!(parse_dialled("").unwrap(), "");
    }
}
