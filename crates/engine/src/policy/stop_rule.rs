//! The stopping rule of the pre-copy rounds: pure, so that it is tested without a
//! container.
//!
//! After each round the rule predicts the downtime of freezing now: a fixed cost (freeze,
//! runc at both ends, network moves), the final dump of the resident memory, and sending
//! what the last round found new over the measured link. It freezes when that prediction
//! meets the target, when what is left would take a few milliseconds to send, when the
//! transfer part no longer shrinks, or at `max_rounds`. A `threshold` (the thesis's rule:
//! a round sent less than this share of the first) replaces the two convergence tests.

use ferry_types::{MigrateOptions, PrecopyRound, StopReason};

/// What the rule is told to aim for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopRule {
    pub max_downtime_ms: f64,
    pub max_rounds: u32,
    /// Percent of the first round's bytes; `None` disables this test.
    pub threshold_pct: Option<f64>,
}

pub const DEFAULT_MAX_DOWNTIME_MS: u64 = 300;
pub const DEFAULT_MAX_ROUNDS: u32 = 8;

impl StopRule {
    /// The rule a migration's options ask for, with ferry's defaults.
    pub fn from_options(o: &MigrateOptions) -> Self {
        StopRule {
            max_downtime_ms: o.max_downtime_ms.unwrap_or(DEFAULT_MAX_DOWNTIME_MS) as f64,
            max_rounds: o.max_rounds.unwrap_or(DEFAULT_MAX_ROUNDS).max(1),
            threshold_pct: o.threshold_pct,
        }
    }
}

/// What a freeze costs beyond the transfer, as measured on the development machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Costs {
    pub fixed_ms: f64,
    /// Final dump, deduplication and rebuild at the destination, bytes per second.
    pub dump_bytes_per_s: f64,
}

impl Default for Costs {
    fn default() -> Self {
        Self {
            fixed_ms: 250.0,
            dump_bytes_per_s: 0.8e9,
        }
    }
}

/// A transfer this short no longer pays for another round.
const CONVERGED_MS: f64 = 25.0;
/// Rounds must cut the predicted transfer by a tenth to count as progress.
const PROGRESS: f64 = 0.9;
/// A round with fewer wire bytes says little about the link's rate.
const RATE_SAMPLE_MIN: u64 = 4 << 20;

#[derive(Debug, Clone, Default)]
pub struct Estimator {
    pub rounds: Vec<PrecopyRound>,
    link_bytes_per_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Continue,
    Stop(StopReason),
}

impl Estimator {
    /// The link's rate, from the best round that carried enough to tell.
    pub fn link_bytes_per_ms(&self) -> Option<f64> {
        self.link_bytes_per_ms
    }

    /// Milliseconds to send what the last round found new.
    fn transfer_ms(&self, r: &PrecopyRound) -> f64 {
        let ratio = if r.sent_bytes > 0 {
            r.wire_bytes as f64 / r.sent_bytes as f64
        } else {
            1.0
        };
        match self.link_bytes_per_ms {
            Some(rate) if rate > 0.0 => r.sent_bytes as f64 * ratio / rate,
            // No estimate yet: assume a 1 Gbit/s link.
            _ => r.sent_bytes as f64 * ratio / 125_000.0,
        }
    }

