//! One row of benchmark output: a method at a size, summarised over runs. All benches
//! write this format with `--json FILE`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::Summary;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub method: String,
    pub size_bytes: u64,
    pub runs: usize,
    pub downtime_ms: Summary,
    pub total_ms: Summary,
    pub bytes_sent: Summary,
    /// Further statistics a bench measures (for example `postcopy_ms`, `peak_rss_kib`,
    /// `client_max_latency_ms`).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Summary>,
}

/// Measurements of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub downtime_ms: f64,
    pub total_ms: f64,
    pub bytes_sent: f64,
    pub extra: BTreeMap<String, f64>,
}

impl Row {
    /// Summarises samples of one method at one size.
    pub fn from_samples(method: &str, size_bytes: u64, samples: &[Sample]) -> Option<Self> {
        let pick =
            |f: &dyn Fn(&Sample) -> f64| Summary::of(&samples.iter().map(f).collect::<Vec<_>>());
        let mut extra = BTreeMap::new();
        let keys: std::collections::BTreeSet<&String> =
            samples.iter().flat_map(|s| s.extra.keys()).collect();
        for k in keys {
            let v: Vec<f64> = samples
                .iter()
                .filter_map(|s| s.extra.get(k).copied())
                .collect();
            if let Some(s) = Summary::of(&v) {
                extra.insert(k.clone(), s);
            }
        }
        Some(Row {
            method: method.to_string(),
            size_bytes,
            runs: samples.len(),
            downtime_ms: pick(&|s| s.downtime_ms)?,
            total_ms: pick(&|s| s.total_ms)?,
            bytes_sent: pick(&|s| s.bytes_sent)?,
            extra,
        })
    }
}

/// Prints rows as a table: min/median for each statistic.
pub fn print_table(rows: &[Row], extra_columns: &[&str]) {
    let mut header = format!(
        "{:<16} {:>6} {:>4} {:>21} {:>21} {:>21}",
        "method", "size", "runs", "downtime ms min/med", "total ms min/med", "sent MB min/med"
    );
    for c in extra_columns {
        header.push_str(&format!(" {:>24}", format!("{c} min/med")));
    }
    println!("{header}");
    for r in rows {
        let mut line = format!(
            "{:<16} {:>6} {:>4} {:>10.1}/{:<10.1} {:>10.1}/{:<10.1} {:>10.1}/{:<10.1}",
            r.method,
            crate::sizes::label(r.size_bytes),
            r.runs,
            r.downtime_ms.min,
            r.downtime_ms.median,
            r.total_ms.min,
            r.total_ms.median,
            r.bytes_sent.min / 1e6,
            r.bytes_sent.median / 1e6,
        );
        for c in extra_columns {
            match r.extra.get(*c) {
                Some(s) => line.push_str(&format!(" {:>11.1}/{:<12.1}", s.min, s.median)),
                None => line.push_str(&format!(" {:>24}", "-")),
            }
        }
        println!("{line}");
    }
}

/// Writes rows as a JSON list.
pub fn write_json(path: &std::path::Path, rows: &[Row]) -> anyhow::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(rows)?)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_have_the_documented_json_shape() {
        let mut s = Sample {
            downtime_ms: 10.0,
            total_ms: 20.0,
            bytes_sent: 30.0,
            ..Default::default()
        };
        s.extra.insert("postcopy_ms".into(), 5.0);
        let row = Row::from_samples("ferry-cold", 1_000_000_000, &[s.clone(), s]).unwrap();
        let v: serde_json::Value = serde_json::to_value(&row).unwrap();
        assert_eq!(v["method"], "ferry-cold");
        assert_eq!(v["size_bytes"], 1_000_000_000u64);
        assert_eq!(v["runs"], 2);
        for k in ["downtime_ms", "total_ms", "bytes_sent", "postcopy_ms"] {
            for s in ["min", "median", "max"] {
                assert!(v[k][s].is_number(), "{k}.{s}");
            }
        }
    }
}
