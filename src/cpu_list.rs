//! sans-IO: CPU lists as the kernel and `taskset` write them, `0,2-3`: comma-separated CPU
//! indexes or inclusive ranges. One parser for `serve --cpus` and for the lists the relay
//! reads from sysfs (online CPUs, a cgroup's cpuset).

#![forbid(unsafe_code)]

/// Highest CPU index accepted (bounds the list a range can expand to; Linux's default
/// NR_CPUS maximum is 8,192, and hosts past 4,096 CPUs are not this relay's concern).
pub const CPU_INDEX_MAX: usize = 4095;

/// Parses a list in order; an empty entry, a backwards range, a repeat or an index above
/// [`CPU_INDEX_MAX`] is an error that names it.
pub fn parse(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for item in text.trim().split(',').map(str::trim) {
        if item.is_empty() {
            return Err(format!("empty entry in CPU list '{text}'"));
        }
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (parse_index(a)?, parse_index(b)?),
            None => {
                let cpu = parse_index(item)?;
                (cpu, cpu)
            }
        };
        if first > last {
            return Err(format!("CPU range '{item}' runs backwards"));
        }
        for cpu in first..=last {
            if cpus.contains(&cpu) {
                return Err(format!("CPU {cpu} is listed twice"));
            }
            cpus.push(cpu);
        }
    }
    Ok(cpus)
}

fn parse_index(text: &str) -> Result<usize, String> {
    let cpu: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("'{}' is not a CPU index", text.trim()))?;
    if cpu > CPU_INDEX_MAX {
        return Err(format!("CPU index {cpu} is above {CPU_INDEX_MAX}"));
    }
    Ok(cpu)
}

/// The compact form of `cpus` (sorted, runs as ranges): `[0, 1, 2, 5]` is `0-2,5`.
pub fn format(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            sorted[i].to_string()
        } else {
            format!("{}-{}", sorted[i], sorted[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_in_order_and_format_compactly() {
        assert_eq!(parse("0,2-3").unwrap(), vec![0, 2, 3]);
        assert_eq!(parse(" 5 , 1 \n").unwrap(), vec![5, 1]);
        assert_eq!(parse("0-1\n").unwrap(), vec![0, 1]);
        assert_eq!(format(&[5, 0, 1, 2, 7, 8]), "0-2,5,7-8");
        assert_eq!(format(&[]), "");
    }

    #[test]
    fn bad_lists_are_errors_naming_the_entry() {
        for (text, says) in [
            ("", "empty entry"),
            ("1,,2", "empty entry"),
            ("3-1", "backwards"),
            ("1,1", "listed twice"),
            ("x", "'x' is not a CPU index"),
            ("4096", "above 4095"),
            ("0-99999", "above 4095"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }
}
