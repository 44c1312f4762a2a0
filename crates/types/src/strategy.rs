//! What a migration is asked to do: its strategy and options, as the CLI sends them.

use serde::{Deserialize, Serialize};

/// A strategy a migration runs. Names are part of the CLI and report interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every page moves before the container restarts.
    Cold,
    /// Pages move in rounds while the container runs, then what changed.
    Precopy,
    /// The container restarts at once; its pages follow.
    Postcopy,
    /// Pre-copy rounds, then post-copy for the rest.
    Hybrid,
}

impl Strategy {
    pub const ALL: [Strategy; 4] = [
        Strategy::Cold,
        Strategy::Precopy,
        Strategy::Postcopy,
        Strategy::Hybrid,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Cold => "cold",
            Strategy::Precopy => "precopy",
            Strategy::Postcopy => "postcopy",
            Strategy::Hybrid => "hybrid",
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the user asked for: a strategy, or `auto` (ferry picks one once it knows the
/// container's size). Written as the strategy's name, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StrategyChoice {
    Auto,
    Fixed(Strategy),
}

impl StrategyChoice {
    pub const ALL: [StrategyChoice; 5] = [
        StrategyChoice::Fixed(Strategy::Cold),
        StrategyChoice::Fixed(Strategy::Precopy),
        StrategyChoice::Fixed(Strategy::Postcopy),
        StrategyChoice::Fixed(Strategy::Hybrid),
        StrategyChoice::Auto,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StrategyChoice::Auto => "auto",
            StrategyChoice::Fixed(s) => s.name(),
        }
    }
}

impl From<Strategy> for StrategyChoice {
    fn from(s: Strategy) -> Self {
        StrategyChoice::Fixed(s)
    }
}

impl From<StrategyChoice> for String {
    fn from(s: StrategyChoice) -> Self {
        s.name().to_string()
    }
}

impl TryFrom<String> for StrategyChoice {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::fmt::Display for StrategyChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for StrategyChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StrategyChoice::ALL
            .iter()
            .copied()
            .find(|st| st.name() == s)
            .ok_or_else(|| {
                format!("unknown strategy '{s}'; use one of cold, precopy, postcopy, hybrid, auto")
            })
    }
}

/// Whether pre-copy's page blocks are compressed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    None,
    Zstd,
}

/// A `--compress` value ferry does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownCompression(pub String);

impl std::fmt::Display for UnknownCompression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "unknown compression '{}'; use --compress zstd or --compress none",
            self.0
        )
    }
}

impl std::error::Error for UnknownCompression {}

impl Compress {
    /// From `--compress` (zstd unless told otherwise).
    pub fn parse(s: Option<&str>) -> Result<Self, UnknownCompression> {
        match s.unwrap_or("zstd") {
            "zstd" => Ok(Compress::Zstd),
            "none" => Ok(Compress::None),
            other => Err(UnknownCompression(other.to_string())),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compress::Zstd => "zstd",
            Compress::None => "none",
        }
    }
}

/// A fault a test can ask the agents to inject. Honoured only by agents started with
/// `--allow-fault-injection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The destination's restore fails.
    RestoreFails,
    /// The destination agent exits while the checkpoint images are arriving.
    DestDiesDuringTransfer,
    /// The destination agent exits right after restoring, before confirming.
    DestDiesAfterRestore,
    /// The destination agent exits right after committing, before the source hears it.
    DestDiesAfterCommit,
    /// Post-copy: the destination agent exits while pages are still owed.
    DestDiesDuringPostcopy,
    /// Post-copy: the source agent exits right after the commit, every page still owed.
    SourceDiesDuringPostcopy,
    /// The transfer connection is cut while the images are in flight.
    CutTransfer,
    /// Post-copy: the page channel is cut after the container started at the destination.
    CutPostcopy,
}

/// Options of a migration, as the CLI sends them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MigrateOptions {
    pub strategy: StrategyChoice,
    #[serde(default = "yes")]
    pub tcp_established: bool,
    #[serde(default)]
    pub file_locks: bool,
    #[serde(default)]
    pub allow_postcopy: bool,
    #[serde(default)]
    pub max_downtime_ms: Option<u64>,
    #[serde(default)]
    pub max_rounds: Option<u32>,
    #[serde(default)]
    pub threshold_pct: Option<f64>,
    #[serde(default)]
    pub compress: Option<String>,
    /// Prepare everything (and run pre-copy rounds), then wait for `Proceed` on the
    /// control connection before freezing (groups schedule freezes this way).
    #[serde(default)]
    pub hold_freeze: bool,
    /// Once the images are at the destination, wait for `Proceed` before the destination
    /// restores (groups restore in order this way); the container stays frozen meanwhile.
    #[serde(default)]
    pub hold_restore: bool,
    /// The address the container takes at the destination (`ADDR[/PREFIX]`); its own
    /// sockets are rewritten to it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_ip: Option<String>,
    /// The group this migration is part of (`ferry migrate --group`).
    #[serde(default)]
    pub group: Option<String>,
    /// The containers of this one's pod that move with it (itself included).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod: Vec<String>,
    #[serde(default)]
    pub inject_fault: Option<Fault>,
}

fn yes() -> bool {
    true
}

impl Default for MigrateOptions {
    fn default() -> Self {
        Self {
            strategy: StrategyChoice::Fixed(Strategy::Cold),
            tcp_established: true,
            file_locks: false,
            allow_postcopy: false,
            max_downtime_ms: None,
            max_rounds: None,
            threshold_pct: None,
            compress: None,
            hold_freeze: false,
            hold_restore: false,
            new_ip: None,
            group: None,
            pod: Vec::new(),
            inject_fault: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_names_parse() {
        for s in StrategyChoice::ALL {
            assert_eq!(s.name().parse::<StrategyChoice>().unwrap(), s);
        }
        assert!("warp"
            .parse::<StrategyChoice>()
            .unwrap_err()
            .contains("unknown strategy"));
    }

    #[test]
    fn choices_are_written_as_names() {
        let auto = serde_json::to_string(&StrategyChoice::Auto).unwrap();
        assert_eq!(auto, "\"auto\"");
        let cold: StrategyChoice = serde_json::from_str("\"cold\"").unwrap();
        assert_eq!(cold, StrategyChoice::Fixed(Strategy::Cold));
        assert!(serde_json::from_str::<StrategyChoice>("\"warp\"").is_err());
        assert!(serde_json::from_str::<Strategy>("\"auto\"").is_err());
    }
}
