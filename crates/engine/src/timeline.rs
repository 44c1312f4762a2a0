//! Phase timings on one monotonic clock.

use std::time::{Duration, Instant};

use ferry_types::Phase;

/// Records named phases relative to the start of an operation.
#[derive(Debug, Clone)]
pub struct Timeline {
    start: Instant,
    phases: Vec<Phase>,
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}

pub use ferry_types::ms;

impl Timeline {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            phases: Vec::new(),
        }
    }

    /// Starts counting at `start` instead of now.
    pub fn starting_at(start: Instant) -> Self {
        Self {
            start,
            phases: Vec::new(),
        }
    }

    pub fn start(&self) -> Instant {
        self.start
    }

    /// Milliseconds since the start.
    pub fn elapsed_ms(&self) -> f64 {
        ms(self.start.elapsed())
    }

    /// Records a phase that ran from `from` until now, and returns its duration.
    pub fn record(&mut self, name: &str, from: Instant) -> Duration {
        let now = Instant::now();
        self.record_span(name, from, now);
        now.saturating_duration_since(from)
    }

    /// Records a phase between two instants.
    pub fn record_span(&mut self, name: &str, from: Instant, to: Instant) {
        self.phases.push(Phase {
            name: name.to_string(),
            start_ms: ms(from.saturating_duration_since(self.start)),
            ms: ms(to.saturating_duration_since(from)),
        });
    }

    /// Runs `f` as a phase.
    pub fn time<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> T {
        let from = Instant::now();
        let out = f();
        self.record(name, from);
        out
    }

    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    pub fn into_phases(self) -> Vec<Phase> {
        self.phases
    }

    /// The duration of the named phase, if recorded (summed when recorded more than once).
    pub fn phase_ms(&self, name: &str) -> Option<f64> {
        let v: Vec<f64> = self
            .phases
            .iter()
            .filter(|p| p.name == name)
            .map(|p| p.ms)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_relative_to_the_start_and_ordered() {
        let mut t = Timeline::new();
        let a = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        t.record("first", a);
        let v = t.time("second", || 42);
        assert_eq!(v, 42);
        let p = t.phases();
        assert_eq!(p.len(), 2);
        assert!(p[0].ms >= 5.0);
        assert!(p[1].start_ms >= p[0].start_ms + p[0].ms - 0.01);
        assert!(t.phase_ms("first").unwrap() >= 5.0);
        assert_eq!(t.phase_ms("missing"), None);
    }
}
