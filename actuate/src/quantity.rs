//! Memory quantities as Kubernetes writes them (`128Mi`, `1G`, `1.5Gi`, `500e6`, `1024`), to
//! bytes and back. Written by hand: `k8s-openapi`'s `Quantity` is only a string, and the crates
//! that parse it are small and unmaintained; the grammar (resource.Quantity) is a few lines.

/// Bytes of a memory quantity; fractions round up. Refuses negative, non-finite or unknown
/// suffixes (`m`, milli, included: a thousandth of a byte is no memory size).
pub fn memory_bytes(q: &str) -> Result<u64, String> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let (num, suffix) = match suffix.strip_prefix(['e', 'E']) {
        // `5e6`: the exponent belongs to the number.
        Some(exp)
            if !exp.is_empty()
                && exp
                    .trim_start_matches(['+', '-'])
                    .bytes()
                    .all(|b| b.is_ascii_digit()) =>
        {
            (q, "")
        }
        _ => (num, suffix),
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{q:?} is not a Kubernetes quantity"))?;
    let mult: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return Err(format!("{q:?}: unknown or unsupported suffix {suffix:?}")),
    };
    let bytes = value * mult;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{q:?} is out of range"));
    }
    Ok(bytes.ceil() as u64)
}

/// `bytes` as a quantity: whole Gi or Mi when it is one, else plain bytes.
pub fn format_memory(bytes: u64) -> String {
    const MI: u64 = 1 << 20;
    const GI: u64 = 1 << 30;
    if bytes > 0 && bytes.is_multiple_of(GI) {
        format!("{}Gi", bytes / GI)
    } else if bytes.is_multiple_of(MI) {
        format!("{}Mi", bytes / MI)
    } else {
        bytes.to_string()
    }
}

/// `bytes` rounded up to a whole Mi.
pub fn round_up_mi(bytes: u64) -> u64 {
    const MI: u64 = 1 << 20;
    bytes.div_ceil(MI) * MI
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_as_kubernetes_writes_them() {
        assert_eq!(memory_bytes("128Mi"), Ok(128 << 20));
        assert_eq!(memory_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(memory_bytes("1.5Gi"), Ok(3 << 29));
        assert_eq!(memory_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(memory_bytes("500e6"), Ok(500_000_000));
        assert_eq!(memory_bytes("1024"), Ok(1024));
        assert_eq!(memory_bytes("64k"), Ok(64_000));
        for bad in ["", "lots", "-1Gi", "1Xi", "100m", "1e400"] {
            assert!(memory_bytes(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format_memory(192 << 20), "192Mi");
        assert_eq!(format_memory(1000), "1000");
        assert_eq!(format_memory(8 << 30), "8Gi");
        assert_eq!(round_up_mi(1), 1 << 20);
    }
}
