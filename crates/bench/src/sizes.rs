//! Sizes on the command line: `0,100M,1G,4G` (decimal units).

/// Parses one size: a number with an optional `K`, `M`, `G` suffix (powers of 1000).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mul) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 1_000),
        Some('M' | 'm') => (&t[..t.len() - 1], 1_000_000),
        Some('G' | 'g') => (&t[..t.len() - 1], 1_000_000_000),
        _ => (t, 1),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size like 0, 100M or 1G"))?;
    if !(0.0..=1e15).contains(&n) {
        return Err(format!("'{s}' is out of range"));
    }
    Ok((n * mul as f64) as u64)
}

/// Parses a comma-separated list of sizes.
pub fn parse_sizes(s: &str) -> Result<Vec<u64>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(parse_size)
        .collect()
}

/// `100M`-style label for a size.
pub fn label(bytes: u64) -> String {
    match bytes {
        0 => "0".into(),
        b if b % 1_000_000_000 == 0 => format!("{}G", b / 1_000_000_000),
        b if b % 1_000_000 == 0 => format!("{}M", b / 1_000_000),
        b => format!("{b}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(
            parse_sizes("0,100M,1G,4G").unwrap(),
            vec![0, 100_000_000, 1_000_000_000, 4_000_000_000]
        );
        assert!(parse_size("lots").is_err());
        assert_eq!(label(100_000_000), "100M");
        assert_eq!(label(0), "0");
    }
}
