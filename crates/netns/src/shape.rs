//! Link shaping with `tc`, so that a lab on one machine behaves like a real network.

use crate::{Cmd, NetError};

/// A rate like `1gbit`, `100mbit`, `500kbit`.
pub fn validate_rate(rate: &str) -> Result<(), NetError> {
    let digits = rate.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &rate[digits.len()..];
    let ok = !digits.is_empty()
        && digits.parse::<u64>().is_ok_and(|n| n > 0)
        && matches!(
            unit,
            "bit" | "kbit" | "mbit" | "gbit" | "tbit" | "bps" | "kbps" | "mbps" | "gbps"
        );
    if ok {
        Ok(())
    } else {
        Err(NetError::Invalid(format!(
            "'{rate}' is not a rate like 1gbit or 100mbit"
        )))
    }
}

/// Bits per second of a validated rate.
pub fn rate_bits(rate: &str) -> Option<u64> {
    let digits = rate.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits.parse().ok()?;
    let mul = match &rate[digits.len()..] {
        "bit" => 1,
        "kbit" => 1_000,
        "mbit" => 1_000_000,
        "gbit" => 1_000_000_000,
        "tbit" => 1_000_000_000_000,
        "bps" => 8,
        "kbps" => 8_000,
        "mbps" => 8_000_000,
        "gbps" => 8_000_000_000,
        _ => return None,
    };
    Some(n * mul)
}

/// Shapes egress of `dev` (in the current namespace) to `rate`, with `delay_ms` of delay.
/// Without delay a token bucket (`tbf`) does it, and its queue is `pfifo_fast`, three
/// bands by priority: packets marked urgent (priority 6, as post-copy's urgent channel
/// is) leave before the others, bulk ones (priority 2) after them. A delay needs
/// `netem`, which some kernels lack (see [`netem_missing`]); its queue is ordered by
/// time, so marks do not reorder it.
pub fn plan_shape(dev: &str, rate: &str, delay_ms: f64) -> Result<Vec<Cmd>, NetError> {
    validate_rate(rate)?;
    if !(0.0..=10_000.0).contains(&delay_ms) {
        return Err(NetError::Invalid(format!(
            "delay {delay_ms} ms is out of range"
        )));
    }
    if delay_ms == 0.0 {
        // The bucket must hold a timer tick's worth of traffic (4 ms at HZ=250) and
        // at least one 64 KiB GSO packet.
        let bits = rate_bits(rate).unwrap_or(1_000_000_000);
        let burst = (bits / 8 / 250).max(128 << 10).to_string();
        return Ok(vec![
            Cmd::new(
                "tc",
                &[
                    "qdisc", "replace", "dev", dev, "root", "handle", "1:", "tbf", "rate", rate,
                    "burst", &burst, "latency", "20ms",
                ],
            ),
            Cmd::new(
                "tc",
                &[
                    "qdisc",
                    "replace",
                    "dev",
                    dev,
                    "parent",
                    "1:1",
                    "handle",
                    "10:",
                    "pfifo_fast",
                ],
            ),
        ]);
    }
    let delay = format!("{delay_ms}ms");
    // netem's queue must hold a bandwidth-delay product plus bursts; 10000 packets is
    // ample for 10 Gbit/s with a few milliseconds.
    Ok(vec![Cmd::new(
        "tc",
        &[
            "qdisc", "replace", "dev", dev, "root", "netem", "delay", &delay, "rate", rate,
            "limit", "10000",
        ],
    )])
}

/// Whether a failed `tc` said the qdisc is unknown to this kernel.
pub fn netem_missing(stderr: &str) -> bool {
    stderr.contains("qdisc kind is unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_checked_and_converted() {
        assert!(validate_rate("1gbit").is_ok());
        assert!(validate_rate("fast").is_err());
        assert!(validate_rate("0mbit").is_err());
        assert_eq!(rate_bits("1gbit"), Some(1_000_000_000));
        assert_eq!(rate_bits("100mbit"), Some(100_000_000));
    }

    #[test]
    fn shaping_uses_netem() {
        let c = plan_shape("veth0", "1gbit", 1.0).unwrap();
        assert_eq!(
            c[0].display(),
            "tc qdisc replace dev veth0 root netem delay 1ms rate 1gbit limit 10000"
        );
        assert!(plan_shape("veth0", "1gbit", -1.0).is_err());
        let tbf: Vec<String> = plan_shape("veth0", "1gbit", 0.0)
            .unwrap()
            .iter()
            .map(Cmd::display)
            .collect();
        assert_eq!(
            tbf,
            [
                "tc qdisc replace dev veth0 root handle 1: tbf rate 1gbit burst 500000 latency 20ms",
                "tc qdisc replace dev veth0 parent 1:1 handle 10: pfifo_fast"
            ]
        );
    }
}
