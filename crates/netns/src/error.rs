use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("network namespace '{0}' does not exist")]
    NoNamespace(String),
    #[error("invalid network setting: {0}")]
    Invalid(String),
    #[error("gratuitous ARP in {netns}: {source}")]
    Arp {
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot catch the packets the lock of {netns} drops: {source}")]
    Catch {
        netns: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot deliver held packets in {netns}: {source}")]
    Deliver {
        netns: String,
        #[source]
        source: std::io::Error,
    },
}
