//! Groups: the containers of a deployment, described in a TOML file, with their
//! dependencies; validation, levels and the order in which a schedule moves them. Pure:
//! the CLI runs the plan (see `docs/groups.md`).
//!
//! ```toml
//! name = "shop"
//!
//! [[container]]
//! name = "db"
//!
//! [[container]]
//! name = "worker"
//! after = ["db"]          # worker depends on db
//! strategy = "precopy"    # optional, per container
//! ```
//!
//! Containers freeze dependents first and restore dependencies first (`restore_order`,
//! with `restore_level` to set a container's place by hand).

use std::collections::{BTreeMap, BTreeSet};

use ferry_types::StrategyChoice;
use serde::{Deserialize, Serialize};

/// How the members' migrations are laid out in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// One container after another, dependents first.
    Sequential,
    /// All at once.
    Parallel,
    /// Dependents first, each starting as soon as the previous one restores at the
    /// destination: one container's restore overlaps the next one's dump and transfer.
    Pipeline,
}

impl Schedule {
    pub const ALL: [Schedule; 3] = [Schedule::Sequential, Schedule::Parallel, Schedule::Pipeline];

    pub fn name(self) -> &'static str {
        match self {
            Schedule::Sequential => "sequential",
            Schedule::Parallel => "parallel",
            Schedule::Pipeline => "pipeline",
        }
    }
}

impl std::str::FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Schedule::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| format!("unknown schedule '{s}'; use sequential, parallel or pipeline"))
    }
}

/// In which order the destination restores a group's containers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreOrder {
    /// By restore level, lowest first (a container's dependency level unless the file
    /// sets `restore_level`): a container restores once every container of a lower
    /// level runs at the destination, so what it calls is there when it resumes.
    #[default]
    DependenciesFirst,
    /// Each container as soon as its images arrive: the shortest downtimes, for
    /// deployments whose containers wait for each other by themselves.
    Unordered,
}

impl RestoreOrder {
    pub fn name(self) -> &'static str {
        match self {
            RestoreOrder::DependenciesFirst => "dependencies-first",
            RestoreOrder::Unordered => "unordered",
        }
    }
}

/// Most containers one group may hold.
pub const MAX_MEMBERS: usize = 256;
/// Largest group file read.
pub const MAX_FILE: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFile {
    name: String,
    #[serde(default)]
    restore_order: RestoreOrder,
    #[serde(rename = "container", default)]
    containers: Vec<MemberFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberFile {
    name: String,
    #[serde(default)]
    after: Vec<String>,
    strategy: Option<StrategyChoice>,
    level: Option<u32>,
    restore_level: Option<u32>,
}

/// A container of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub name: String,
    pub after: Vec<String>,
    pub strategy: Option<StrategyChoice>,
    /// 0 for containers that depend on nothing, else one more than their deepest
    /// dependency (or as the file sets it).
    pub level: u32,
    /// Its place in the restore order: lower levels run at the destination before this
    /// one restores (its `level` unless the file sets `restore_level`).
    pub restore_level: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub name: String,
    pub restore_order: RestoreOrder,
    /// In the file's order.
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("the group file is not valid TOML for a group: {0}")]
    Syntax(String),
    #[error("the group file is larger than {MAX_FILE} bytes")]
    TooLarge,
    #[error("the group '{0}' names no container; add [[container]] tables")]
    Empty(String),
    #[error("the group has more than {MAX_MEMBERS} containers")]
    TooMany,
    #[error("'{0}' is not a valid container name (letters, digits, '-', '_', '.', at most 40)")]
    BadName(String),
    #[error("container '{0}' appears twice in the group")]
    Duplicate(String),
    #[error("container '{member}' comes after '{dep}', which the group does not name")]
    Unknown { member: String, dep: String },
    #[error("container '{0}' cannot come after itself")]
    SelfDependency(String),
    #[error("the dependencies form a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("container '{member}' has level {level} but comes after '{dep}' at level {dep_level}; a container's level must be above its dependencies'")]
    LevelOrder {
        member: String,
        level: u32,
        dep: String,
        dep_level: u32,
    },
    #[error("container '{member}' has restore level {level} but comes after '{dep}' at restore level {dep_level}; a container restores after its dependencies, so its restore level must be above theirs")]
    RestoreLevelOrder {
        member: String,
        level: u32,
        dep: String,
        dep_level: u32,
    },
    #[error("container '{0}' sets a restore_level, but the group's restore_order is \"unordered\"; remove one of the two")]
    RestoreLevelUnordered(String),
    #[error("'{first}' and '{second}' each restore as one unit (a pod) that must wait for the other; give the members of each pod restore levels that put one pod wholly before the other")]
    UnitRestoreCycle { first: String, second: String },
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !s.starts_with('.')
}

