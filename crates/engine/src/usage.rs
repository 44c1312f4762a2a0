//! CPU time and peak memory of ferry and of the tools it runs (runc, CRIU).

pub use ferry_types::Usage;

#[derive(Debug, Clone, Copy)]
struct Sample {
    self_us: i64,
    children_us: i64,
}

fn rusage(who: i32) -> libc::rusage {
    // SAFETY: getrusage fills the struct it is given; zero is a valid initial value.
    unsafe {
        let mut r: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut r);
        r
    }
}

fn cpu_us(r: &libc::rusage) -> i64 {
    (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1_000_000 + r.ru_utime.tv_usec + r.ru_stime.tv_usec
}

/// Measures resource use from its creation until [`UsageMeter::finish`].
#[derive(Debug, Clone, Copy)]
pub struct UsageMeter {
    start: Sample,
}

impl Default for UsageMeter {
    fn default() -> Self {
        Self::start()
    }
}

impl UsageMeter {
    pub fn start() -> Self {
        Self {
            start: Sample {
                self_us: cpu_us(&rusage(libc::RUSAGE_SELF)),
                children_us: cpu_us(&rusage(libc::RUSAGE_CHILDREN)),
            },
        }
    }

    pub fn finish(&self) -> Usage {
        let s = rusage(libc::RUSAGE_SELF);
        let c = rusage(libc::RUSAGE_CHILDREN);
        Usage {
            cpu_ms_self: (cpu_us(&s) - self.start.self_us) as f64 / 1e3,
            cpu_ms_children: (cpu_us(&c) - self.start.children_us) as f64 / 1e3,
            peak_rss_kib_self: s.ru_maxrss.max(0) as u64,
            peak_rss_kib_children: c.ru_maxrss.max(0) as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_children_cpu() {
        let m = UsageMeter::start();
        let _ = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
            .status();
        let u = m.finish();
        assert!(u.cpu_ms_children > 0.0, "{u:?}");
        assert!(u.peak_rss_kib_self > 0);
    }
}
