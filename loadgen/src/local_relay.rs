//! A relay started as a child process (`<this exe> serve --listen 127.0.0.1:0 ...`) for runs
//! without `--server`. The guard kills and reaps it on every path, including errors.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the child may take to print its `listening ADDR` line.
const STARTUP_WAIT: Duration = Duration::from_secs(10);
/// Output lines kept for error messages.
const TAIL_LINES_MAX: usize = 20;
/// Output lines read from the child before the reader stops looking (the rest is drained).
const OUTPUT_LINES_MAX: usize = 1_000_000;

/// Kills and waits for the child relay when dropped.
pub struct LocalRelay {
    child: Child,
    pub addr: SocketAddr,
    tail: Arc<Mutex<VecDeque<String>>>,
}

/// The `serve` arguments for the child.
pub fn serve_args(
    relay_cpus: Option<&str>,
    relay_workers: usize,
    config: Option<&std::path::Path>,
) -> Vec<String> {
    let mut args: Vec<String> = ["serve", "--listen", "127.0.0.1:0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    match relay_cpus {
        Some(list) => args.extend(["--cpus".to_string(), list.to_string()]),
        None => args.extend(["--workers".to_string(), relay_workers.to_string()]),
    }
    if let Some(path) = config {
        args.extend(["--config".to_string(), path.display().to_string()]);
    }
    args
}

/// The address in a `listening ADDR` line.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    line.trim()
        .strip_prefix("listening ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl LocalRelay {
    pub fn start(
        relay_cpus: Option<&str>,
        relay_workers: usize,
        config: Option<&std::path::Path>,
    ) -> Result<LocalRelay, String> {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find own executable: {e}"))?;
        let args = serve_args(relay_cpus, relay_workers, config);
        let mut child = Command::new(&exe)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {} {}: {e}", exe.display(), args.join(" ")))?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            spawn_reader(out, Arc::clone(&tail), Some(addr_tx));
        }
        if let Some(err) = child.stderr.take() {
            spawn_reader(err, Arc::clone(&tail), None);
        }
        let mut relay = LocalRelay {
            child,
            addr: "127.0.0.1:0".parse().map_err(|_| "literal")?,
            tail,
        };
        let deadline = Instant::now() + STARTUP_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match addr_rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(addr) => {
                    relay.addr = addr;
                    return Ok(relay);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(relay.failure("exited before printing 'listening ADDR'"));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = relay.child.try_wait() {
                        return Err(relay.failure(&format!("exited with {status} during startup")));
                    }
                    if left.is_zero() {
                        return Err(relay.failure("printed no 'listening ADDR' line within 10 s"));
                    }
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn failure(&self, what: &str) -> String {
        let tail = self
            .tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        format!("local relay {what}; its last output:\n{tail}")
    }
}

/// Reads the child's output lines: remembers a tail, sends the first `listening` address.
fn spawn_reader<R: Read + Send + 'static>(
    src: R,
    tail: Arc<Mutex<VecDeque<String>>>,
    mut addr_tx: Option<mpsc::Sender<SocketAddr>>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(src);
        let mut line = String::new();
        for _ in 0..OUTPUT_LINES_MAX {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if let Some(addr) = parse_listening_line(&line) {
                if let Some(tx) = addr_tx.take() {
                    let _ = tx.send(addr);
                }
            }
            if let Ok(mut t) = tail.lock() {
                if t.len() == TAIL_LINES_MAX {
                    t.pop_front();
                }
                t.push_back(line.trim_end().to_string());
            }
        }
        // Past the line bound: keep draining so the child never blocks on a full pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
}

impl Drop for LocalRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_and_args() {
        assert_eq!(
            parse_listening_line("listening 127.0.0.1:40001\n"),
            Some("127.0.0.1:40001".parse().unwrap())
        );
        assert_eq!(
            parse_listening_line("listening 127.0.0.1:5 (2 workers)"),
            Some("127.0.0.1:5".parse().unwrap())
        );
        assert_eq!(parse_listening_line("INFO starting"), None);
        assert_eq!(parse_listening_line("listening nowhere"), None);
        assert_eq!(
            serve_args(None, 1, None),
            ["serve", "--listen", "127.0.0.1:0", "--workers", "1"]
        );
        assert_eq!(
            serve_args(Some("2,3"), 1, None),
            ["serve", "--listen", "127.0.0.1:0", "--cpus", "2,3"]
        );
    }
}