impl Group {
    /// Parses and checks a group file.
    pub fn parse(text: &str) -> Result<Self, GroupError> {
        if text.len() > MAX_FILE {
            return Err(GroupError::TooLarge);
        }
        let f: GroupFile =
            toml::from_str(text).map_err(|e| GroupError::Syntax(e.message().to_string()))?;
        if !valid_name(&f.name) {
            return Err(GroupError::BadName(f.name));
        }
        if f.containers.is_empty() {
            return Err(GroupError::Empty(f.name));
        }
        if f.containers.len() > MAX_MEMBERS {
            return Err(GroupError::TooMany);
        }
        let mut seen = BTreeSet::new();
        for m in &f.containers {
            if !valid_name(&m.name) {
                return Err(GroupError::BadName(m.name.clone()));
            }
            if !seen.insert(m.name.as_str()) {
                return Err(GroupError::Duplicate(m.name.clone()));
            }
        }
        for m in &f.containers {
            for d in &m.after {
                if d == &m.name {
                    return Err(GroupError::SelfDependency(m.name.clone()));
                }
                if !seen.contains(d.as_str()) {
                    return Err(GroupError::Unknown {
                        member: m.name.clone(),
                        dep: d.clone(),
                    });
                }
            }
        }
        let deps: BTreeMap<&str, &[String]> = f
            .containers
            .iter()
            .map(|m| (m.name.as_str(), m.after.as_slice()))
            .collect();
        if let Some(cycle) = find_cycle(&f.containers, &deps) {
            return Err(GroupError::Cycle(cycle));
        }
        let mut levels: BTreeMap<String, u32> = BTreeMap::new();
        for m in &f.containers {
            depth(&m.name, &deps, &mut levels);
        }
        let explicit: BTreeMap<&str, u32> = f
            .containers
            .iter()
            .filter_map(|m| m.level.map(|l| (m.name.as_str(), l)))
            .collect();
        let level_of = |n: &str| explicit.get(n).copied().unwrap_or(levels[n]);
        for m in &f.containers {
            for d in &m.after {
                if level_of(&m.name) <= level_of(d) {
                    return Err(GroupError::LevelOrder {
                        member: m.name.clone(),
                        level: level_of(&m.name),
                        dep: d.clone(),
                        dep_level: level_of(d),
                    });
                }
            }
        }
        let restore_of = |n: &str| {
            let own = f.containers.iter().find(|m| m.name == n);
            own.and_then(|m| m.restore_level)
                .unwrap_or_else(|| level_of(n))
        };
        check_restore_levels(&f, &restore_of)?;
        Ok(Group {
            name: f.name.clone(),
            restore_order: f.restore_order,
            members: f
                .containers
                .iter()
                .map(|m| Member {
                    name: m.name.clone(),
                    after: m.after.clone(),
                    strategy: m.strategy,
                    level: level_of(&m.name),
                    restore_level: restore_of(&m.name),
                })
                .collect(),
        })
    }

    /// Dependents first: the order in which containers are frozen (deepest level first;
    /// the file's order within a level).
    pub fn freeze_order(&self) -> Vec<&Member> {
        let mut v: Vec<&Member> = self.members.iter().collect();
        v.sort_by_key(|m| std::cmp::Reverse(m.level));
        v
    }

    /// Lowest restore level first: the order in which containers are restored (with
    /// `restore_order = "unordered"`, the order they happen to arrive in instead).
    pub fn restore_sequence(&self) -> Vec<&Member> {
        let mut v: Vec<&Member> = self.members.iter().collect();
        v.sort_by_key(|m| m.restore_level);
        v
    }

