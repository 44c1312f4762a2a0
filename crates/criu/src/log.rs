//! Reading CRIU logs: the lines that explain a failure, and causes ferry can name.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// A CRIU failure explained: the log's path, its error lines, and a known cause if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CriuFailure {
    pub log_path: PathBuf,
    pub error_lines: Vec<String>,
    pub cause: Option<KnownCause>,
}

/// Failures ferry recognises and can explain in a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KnownCause {
    NonRootProcess,
    FileLocks,
    PipeMaxSize,
    HostFileStdio,
    AddressMissing,
    CriuTooOldVdso,
    CriuTooOldSockopt,
    NameInUse,
    Overcommit,
    HelperOutOfMemory,
    Unseizable,
}

impl KnownCause {
    /// What went wrong and what to do, in one sentence.
    pub fn advice(self) -> &'static str {
        match self {
            KnownCause::NonRootProcess => "a process in the container does not run as root, and root on this host lacks CAP_SYS_RESOURCE, so CRIU cannot read its resource limits; run the container's processes as root",
            KnownCause::FileLocks => "a process in the container holds file locks; checkpoint again with --file-locks",
            KnownCause::PipeMaxSize => "lazy pages need a larger pipe size limit; run 'sysctl fs.pipe-max-size=4194304' (ferry does this itself unless told not to)",
            KnownCause::HostFileStdio => "the container's stdin/stdout/stderr point to a host file CRIU cannot see from inside the container; start it with pipes or /dev/null",
            KnownCause::AddressMissing => "the container's IP address is missing where it was restored; restore it into a network namespace that has the address",
            KnownCause::CriuTooOldVdso => "this CRIU is too old for this kernel (vDSO layout); install CRIU 4.2 or newer with scripts/install-deps.sh",
            KnownCause::CriuTooOldSockopt => "this CRIU cannot dump TCP sockets on kernels 6.16 and newer; install CRIU 4.2 or newer with scripts/install-deps.sh",
            KnownCause::NameInUse => "a container with this name already exists in this runtime root; pick another name or delete it first",
            KnownCause::Overcommit => "the restore could not map the container's address space: it reserves more than this host's overcommit policy grants (vm.overcommit_memory=0); allow it with 'sysctl vm.overcommit_memory=1' on this host, or free memory",
            KnownCause::Unseizable => "a process in the container did not stop for CRIU within its timeout because it sat in an uninterruptible wait (a vfork, or I/O that hangs); the container keeps running where it was, so try again, and if it recurs look at that process's /proc/PID/stack",
            KnownCause::HelperOutOfMemory => "CRIU ran out of memory at the bound it runs in, so ferry stopped the move; give it more with the agent's --helper-memory (for example 4G), or move the container with a strategy that needs less (cold)",
        }
    }
}

/// Lines every CRIU log on this kind of host has, which never explain a failure.
const HARMLESS: &[&str] = &["rlimit: Can't setup RLIMIT_NOFILE for self"];

/// Substrings that identify a known cause.
const CAUSES: &[(&str, KnownCause)] = &[
    // First: when the kernel killed CRIU, whatever else the log says is a consequence.
    ("CRIU ran out of memory", KnownCause::HelperOutOfMemory),
    ("Can't get rlimit", KnownCause::NonRootProcess),
    ("Some file locks are hold", KnownCause::FileLocks),
    ("page-pipe: tee", KnownCause::PipeMaxSize),
    ("Lazy pages transfer FAILED", KnownCause::PipeMaxSize),
    ("Can't lookup mount=", KnownCause::HostFileStdio),
    (
        "Cannot assign requested address",
        KnownCause::AddressMissing,
    ),
    ("Unexpected rt vDSO area bounds", KnownCause::CriuTooOldVdso),
    ("Can't get 1:16 opt", KnownCause::CriuTooOldSockopt),
    (
        "container with given ID already exists",
        KnownCause::NameInUse,
    ),
    ("Unable to map ANON_VMA", KnownCause::Overcommit),
    ("Unseizable non-zombie", KnownCause::Unseizable),
];

/// Most error lines a report carries.
const MAX_LINES: usize = 12;

/// Whether a log line is one of CRIU's error lines, as opposed to debug output that
/// happens to contain the word.
fn is_error_line(line: &str) -> bool {
    // A restored task's lines carry its number: `(00.05)      1: Error (criu/mem.c:964)`.
    line.contains(") Error (")
        || line.contains(": Error (")
        || line.starts_with("Error (")
        || line.contains("): Error")
}

/// Explains a CRIU log's content. `extra` is more text to search for causes (for example
/// what runc printed).
pub fn diagnose_text(log_path: &Path, log: &str, extra: &str) -> CriuFailure {
    let mut error_lines: Vec<String> = log
        .lines()
        .filter(|l| is_error_line(l) && !HARMLESS.iter().any(|h| l.contains(h)))
        .map(|l| l.trim().to_string())
        .collect();
    // The first error is the one that explains a failure most often; what follows is
    // CRIU unwinding. Keep it, and the last ones.
    if error_lines.len() > MAX_LINES {
        let last = error_lines.split_off(error_lines.len() - (MAX_LINES - 1));
        error_lines.truncate(1);
        error_lines.extend(last);
    }
    let cause = CAUSES
        .iter()
        .find(|(needle, _)| log.contains(needle) || extra.contains(needle))
        .map(|(_, c)| *c);
    CriuFailure {
        log_path: log_path.to_path_buf(),
        error_lines,
        cause,
    }
}