    /// Records a round, fills in its prediction, and says whether to go on.
    pub fn push(
        &mut self,
        mut round: PrecopyRound,
        resident: u64,
        rule: &StopRule,
        costs: &Costs,
    ) -> Verdict {
        if round.wire_bytes >= RATE_SAMPLE_MIN && round.ms > 0.0 {
            let rate = round.wire_bytes as f64 / round.ms;
            self.link_bytes_per_ms = Some(self.link_bytes_per_ms.map_or(rate, |r| r.max(rate)));
        }
        let transfer = self.transfer_ms(&round);
        round.predicted_downtime_ms =
            costs.fixed_ms + resident as f64 / costs.dump_bytes_per_s * 1000.0 + transfer;
        let predicted = round.predicted_downtime_ms;
        let k = round.round;
        let previous: Vec<f64> = self
            .rounds
            .iter()
            .rev()
            .take(2)
            .map(|r| self.transfer_ms(r))
            .collect();
        let first = self
            .rounds
            .first()
            .map_or(round.sent_bytes, |r| r.sent_bytes);
        self.rounds.push(round);

        if predicted <= rule.max_downtime_ms {
            return Verdict::Stop(StopReason::Target);
        }
        if k >= rule.max_rounds {
            return Verdict::Stop(StopReason::MaxRounds);
        }
        // A threshold the user chose replaces ferry's own convergence tests.
        if let Some(pct) = rule.threshold_pct {
            if k >= 2
                && (self.rounds[k as usize - 1].sent_bytes as f64) <= first as f64 * pct / 100.0
            {
                return Verdict::Stop(StopReason::Threshold);
            }
            return Verdict::Continue;
        }
        if k >= 2 && transfer <= CONVERGED_MS {
            return Verdict::Stop(StopReason::Converged);
        }
        if k >= 3 && previous.len() == 2 && previous.iter().all(|&p| transfer > p * PROGRESS) {
            return Verdict::Stop(StopReason::NoProgress);
        }
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    fn round(k: u32, sent: u64, ms: f64) -> PrecopyRound {
        PrecopyRound {
            round: k,
            scanned_bytes: 1024 * MB,
            changed_bytes: sent,
            sent_bytes: sent,
            wire_bytes: sent,
            ms,
            predicted_downtime_ms: 0.0,
        }
    }

    fn rule() -> StopRule {
        StopRule {
            max_downtime_ms: 300.0,
            max_rounds: 8,
            threshold_pct: None,
        }
    }

    #[test]
    fn a_small_container_stops_after_one_round_on_target() {
        let mut e = Estimator::default();
        let v = e.push(round(1, 3 * MB, 30.0), 3 * MB, &rule(), &Costs::default());
        assert_eq!(v, Verdict::Stop(StopReason::Target));
    }

    #[test]
    fn converging_rounds_stop_once_the_transfer_is_negligible() {
        let mut e = Estimator::default();
        let c = Costs::default();
        // 1 GiB over a 125 MB/s link, then 1% dirtied per second.
        assert_eq!(
            e.push(round(1, 1024 * MB, 8600.0), 1024 * MB, &rule(), &c),
            Verdict::Continue
        );
        assert!((e.link_bytes_per_ms().unwrap() - 124_856.0).abs() < 100.0);
        assert_eq!(
            e.push(round(2, 90 * MB, 760.0), 1024 * MB, &rule(), &c),
            Verdict::Continue
        );
        assert_eq!(
            e.push(round(3, 2 * MB, 80.0), 1024 * MB, &rule(), &c),
            Verdict::Stop(StopReason::Converged)
        );
        // 250 ms fixed + 1 GiB dump + 2 MiB transfer.
        let p = e.rounds[2].predicted_downtime_ms;
        assert!((1600.0..1640.0).contains(&p), "{p}");
    }

    #[test]
    fn a_memory_dirtied_faster_than_the_link_stops_at_max_rounds_or_no_progress() {
        let c = Costs::default();
        let r3 = StopRule {
            max_rounds: 3,
            ..rule()
        };
        let mut e = Estimator::default();
        for k in 1..=2 {
            assert_eq!(
                e.push(round(k, 32 * MB, 2700.0), 40 * MB, &r3, &c),
                Verdict::Continue
            );
        }
        assert_eq!(
            e.push(round(3, 32 * MB, 2700.0), 40 * MB, &r3, &c),
            Verdict::Stop(StopReason::MaxRounds)
        );
        let mut e = Estimator::default();
        let mut last = Verdict::Continue;
        for k in 1..=8 {
            last = e.push(round(k, 32 * MB, 2700.0), 40 * MB, &rule(), &c);
            if last != Verdict::Continue {
                break;
            }
        }
        assert_eq!(last, Verdict::Stop(StopReason::NoProgress));
        assert_eq!(e.rounds.len(), 3);
    }

    #[test]
    fn the_threshold_compares_with_the_first_round() {
        let c = Costs::default();
        let r = StopRule {
            threshold_pct: Some(10.0),
            ..rule()
        };
        let mut e = Estimator::default();
        e.push(round(1, 1000 * MB, 8000.0), 1024 * MB, &r, &c);
        assert_eq!(
            e.push(round(2, 150 * MB, 1200.0), 1024 * MB, &r, &c),
            Verdict::Continue
        );
        assert_eq!(
            e.push(round(3, 99 * MB, 800.0), 1024 * MB, &r, &c),
            Verdict::Stop(StopReason::Threshold)
        );
    }
}