    /// For each unit of containers that restore together (a pod, or one container), the
    /// units that must run at the destination before it restores. A unit restores at
    /// the highest restore level of its members, and above every unit holding one of its
    /// members' dependencies; it waits for the units of lower levels. Empty lists
    /// throughout when the group's order is `unordered`. Refuses units that would wait
    /// for each other.
    pub fn restore_waits(&self, units: &[Vec<String>]) -> Result<Vec<Vec<usize>>, GroupError> {
        if self.restore_order == RestoreOrder::Unordered {
            return Ok(vec![Vec::new(); units.len()]);
        }
        let unit_of = |n: &str| units.iter().position(|u| u.iter().any(|x| x == n));
        let mut level: Vec<u32> = units
            .iter()
            .map(|u| {
                let own = u.iter().filter_map(|n| self.member(n));
                own.map(|m| m.restore_level).max().unwrap_or(0)
            })
            .collect();
        // Raise each unit above the units its members depend on, until nothing moves;
        // still moving after as many passes as units means a cycle between units.
        for pass in 0..=units.len() {
            let mut moved = None;
            for (i, u) in units.iter().enumerate() {
                let deps = u
                    .iter()
                    .filter_map(|n| self.member(n))
                    .flat_map(|m| &m.after);
                for j in deps.filter_map(|d| unit_of(d)).filter(|&j| j != i) {
                    if level[i] <= level[j] {
                        level[i] = level[j] + 1;
                        moved = Some((i, j));
                    }
                }
            }
            match moved {
                None => break,
                Some((i, j)) if pass == units.len() => {
                    return Err(GroupError::UnitRestoreCycle {
                        first: units[i].join("+"),
                        second: units[j].join("+"),
                    })
                }
                Some(_) => {}
            }
        }
        Ok((0..units.len())
            .map(|i| (0..units.len()).filter(|&j| level[j] < level[i]).collect())
            .collect())
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// `restore_level` only where the order has levels, and above every dependency's.
fn check_restore_levels(f: &GroupFile, restore_of: &dyn Fn(&str) -> u32) -> Result<(), GroupError> {
    for m in &f.containers {
        if f.restore_order == RestoreOrder::Unordered && m.restore_level.is_some() {
            return Err(GroupError::RestoreLevelUnordered(m.name.clone()));
        }
        for d in &m.after {
            if restore_of(&m.name) <= restore_of(d) {
                return Err(GroupError::RestoreLevelOrder {
                    member: m.name.clone(),
                    level: restore_of(&m.name),
                    dep: d.clone(),
                    dep_level: restore_of(d),
                });
            }
        }
    }
    Ok(())
}

fn depth(name: &str, deps: &BTreeMap<&str, &[String]>, memo: &mut BTreeMap<String, u32>) -> u32 {
    if let Some(&d) = memo.get(name) {
        return d;
    }
    let d = deps.get(name).map_or(0, |ds| {
        ds.iter()
            .map(|x| depth(x, deps, memo) + 1)
            .max()
            .unwrap_or(0)
    });
    memo.insert(name.to_string(), d);
    d
}

/// A cycle in the dependencies, as a path that returns to its start, if there is one.
fn find_cycle(members: &[MemberFile], deps: &BTreeMap<&str, &[String]>) -> Option<Vec<String>> {
    // 0 = unseen, 1 = on the current path, 2 = done.
    let mut state: BTreeMap<&str, u8> = BTreeMap::new();
    fn visit<'a>(
        n: &'a str,
        deps: &BTreeMap<&'a str, &'a [String]>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let from = path.iter().position(|p| *p == n).unwrap_or(0);
                let mut c: Vec<String> = path[from..].iter().map(|s| s.to_string()).collect();
                c.push(n.to_string());
                return Some(c);
            }
            _ => {}
        }
        state.insert(n, 1);
        path.push(n);
        for d in deps.get(n).copied().unwrap_or(&[]) {
            if let Some(c) = visit(d.as_str(), deps, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n, 2);
        None
    }
    for m in members {
        let mut path = Vec::new();
        if let Some(c) = visit(m.name.as_str(), deps, &mut state, &mut path) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOP: &str = r#"
name = "shop"
[[container]]
name = "front1"
after = ["worker1"]
[[container]]
name = "db1"
[[container]]
name = "worker1"
after = ["db1"]
strategy = "precopy"
[[container]]
name = "db2"
"#;

    #[test]
    fn levels_and_orders_follow_the_dependencies() {
        let g = Group::parse(SHOP).unwrap();
        let lv: Vec<(&str, u32)> = g
            .members
            .iter()
            .map(|m| (m.name.as_str(), m.level))
            .collect();
        assert_eq!(lv, [("front1", 2), ("db1", 0), ("worker1", 1), ("db2", 0)]);
        let names = |v: Vec<&Member>| v.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(g.freeze_order()), ["front1", "worker1", "db1", "db2"]);
        assert_eq!(
            names(g.restore_sequence()),
            ["db1", "db2", "worker1", "front1"]
        );
        assert_eq!(g.restore_order, RestoreOrder::DependenciesFirst);
        assert_eq!(
            g.member("worker1").unwrap().strategy,
            Some(StrategyChoice::Fixed(ferry_types::Strategy::Precopy))
        );
    }

