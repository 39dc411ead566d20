//! The container context the Go agent (`agent/`) sends with its snapshots: cgroup v2 memory,
//! CPU throttling and pids, and the process's OS threads and RSS. It lands on the snapshot's
//! `goroutine_counts` row (`mem_current_bytes`, `mem_max_bytes`, `cpu_throttled_us`,
//! `pids_current`, `os_threads`, `rss_bytes`).
//!
//! Scraped, it comes in the `Leakhound-Context` response header of the agent's profile
//! endpoints; pushed, as fields of the snapshot (`actuate::push`). Either way it is hostile
//! input: [`parse_header`] takes at most [`MAX_HEADER_BYTES`] and [`MAX_PAIRS`] pairs, known
//! keys given once, values plain non-negative decimals within `i64` (or `max` for an unlimited
//! `memory_max`); anything else refuses the whole header, and the snapshot lands without it.

/// What the agent knew of its container at the snapshot; `None` where it did not know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerContext {
    pub mem_current_bytes: Option<i64>,
    /// `None` when unknown or unlimited (`memory.max` is `max`).
    pub mem_max_bytes: Option<i64>,
    pub cpu_throttled_us: Option<i64>,
    pub pids_current: Option<i64>,
    pub os_threads: Option<i64>,
    pub rss_bytes: Option<i64>,
}

/// The response header that carries it.
pub const HEADER: &str = "leakhound-context";

/// Largest header accepted (the agent's is under 300 bytes).
pub const MAX_HEADER_BYTES: usize = 1024;

/// Most `key=value` pairs accepted (the agent sends 10 at most).
pub const MAX_PAIRS: usize = 32;

impl ContainerContext {
    /// The values in the order of the table's columns.
    pub fn columns(&self) -> [Option<i64>; 6] {
        [
            self.mem_current_bytes,
            self.mem_max_bytes,
            self.cpu_throttled_us,
            self.pids_current,
            self.os_threads,
            self.rss_bytes,
        ]
    }

    pub fn is_empty(&self) -> bool {
        self.columns().iter().all(Option::is_none)
    }
}

/// A non-negative decimal within `i64`: digits only (no sign, no spaces, no exponent).
fn number(key: &str, v: &str) -> Result<i64, String> {
    if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{key}: not a non-negative decimal"));
    }
    v.parse::<i64>().map_err(|_| format!("{key}: out of range"))
}

/// Read a `Leakhound-Context` header:
/// `goroutines=N; memory_current=B; memory_max=B|max; cpu_usage_usec=N; cpu_nr_periods=N;
/// cpu_nr_throttled=N; cpu_throttled_usec=N; pids_current=N; threads=N; vm_rss=B`, each key
/// at most once, unknown keys skipped (a newer agent), numbers checked as said above.
pub fn parse_header(h: &str) -> Result<ContainerContext, String> {
    if h.len() > MAX_HEADER_BYTES {
        return Err(format!("{} bytes, more than {MAX_HEADER_BYTES}", h.len()));
    }
    let mut c = ContainerContext::default();
    let mut seen: Vec<&str> = Vec::new();
    for (i, part) in h.split(';').enumerate() {
        if i >= MAX_PAIRS {
            return Err(format!("more than {MAX_PAIRS} pairs"));
        }
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!("{part:?} is not key=value"));
        };
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err("a key is not [a-z_]+".into());
        }
        if seen.contains(&k) {
            return Err(format!("{k} given twice"));
        }
        seen.push(k);
        let slot = match k {
            "memory_current" => &mut c.mem_current_bytes,
            "memory_max" => {
                if v != "max" {
                    c.mem_max_bytes = Some(number(k, v)?);
                }
                continue;
            }
            "cpu_throttled_usec" => &mut c.cpu_throttled_us,
            "pids_current" => &mut c.pids_current,
            "threads" => &mut c.os_threads,
            "vm_rss" => &mut c.rss_bytes,
            // Known but not stored (the goroutine count is the profile's), or a newer agent's:
            // checked all the same.
            _ => {
                number(k, v)?;
                continue;
            }
        };
        *slot = Some(number(k, v)?);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_header_reads_back() {
        let c = parse_header(
            "goroutines=30; memory_current=73400320; memory_max=268435456; cpu_usage_usec=912345; \
             cpu_nr_periods=100; cpu_nr_throttled=7; cpu_throttled_usec=52000; pids_current=14; \
             threads=12; vm_rss=42008576",
        )
        .unwrap();
        assert_eq!(
            c,
            ContainerContext {
                mem_current_bytes: Some(73_400_320),
                mem_max_bytes: Some(268_435_456),
                cpu_throttled_us: Some(52_000),
                pids_current: Some(14),
                os_threads: Some(12),
                rss_bytes: Some(42_008_576),
            }
        );
        // Unlimited, and what the agent did not know, are null.
        let c = parse_header("goroutines=3; memory_max=max; threads=4").unwrap();
        assert_eq!(c.mem_max_bytes, None);
        assert_eq!(c.os_threads, Some(4));
        assert_eq!(c.mem_current_bytes, None);
        // A newer agent's key is skipped (but still checked).
        assert_eq!(
            parse_header("threads=4; io_pressure=9").unwrap().os_threads,
            Some(4)
        );
    }

    #[test]
    fn hostile_headers_are_refused_whole() {
        for bad in [
            "threads=-1",
            "threads=+1",
            "threads=1e3",
            "threads= 1",
            "threads=0x10",
            "threads=99999999999999999999",
            "threads=9223372036854775808",
            "threads=",
            "threads",
            "threads=1; threads=2",
            "memory_max=unlimited",
            "Threads=1",
            "thr eads=1",
            "io_pressure=-3",
            "{\"threads\":1}",
        ] {
            assert!(parse_header(bad).is_err(), "{bad:?} accepted");
        }
        let long = format!("threads=1;{}", " ".repeat(MAX_HEADER_BYTES));
        assert!(parse_header(&long).unwrap_err().contains("bytes"));
        let many = (0..40)
            .map(|i| format!("k{}=1", "x".repeat(i % 8)))
            .collect::<Vec<_>>();
        assert!(parse_header(&many.join(";")).is_err());
        assert_eq!(
            parse_header("threads=9223372036854775807")
                .unwrap()
                .os_threads,
            Some(i64::MAX)
        );
    }
}