impl CriuFailure {
    /// What CRIU's first error line says, without its time and source position.
    pub fn first_error(&self) -> Option<&str> {
        let l = self.error_lines.first()?;
        Some(match l.find("): ") {
            Some(i) => &l[i + 3..],
            None => l,
        })
    }
}

/// Reads a CRIU log (the last 4 MiB at most) and explains it.
pub fn diagnose(log_path: &Path, extra: &str) -> CriuFailure {
    let text = read_tail(log_path, 4 << 20).unwrap_or_default();
    diagnose_text(log_path, &text, extra)
}

fn read_tail(path: &Path, max: u64) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len > max {
        f.seek(SeekFrom::Start(len - max))?;
    }
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

impl std::fmt::Display for CriuFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.cause, self.first_error()) {
            (Some(c), _) => write!(f, "{}", c.advice())?,
            (None, Some(first)) => write!(f, "CRIU failed: {first}")?,
            (None, None) => write!(f, "CRIU failed")?,
        }
        if !self.error_lines.is_empty() {
            write!(f, "; CRIU says:")?;
            for l in &self.error_lines {
                write!(f, "\n    {l}")?;
            }
        }
        write!(f, "\n  full log: {}", self.log_path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_error_is_kept_and_named_with_a_fix() {
        let mut log = String::from(
            "(00.052553)      1: Error (criu/mem.c:964): Unable to map ANON_VMA: Cannot allocate memory\n",
        );
        for k in 0..30 {
            log.push_str(&format!(
                "(00.3) Error (criu/cgroup.c:{k}): cgroupd: recv req error\n"
            ));
        }
        log.push_str("(00.4) Error (criu/cr-restore.c:9): Restoring FAILED.\n");
        let f = diagnose_text(Path::new("/x/restore.log"), &log, "");
        assert_eq!(f.error_lines.len(), MAX_LINES);
        assert!(f.error_lines[0].contains("ANON_VMA"));
        assert!(f.error_lines.last().unwrap().contains("Restoring FAILED"));
        assert_eq!(f.cause, Some(KnownCause::Overcommit));
        assert!(f.to_string().contains("vm.overcommit_memory=1"));
        let unknown = diagnose_text(
            Path::new("/x/dump.log"),
            "(00.1) Error (criu/sk-unix.c:7): unix: Can't dump half of stream unix connection.\n",
            "",
        );
        assert!(unknown
            .to_string()
            .starts_with("CRIU failed: unix: Can't dump half of stream unix connection."));
    }

    const LOG: &str = "\
(00.052385) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted
(00.100000) Handling VMA with the following smaps entry: libgpg-error.so
(00.120000) Error (criu/proc_parse.c:1234): Can't get rlimit 0: Operation not permitted
(00.130000) Error (criu/cr-dump.c:2100): Dumping FAILED.
";

    #[test]
    fn keeps_real_errors_and_drops_the_harmless_rlimit_line() {
        let f = diagnose_text(Path::new("/x/dump.log"), LOG, "");
        assert_eq!(f.error_lines.len(), 2);
        assert!(f.error_lines[0].contains("Can't get rlimit 0"));
        assert_eq!(f.cause, Some(KnownCause::NonRootProcess));
        let text = f.to_string();
        assert!(text.contains("does not run as root"));
        assert!(text.contains("/x/dump.log"));
    }

    #[test]
    fn words_in_debug_lines_are_not_errors() {
        let f = diagnose_text(Path::new("l"), "(0.1) Handling libgpg-error.so\n", "");
        assert!(f.error_lines.is_empty());
        assert_eq!(f.cause, None);
    }

    #[test]
    fn recognises_causes_in_runc_output_too() {
        let f = diagnose_text(Path::new("l"), "", "container with given ID already exists");
        assert_eq!(f.cause, Some(KnownCause::NameInUse));
    }

    #[test]
    fn a_helper_killed_at_its_bound_wins_over_what_the_log_says() {
        let f = diagnose_text(
            Path::new("l"),
            "(0.2) Error (criu/page-xfer.c:1): Can't get rlimit 0\n",
            "CRIU ran out of memory during the checkpoint: it reached its bound of 16.0 MiB",
        );
        assert_eq!(f.cause, Some(KnownCause::HelperOutOfMemory));
        assert!(f.to_string().contains("--helper-memory"));
    }

    #[test]
    fn a_process_criu_could_not_stop_is_named_with_what_to_do() {
        let log = "\
(10.002531) Error (criu/cr-dump.c:1655): Timeout reached. Try to interrupt: 0
(10.002823) Error (compel/src/lib/infect.c:262): Unseizable non-zombie 10857 found, state D, err -1/4
(10.009768) Error (criu/cr-dump.c:1975): Dumping FAILED.
";
        let f = diagnose_text(Path::new("l"), log, "");
        assert_eq!(f.cause, Some(KnownCause::Unseizable));
        assert!(f.to_string().contains("try again"));
    }

    #[test]
    fn long_logs_keep_the_last_lines() {
        let log: String = (0..50)
            .map(|i| format!("(0.{i}) Error (x.c:1): problem {i}\n"))
            .collect();
        let f = diagnose_text(Path::new("l"), &log, "");
        assert_eq!(f.error_lines.len(), MAX_LINES);
        assert!(f.error_lines.last().unwrap().contains("problem 49"));
    }
}