    #[test]
    fn restore_levels_default_to_the_dependencies_and_can_be_set() {
        let g = Group::parse(SHOP).unwrap();
        let rl: Vec<u32> = g.members.iter().map(|m| m.restore_level).collect();
        assert_eq!(rl, [2, 0, 1, 0]);
        let by_hand = SHOP.replace("name = \"db2\"\n", "name = \"db2\"\nrestore_level = 5\n");
        let g = Group::parse(&by_hand).unwrap();
        let names = |v: Vec<&Member>| v.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(g.restore_sequence()),
            ["db1", "worker1", "front1", "db2"]
        );
        let early = SHOP.replace("strategy = \"precopy\"\n", "restore_level = 0\n");
        assert!(matches!(
            Group::parse(&early),
            Err(GroupError::RestoreLevelOrder { ref member, .. }) if member == "worker1"
        ));
        let unordered = format!("restore_order = \"unordered\"\n{by_hand}");
        assert_eq!(
            Group::parse(&unordered),
            Err(GroupError::RestoreLevelUnordered("db2".into()))
        );
        let g = Group::parse(&format!("restore_order = \"unordered\"\n{SHOP}")).unwrap();
        assert_eq!(g.restore_order, RestoreOrder::Unordered);
        let units = |v: &[&[&str]]| -> Vec<Vec<String>> {
            v.iter()
                .map(|u| u.iter().map(|s| s.to_string()).collect())
                .collect()
        };
        let all = units(&[&["front1"], &["worker1"], &["db1"], &["db2"]]);
        assert_eq!(g.restore_waits(&all).unwrap(), vec![Vec::<usize>::new(); 4]);
        assert!(matches!(
            Group::parse(
                "restore_order = \"backwards\"\nname = \"g\"\n[[container]]\nname = \"a\"\n"
            ),
            Err(GroupError::Syntax(_))
        ));
    }

    #[test]
    fn units_wait_for_lower_levels_and_pods_restore_at_their_highest() {
        let g = Group::parse(SHOP).unwrap();
        let units = |v: &[&[&str]]| -> Vec<Vec<String>> {
            v.iter()
                .map(|u| u.iter().map(|s| s.to_string()).collect())
                .collect()
        };
        let one_each = units(&[&["front1"], &["worker1"], &["db1"], &["db2"]]);
        let w = g.restore_waits(&one_each).unwrap();
        assert_eq!(w, vec![vec![1, 2, 3], vec![2, 3], vec![], vec![]]);
        // db2 shares a pod with worker1 (level 1): db2 waits for db1 with it, and
        // front1 (after worker1) still waits for the pod.
        let pod = units(&[&["front1"], &["worker1", "db2"], &["db1"]]);
        let w = g.restore_waits(&pod).unwrap();
        assert_eq!(w, vec![vec![1, 2], vec![2], vec![]]);
        // A pod whose member depends on a container that depends on the pod's other
        // member: each would wait for the other.
        let ring = "name = \"g\"\n[[container]]\nname = \"a\"\n[[container]]\nname = \"x\"\nafter = [\"a\"]\n[[container]]\nname = \"b\"\nafter = [\"x\"]\n";
        let g = Group::parse(ring).unwrap();
        let pods = units(&[&["a", "b"], &["x"]]);
        assert!(matches!(
            g.restore_waits(&pods),
            Err(GroupError::UnitRestoreCycle { .. })
        ));
    }

    #[test]
    fn mistakes_get_errors_that_name_them() {
        let cycle = "name = \"g\"\n[[container]]\nname = \"a\"\nafter = [\"c\"]\n[[container]]\nname = \"b\"\nafter = [\"a\"]\n[[container]]\nname = \"c\"\nafter = [\"b\"]\n";
        match Group::parse(cycle) {
            Err(GroupError::Cycle(c)) => assert_eq!(c, ["a", "c", "b", "a"]),
            other => panic!("{other:?}"),
        }
        let unknown = "name = \"g\"\n[[container]]\nname = \"a\"\nafter = [\"zz\"]\n";
        assert!(Group::parse(unknown)
            .unwrap_err()
            .to_string()
            .contains("'zz'"));
        let dup = "name = \"g\"\n[[container]]\nname = \"a\"\n[[container]]\nname = \"a\"\n";
        assert_eq!(Group::parse(dup), Err(GroupError::Duplicate("a".into())));
        let own = "name = \"g\"\n[[container]]\nname = \"a\"\nafter = [\"a\"]\n";
        assert_eq!(
            Group::parse(own),
            Err(GroupError::SelfDependency("a".into()))
        );
        assert!(matches!(
            Group::parse("name = \"g\"\n"),
            Err(GroupError::Empty(_))
        ));
        assert!(matches!(
            Group::parse("name = \"g\"\n[[container]]\nname = \"a\"\nwhat = 1\n"),
            Err(GroupError::Syntax(_))
        ));
        assert!(matches!(
            Group::parse("name = \"g\"\n[[container]]\nname = \"../x\"\n"),
            Err(GroupError::BadName(_))
        ));
        let levels = "name = \"g\"\n[[container]]\nname = \"a\"\nlevel = 3\n[[container]]\nname = \"b\"\nafter = [\"a\"]\nlevel = 1\n";
        assert!(matches!(
            Group::parse(levels),
            Err(GroupError::LevelOrder { .. })
        ));
    }
}
