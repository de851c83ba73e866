//! Server CPU accounting from /proc: process CPU time, and which local process listens on a
//! loopback port.

use std::path::Path;

/// Bound on /proc entries examined when looking for a listener's process.
const PROC_SCAN_ENTRIES_MAX: usize = 1_000_000;

/// Clock ticks per second for /proc times.
pub fn clock_ticks_per_s() -> Result<u64, String> {
    // SAFETY: sysconf only reads a configuration value; _SC_CLK_TCK is a valid name.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return Err("sysconf(_SC_CLK_TCK) failed".into());
    }
    Ok(ticks as u64)
}

/// utime + stime (clock ticks) from the text of /proc/PID/stat, all threads included.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces or ')'; fields after
    // the last ')' start at field 3 (state). utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU seconds the process has used so far.
pub fn process_cpu_s(pid: u32) -> Result<f64, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let ticks = parse_stat_cpu_ticks(&text).ok_or_else(|| format!("cannot parse {path}"))?;
    Ok(ticks as f64 / clock_ticks_per_s()? as f64)
}

/// One parsed line of /proc/net/tcp or /proc/net/tcp6.
#[derive(Debug, PartialEq, Eq)]
pub struct TcpSocket {
    pub local_port: u16,
    /// Local address bytes in the kernel's hex text (network-order words, host-endian groups).
    pub local_addr_hex: String,
    pub listening: bool,
    pub inode: u64,
}

/// TCP state code of LISTEN in /proc/net/tcp.
const TCP_LISTEN: &str = "0A";

/// Parses one data line of /proc/net/tcp(6); `None` for the header or a malformed line.
pub fn parse_proc_net_tcp_line(line: &str) -> Option<TcpSocket> {
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    if fields.len() < 10 || !fields[0].ends_with(':') {
        return None;
    }
    let (addr, port) = fields[1].split_once(':')?;
    Some(TcpSocket {
        local_port: u16::from_str_radix(port, 16).ok()?,
        local_addr_hex: addr.to_string(),
        listening: fields[3] == TCP_LISTEN,
        inode: fields[9].parse().ok()?,
    })
}

/// True for loopback or any-address listeners, which accept connections to 127.0.0.1/::1.
pub fn accepts_loopback(addr_hex: &str) -> bool {
    match addr_hex.len() {
        // IPv4 in host (little-endian) order: 127.x.x.x ends with "7F"; 0.0.0.0 is zeros.
        8 => addr_hex.ends_with("7F") || addr_hex == "00000000",
        // IPv6: ::, ::1, or v4-mapped 127.x.
        32 => {
            addr_hex.chars().all(|c| c == '0')
                || addr_hex == "00000000000000000000000001000000"
                || (addr_hex.starts_with("0000000000000000FFFF0000") && addr_hex.ends_with("7F"))
        }
        _ => false,
    }
}

/// Inodes of LISTEN sockets on `port` that accept loopback connections.
fn listening_inodes(port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        inodes.extend(
            text.lines()
                .filter_map(parse_proc_net_tcp_line)
                .filter(|s| {
                    s.listening && s.local_port == port && accepts_loopback(&s.local_addr_hex)
                })
                .map(|s| s.inode),
        );
    }
    inodes
}

/// The PID of a local process listening on loopback `port`, if this user can see it.
pub fn find_listener_pid(port: u16) -> Option<u32> {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut examined = 0usize;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            examined += 1;
            if examined > PROC_SCAN_ENTRIES_MAX {
                return None;
            }
            if link_matches(&fd.path(), &wanted) {
                return Some(pid);
            }
        }
    }
    None
}

fn link_matches(path: &Path, wanted: &[String]) -> bool {
    std::fs::read_link(path)
        .ok()
        .and_then(|t| t.to_str().map(|s| wanted.iter().any(|w| w == s)))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_spaces_in_comm() {
        let stat =
            "1234 (ring relay) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(325));
        let tricky = "7 (a) b) R 1 1 1 0 -1 0 0 0 0 0 10 5 0 0";
        assert_eq!(parse_stat_cpu_ticks(tricky), Some(15));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn proc_net_tcp_lines() {
        let header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";
        assert_eq!(parse_proc_net_tcp_line(header), None);
        let listen = "   0: 0100007F:107E 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 48213 1 0000000000000000 100 0 0 10 0";
        let s = parse_proc_net_tcp_line(listen).unwrap();
        assert_eq!(
            s,
            TcpSocket {
                local_port: 4222,
                local_addr_hex: "0100007F".into(),
                listening: true,
                inode: 48213
            }
        );
        assert!(accepts_loopback(&s.local_addr_hex));
        let established = "   1: 0100007F:D2A4 0100007F:107E 01 00000000:00000000 00:00000000 00000000  1000        0 48999 1 0000000000000000 20 4 30 10 -1";
        let e = parse_proc_net_tcp_line(established).unwrap();
        assert!(!e.listening);
        assert_eq!(e.local_port, 0xD2A4);
        let v6 = "   0: 00000000000000000000000000000000:1CE8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0";
        let s6 = parse_proc_net_tcp_line(v6).unwrap();
        assert_eq!((s6.local_port, s6.inode, s6.listening), (7400, 777, true));
        assert!(accepts_loopback(&s6.local_addr_hex));
        assert!(!accepts_loopback("0A00000A")); // 10.0.0.10
        assert!(accepts_loopback("00000000"));
    }

    #[test]
    fn own_process_cpu_is_readable() {
        let cpu_s = process_cpu_s(std::process::id()).unwrap();
        assert!(cpu_s >= 0.0);
    }
}
