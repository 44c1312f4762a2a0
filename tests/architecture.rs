//! Architecture rules of the ferry workspace, checked on every `cargo test`:
//!
//! 1. `layers`: every workspace package has a layer in [`LAYERS`] and depends only on
//!    packages of lower layers; some must stay free of others even indirectly
//!    ([`KEEP_OUT`]); the [`PURE`] ones have a short list of allowed dependencies.
//! 2. `file_cycles`: no two files of one crate import each other, directly or
//!    through other files of that crate.
//! 3. `sizes`: no source file has over [`MAX_FILE_LINES`] lines of code, and no
//!    function spans over [`MAX_FN_LINES`] lines unless marked `// long: reason`.
//!
//! Rule 1 reads the resolved graph of `cargo metadata`. Rules 2 and 3 read `src/` of
//! each package with a small text scanner, not a Rust parser: comments are blanked,
//! string and char literals masked, `#[cfg(test)]` items dropped, and the rest split
//! into tokens. Its limits: macros are not expanded; `#[path]`, `include!` and
//! `cfg`s other than `cfg(test)` are not seen; inline `mod x { … }` blocks are read
//! as part of their file's module; only paths starting with `crate`, `self` or
//! `super` are imports (not names reached through a sibling's glob import);
//! `src/bin/*` is read as modules of the main crate, not as crates of their own.

// A failed check panics with its report. The unwraps are on cargo's own JSON and on
// data this file just built, where a panic is the right answer too.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The packages of each layer, lowest first: a package may depend only on packages of
/// lower layers. This is the plan: a package named here that does not exist (yet) is
/// ignored, but a workspace package missing here fails, so that new crates are placed.
const LAYERS: &[&str] = &[
    "ferry-types",
    "ferry-proto ferry-criu",
    "ferry-transport ferry-runtime ferry-netns ferry-pages ferry-host",
    "ferry-engine",
    "ferry-containers",
    "ferry-agent ferry-controller",
    "ferry-lab",
    "ferry-bench",
    "ferry-cli",
    "ferry",
];

/// Packages that open no socket and no file.
const PURE: &[&str] = &["ferry-types", "ferry-proto"];
/// The only direct dependencies a [`PURE`] package may have.
const PURE_DEPS: &str = "serde serde_json thiserror crc32fast ferry-types";
/// Packages that do I/O, and so may not be in the closure of a [`PURE`] package.
const DOES_IO: &str = "tokio mio socket2 libc nix rustls tokio-rustls ring";

/// Packages whose closure of normal dependencies must not contain the packages listed.
const KEEP_OUT: &[(&str, &str)] = &[
    ("ferry-engine", "ferry-agent ferry-transport ferry-netns"),
    ("ferry-cli", "ferry-agent"),
    ("ferry-lab", "ferry-agent"),
    ("ferry-bench", "ferry-agent"),
    ("ferry-types", DOES_IO),
    ("ferry-proto", DOES_IO),
];

/// The most lines of code (neither blank, nor only comment, nor test) in a source file.
const MAX_FILE_LINES: usize = 800;
/// The most lines a function may span, from its `fn` line to its closing brace.
const MAX_FN_LINES: usize = 100;

// ---- Rule 1: layers ----

#[test]
fn layers() {
    let ws = workspace();
    let layer_of = |pkg: &str| LAYERS.iter().position(|l| l.split(' ').any(|p| p == pkg));
    let mut errors = Vec::new();
    for name in ws.members.keys() {
        let Some(layer) = layer_of(name) else {
            errors.push(format!("workspace package `{name}` has no layer in LAYERS"));
            continue;
        };
        for dep in ws.direct(name) {
            match layer_of(dep) {
                Some(below) if below >= layer => errors.push(format!(
                    "`{name}` (layer {layer}) depends on `{dep}` (layer {below}), not lower"
                )),
                _ => {}
            }
        }
    }
    for (pkg, banned) in KEEP_OUT {
        for chain in ws.chains_to(pkg, banned) {
            let (bad, chain) = (chain[chain.len() - 1], chain.join(" -> "));
            errors.push(format!(
                "`{pkg}` must not depend on `{bad}`, even indirectly: {chain}"
            ));
        }
    }
    for pkg in PURE {
        for dep in ws.direct(pkg) {
            if !PURE_DEPS.split(' ').any(|d| d == dep) {
                errors.push(format!(
                    "`{pkg}` depends on `{dep}`, not one of: {PURE_DEPS}"
                ));
            }
        }
    }
    report("layering violation(s)", &errors);
}

/// The workspace packages and the resolved graph of normal dependencies.
#[derive(Default)]
struct Workspace {
    root: PathBuf,
    /// Workspace package name -> (package id, directory of its `Cargo.toml`).
    members: BTreeMap<String, (String, PathBuf)>,
    /// Package id -> name, for every package in the graph.
    name: HashMap<String, String>,
    /// Package id -> ids of its normal (neither dev nor build) dependencies.
    deps: HashMap<String, Vec<String>>,
}

impl Workspace {
    /// The direct normal dependencies of workspace package `pkg`, if there is one.
    fn direct(&self, pkg: &str) -> Vec<&str> {
        let deps = self.members.get(pkg).map(|(id, _)| &self.deps[id]);
        deps.into_iter().flatten().map(|d| &*self.name[d]).collect()
    }

    /// A shortest dependency chain from workspace package `pkg` (if there is one) to
    /// each package of its closure named in `banned`.
    fn chains_to(&self, pkg: &str, banned: &str) -> Vec<Vec<&str>> {
        let Some((start, _)) = self.members.get(pkg) else {
            return Vec::new();
        };
        let mut parent = HashMap::from([(start, start)]);
        let mut queue = VecDeque::from([start]);
        let mut chains = Vec::new();
        while let Some(id) = queue.pop_front() {
            for dep in &self.deps[id] {
                if parent.contains_key(dep) {
                    continue;
                }
                parent.insert(dep, id);
                queue.push_back(dep);
                if banned.split(' ').any(|b| b == self.name[dep]) {
                    let mut chain = vec![&*self.name[dep]];
                    let mut at = id;
                    while at != start {
                        chain.push(&self.name[at]);
                        at = parent[at];
                    }
                    chain.push(&self.name[start]);
                    chain.reverse();
                    chains.push(chain);
                }
            }
        }
        chains
    }
}

/// The workspace, read from `cargo metadata` once for all the tests.
fn workspace() -> &'static Workspace {
    static WORKSPACE: OnceLock<Workspace> = OnceLock::new();
    WORKSPACE.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let out = Command::new(&cargo)
            .args(["metadata", "--format-version", "1"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap_or_else(|e| panic!("cannot run `{cargo} metadata`: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "`{cargo} metadata` failed:\n{stderr}");
        let meta: Value = serde_json::from_slice(&out.stdout).expect("bad cargo metadata");
        let text = |v: &Value| v.as_str().unwrap().to_string();
        let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
        let root = PathBuf::from(text(&meta["workspace_root"]));
        let mut ws = Workspace {
            root,
            ..Workspace::default()
        };
        let in_workspace = list(&meta["workspace_members"]);
        for p in list(&meta["packages"]) {
            let (id, name) = (text(&p["id"]), text(&p["name"]));
            if in_workspace.contains(&p["id"]) {
                let manifest = PathBuf::from(text(&p["manifest_path"]));
                let dir = manifest.parent().unwrap().to_path_buf();
                ws.members.insert(name.clone(), (id.clone(), dir));
            }
            ws.name.insert(id, name);
        }
        for node in list(&meta["resolve"]["nodes"]) {
            let mut deps = Vec::new();
            for dep in list(&node["deps"]) {
                // Normal if one of its kinds is null, neither "dev" nor "build".
                if list(&dep["dep_kinds"]).iter().any(|k| k["kind"].is_null()) {
                    deps.push(text(&dep["pkg"]));
                }
            }
            ws.deps.insert(text(&node["id"]), deps);
        }
        assert!(!ws.deps.is_empty(), "no resolve graph in cargo metadata");
        ws
    })
}

// ---- Rule 2: no import cycles between the files of a crate ----

#[test]
fn file_cycles() {
    let ws = workspace();
    let mut errors = Vec::new();
    for pkg in ws.members.keys() {
        let krate = Crate::new(crate_files(ws, pkg));
        let rel = |i: usize| krate.files[i].rel.as_str();
        let edges = krate.edges();
        for cycle in cycles(krate.files.len(), &edges) {
            let path: Vec<&str> = cycle.iter().map(|&i| rel(i)).collect();
            let mut msg = format!("{pkg}: {}", path.join(" -> "));
            for w in cycle.windows(2) {
                let why = &edges[&(w[0], w[1])];
                msg += &format!("\n      {} uses {} at {why}", rel(w[0]), rel(w[1]));
            }
            errors.push(msg);
        }
    }
    report("import cycle(s) between the files of a crate", &errors);
}

/// The files of one crate, and which file holds each module.
struct Crate {
    files: Vec<SourceFile>,
    by_module: HashMap<Vec<String>, usize>,
}

impl Crate {
    fn new(files: Vec<SourceFile>) -> Self {
        let by_module = files.iter().map(|f| f.module.clone()).zip(0..).collect();
        Crate { files, by_module }
    }

    /// The imports between files, `(from, to)` -> where the first one is. A file's
    /// imports from its ancestors and descendants in the module tree do not count.
    fn edges(&self) -> BTreeMap<(usize, usize), String> {
        let mut edges = BTreeMap::new();
        for (from, f) in self.files.iter().enumerate() {
            for (at, path) in &f.refs {
                let Some(to) = self.resolve(&f.module, path, 0) else {
                    continue;
                };
                let m = &self.files[to].module;
                if !f.module.starts_with(m) && !m.starts_with(&f.module) {
                    let why = format!("line {} ({})", f.line(*at), path.join("::"));
                    edges.entry((from, to)).or_insert(why);
                }
            }
        }
        edges
    }

    /// The file defining what `path`, written in module `at`, names: the deepest module
    /// file on the path, followed through that file's `use` items (its re-exports) to
    /// the file that the next name comes from. `None` for a path out of the crate.
    fn resolve(&self, at: &[String], path: &[String], hops: u32) -> Option<usize> {
        let child = [at, path.get(..1)?].concat();
        let (mut base, mut rest) = match path[0].as_str() {
            "crate" => (vec![], &path[1..]),
            "self" => (at.to_vec(), &path[1..]),
            "super" => (at.to_vec(), path),
            _ if self.by_module.contains_key(&child) => (at.to_vec(), path),
            _ => return None, // another crate
        };
        while rest.first().is_some_and(|s| s == "super") {
            base.pop()?;
            rest = &rest[1..];
        }
        let full = [base, rest.to_vec()].concat();
        let is_module = |k: &usize| self.by_module.contains_key(&full[..*k]);
        let depth = (0..=full.len()).rev().find(is_module)?;
        let (file, after) = (self.by_module[&full[..depth]], &full[depth..]);
        let f = &self.files[file];
        let (Some(name), true) = (after.first(), hops < 8) else {
            return Some(file);
        };
        for (brought, path) in &f.imports {
            // `use a::Name` brings `Name`; a glob `use a::*` brings it if `a` has it.
            let target = if brought == name {
                [path.as_slice(), &after[1..]].concat()
            } else if brought == "*" && self.glob_brings(f, path, name, hops) {
                [path.as_slice(), after].concat()
            } else {
                continue;
            };
            if let Some(found) = self.resolve(&f.module, &target, hops + 1) {
                return Some(found);
            }
        }
        Some(file)
    }

    /// Whether `use path::*` in file `f` brings `name` from another file.
    fn glob_brings(&self, f: &SourceFile, path: &[String], name: &str, hops: u32) -> bool {
        let Some(g) = self.resolve(&f.module, path, hops + 1) else {
            return false;
        };
        let (g, mine) = (&self.files[g], f.defines.contains(name));
        let brings = g.defines.contains(name) || g.imports.iter().any(|i| i.0 == name);
        !mine && g.module != f.module && brings
    }
}

/// Elementary cycles of a small directed graph (at most 50), each once, from its lowest
/// node back to it.
fn cycles(n: usize, edges: &BTreeMap<(usize, usize), String>) -> Vec<Vec<usize>> {
    let mut next = vec![Vec::new(); n];
    for &(a, b) in edges.keys() {
        next[a].push(b);
    }
    // reaches[a][b]: there is a path from a to b.
    let mut reaches = vec![vec![false; n]; n];
    for (a, seen) in reaches.iter_mut().enumerate() {
        let mut stack = vec![a];
        while let Some(x) = stack.pop() {
            let new = next[x]
                .iter()
                .filter(|&&y| !std::mem::replace(&mut seen[y], true));
            stack.extend(new);
        }
    }
    // Depth first from each start, only through higher nodes that lead back to it.
    type Paths = Vec<Vec<usize>>;
    fn extend(next: &[Vec<usize>], reach: &[Vec<bool>], path: &mut Vec<usize>, out: &mut Paths) {
        let (start, last) = (path[0], path[path.len() - 1]);
        for &y in &next[last] {
            if out.len() >= 50 {
                return;
            } else if y == start {
                out.push([path.as_slice(), &[start]].concat());
            } else if y > start && reach[y][start] && !path.contains(&y) {
                path.push(y);
                extend(next, reach, path, out);
                path.pop();
            }
        }
    }
    let mut out = Vec::new();
    for start in 0..n {
        extend(&next, &reaches, &mut vec![start], &mut out);
    }
    out
}

// ---- Rule 3: sizes ----

#[test]
fn sizes() {
    let ws = workspace();
    let mut offenders: Vec<(usize, String)> = Vec::new();
    for pkg in ws.members.keys() {
        for f in crate_files(ws, pkg) {
            let blank = |l: &&[char]| l.iter().all(|c| c.is_whitespace());
            let code = f.code.split(|&c| c == '\n').filter(|l| !blank(l)).count();
            if code > MAX_FILE_LINES {
                let what = format!("{}: {code} lines of code", f.rel);
                offenders.push((code, what));
            }
            for (name, first, last) in functions(&f) {
                let len = last - first + 1;
                if len > MAX_FN_LINES && !marked_long(&f, first) {
                    let what = format!("{}:{first}: fn {name}: {len} lines", f.rel);
                    offenders.push((len, what));
                }
            }
        }
    }
    offenders.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let offenders: Vec<String> = offenders.into_iter().map(|(_, what)| what).collect();
    let rule = format!(
        "size limit(s) exceeded ({MAX_FILE_LINES} lines of code a file, {MAX_FN_LINES} lines \
         a fn; split, or mark the fn `// long: why`)"
    );
    report(&rule, &offenders);
}

/// The functions with a body in `f`: name, line of `fn`, line of the closing brace.
fn functions(f: &SourceFile) -> Vec<(&str, usize, usize)> {
    let t = &f.toks;
    let mut out = Vec::new();
    for k in 1..t.len() {
        if t[k - 1].text == "fn" && starts_ident(&t[k].text) {
            let end = item_end(t, k);
            if t[end].text == "}" {
                out.push((t[k].text.as_str(), f.line(t[k - 1].at), f.line(t[end].at)));
            }
        }
    }
    out
}

/// Whether a `// long: reason` comment is on the `fn` line or up to 3 lines above it.
fn marked_long(f: &SourceFile, fn_line: usize) -> bool {
    f.comments.iter().any(|(at, text)| {
        let near = (fn_line.saturating_sub(3)..=fn_line).contains(&f.line(*at));
        let reason = text.trim_start().strip_prefix("long:").map(str::trim);
        near && reason.is_some_and(|why| !why.is_empty())
    })
}

// ---- The source scanner shared by rules 2 and 3 ----

/// One `.rs` file of a package's `src/`, with comments blanked, string and char
/// literals masked with `"` (their braces and paths vanish, their lines still count as
/// code) and `#[cfg(test)]` items blanked. Offsets and lines are those of the file.
struct SourceFile {
    /// Path from the workspace root.
    rel: String,
    /// Module path within the crate: empty for `lib.rs` and `main.rs`.
    module: Vec<String>,
    code: Vec<char>,
    toks: Vec<Tok>,
    line_starts: Vec<usize>,
    /// `//` comments: offset, and the text after `//`.
    comments: Vec<(usize, String)>,
    /// Offset of every path starting with `crate`, `self` or `super`, in `use` or code.
    refs: Vec<(usize, Vec<String>)>,
    /// The names that top-level `use` items bring in (`*` for a glob), with their paths.
    imports: Vec<Import>,
    /// Names of the `pub` items defined at the top level.
    defines: HashSet<String>,
}

impl SourceFile {
    /// The 1-based line of char offset `at`.
    fn line(&self, at: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= at)
    }
}

/// A token: a word (identifier, keyword, number), `::` or a punctuation character,
/// with its offset and the number of braces open around it.
struct Tok {
    at: usize,
    text: String,
    depth: usize,
}

/// The source files of workspace package `pkg`.
fn crate_files(ws: &Workspace, pkg: &str) -> Vec<SourceFile> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let src = ws.members[pkg].1.join("src");
    let mut paths = Vec::new();
    walk(&src, &mut paths);
    paths.sort();
    paths.iter().map(|p| load(p, &src, &ws.root)).collect()
}

fn load(path: &Path, src: &Path, root: &Path) -> SourceFile {
    let text = std::fs::read_to_string(path);
    let text = text.unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let (mut code, comments) = clean(&text);
    for (from, to) in test_items(&tokens(&code)) {
        let to = to.min(code.len());
        mask(&mut code[from..to], ' ');
    }
    let parts = path.strip_prefix(src).unwrap().iter();
    let mut module: Vec<String> = parts.map(|c| c.to_string_lossy().into()).collect();
    let file = module.pop().unwrap();
    if !(file == "mod.rs" || module.is_empty() && (file == "lib.rs" || file == "main.rs")) {
        module.push(file.trim_end_matches(".rs").to_string());
    }
    let newlines = (0..code.len()).filter(|&i| code[i] == '\n').map(|i| i + 1);
    let line_starts = std::iter::once(0).chain(newlines).collect();
    let toks = tokens(&code);
    let (refs, imports, defines) = scan_paths(&toks);
    let rel = path
        .strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string();
    SourceFile {
        rel,
        module,
        code,
        toks,
        line_starts,
        comments,
        refs,
        imports,
        defines,
    }
}

/// What [`scan_paths`] finds: the `refs`, `imports` and `defines` of a [`SourceFile`].
type Paths = (Vec<(usize, Vec<String>)>, Vec<Import>, HashSet<String>);
/// A name that a `use` item brings in (`*` for a glob), and its path.
type Import = (String, Vec<String>);

const ITEM_KINDS: &str = "struct enum union fn trait type const static mod";

fn scan_paths(t: &[Tok]) -> Paths {
    let txt = |k: usize| t.get(k).map_or("", |t| t.text.as_str());
    let is_root = |w: &str| matches!(w, "crate" | "self" | "super");
    let (mut refs, mut imports, mut defines) = (Vec::new(), Vec::new(), HashSet::new());
    let mut k = 0;
    while k < t.len() {
        let (word, at) = (txt(k), t[k].at);
        if word == "use" {
            let mut paths = Vec::new();
            let end = use_tree(t, k + 1, &mut paths);
            for (name, path) in paths {
                if path.first().is_some_and(|w| is_root(w)) {
                    refs.push((at, path.clone()));
                }
                if t[k].depth == 0 {
                    imports.push((name, path));
                }
            }
            k = end + 1;
        } else if is_root(word) && txt(k + 1) == "::" {
            let mut path = vec![word.to_string()];
            k += 1;
            while txt(k) == "::" && starts_ident(txt(k + 1)) {
                path.push(txt(k + 1).to_string());
                k += 2;
            }
            refs.push((at, path));
        } else {
            let public = (k.saturating_sub(4)..k).any(|p| txt(p) == "pub");
            if t[k].depth == 0 && public && ITEM_KINDS.split(' ').any(|i| i == word) {
                defines.insert(txt(k + 1).to_string());
            }
            k += 1;
        }
    }
    (refs, imports, defines)
}

/// Expands the use tree from `toks[j]` (after `use`) into the names it brings in, with
/// their paths; returns the index of its end.
fn use_tree(toks: &[Tok], mut j: usize, out: &mut Vec<Import>) -> usize {
    let txt = |k: usize| toks.get(k).map_or("", |t| t.text.as_str());
    // The path so far, the path length at each open brace, and a name given by `as`.
    let (mut path, mut groups, mut alias) = (Vec::<String>::new(), Vec::new(), None);
    loop {
        match txt(j) {
            "::" => {}
            "{" => groups.push(path.len()),
            "as" => {
                alias = Some(txt(j + 1).to_string());
                j += 1;
            }
            "," | "}" | ";" | "" => {
                if path.len() > groups.last().copied().unwrap_or(0) {
                    let mut full = path.clone();
                    let last = full.last().cloned().unwrap_or_default();
                    if last == "*" || last == "self" && full.len() > 1 {
                        full.pop(); // `a::{self, …}` names `a`
                    }
                    let name = if last == "self" {
                        full.last().cloned()
                    } else {
                        Some(last)
                    };
                    out.push((alias.take().or(name).unwrap_or_default(), full));
                }
                if txt(j) == "}" {
                    groups.pop();
                }
                path.truncate(groups.last().copied().unwrap_or(0));
                if matches!(txt(j), ";" | "") {
                    return j;
                }
            }
            word if starts_ident(word) || word == "*" => path.push(word.to_string()),
            _ => return j, // not a use item after all
        }
        j += 1;
    }
}

/// Blanks comments and masks string and char literals (raw ones too) with `"`, keeping
/// every newline. Returns the text and its `//` comments.
fn clean(src: &str) -> (Vec<char>, Vec<(usize, String)>) {
    let mut s: Vec<char> = src.chars().collect();
    let at = |s: &[char], i: usize| s.get(i).copied().unwrap_or('\0');
    let mut comments = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let word_start = i == 0 || !is_ident(s[i - 1]);
        let (end, fill) = match (s[i], at(&s, i + 1)) {
            ('/', '/') => {
                let len = s[i..].iter().position(|&c| c == '\n');
                let end = len.map_or(s.len(), |len| i + len);
                comments.push((i, s[i + 2..end].iter().collect()));
                (end, ' ')
            }
            ('/', '*') => {
                let (mut j, mut depth) = (i + 2, 1);
                while j < s.len() && depth > 0 {
                    match (s[j], at(&s, j + 1)) {
                        ('/', '*') => (depth, j) = (depth + 1, j + 2),
                        ('*', '/') => (depth, j) = (depth - 1, j + 2),
                        _ => j += 1,
                    }
                }
                (j, ' ')
            }
            ('"', _) => {
                let mut j = i + 1;
                while j < s.len() && s[j] != '"' {
                    j += if s[j] == '\\' { 2 } else { 1 };
                }
                (j + 1, '"')
            }
            ('r', '"' | '#') | ('b', 'r') if word_start => {
                // r"…", r#"…"#, br#"…"#; but neither `r#ident` nor a word like `break`.
                let open = i + 1 + usize::from(s[i] == 'b');
                let hashes = s[open..].iter().take_while(|&&c| c == '#').count();
                if at(&s, open + hashes) != '"' {
                    i += 1;
                    continue;
                }
                let closes = |j: &usize| s[*j] == '"' && (1..=hashes).all(|h| at(&s, j + h) == '#');
                let close = (open + hashes + 1..s.len()).find(closes);
                (close.map_or(s.len(), |c| c + 1 + hashes), '"')
            }
            // 'x', '{', '\'', '\u{7d}'; but not a lifetime 'a
            ('\'', next) if next == '\\' || at(&s, i + 2) == '\'' => {
                let from = i + 2 + usize::from(next == '\\');
                let close = (from..s.len()).find(|&j| s[j] == '\'');
                (close.map_or(s.len(), |c| c + 1), '"')
            }
            _ => {
                i += 1;
                continue;
            }
        };
        let end = end.min(s.len());
        mask(&mut s[i..end], fill);
        i = end;
    }
    (s, comments)
}

/// Char ranges of the items under `#[cfg(test)]`, or all the file for `#![cfg(test)]`.
fn test_items(toks: &[Tok]) -> Vec<(usize, usize)> {
    let text = |from: usize, n: usize| -> String {
        let end = (from + n).min(toks.len());
        toks[from..end].iter().map(|t| t.text.as_str()).collect()
    };
    let mut ranges = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if text(i, 8) == "#![cfg(test)]" {
            return vec![(0, usize::MAX)];
        } else if text(i, 7) == "#[cfg(test)]" {
            // The item, after any other attributes (their brackets hide their tokens).
            let end = item_end(toks, i + 7);
            ranges.push((toks[i].at, toks[end].at + 1));
            i = end;
        }
        i += 1;
    }
    ranges
}

/// The index of the last token of the item or signature starting at `toks[j]`: its
/// `;`, or the `}` closing its first `{` outside parentheses and brackets.
fn item_end(toks: &[Tok], mut j: usize) -> usize {
    let mut depth = 0;
    while j < toks.len() {
        match toks[j].text.as_str() {
            "(" | "[" => depth += 1,
            ")" | "]" => depth -= 1,
            ";" if depth == 0 => return j,
            "{" if depth == 0 => {
                let closes = |t: &Tok| t.text == "}" && t.depth == toks[j].depth;
                let close = toks[j + 1..].iter().position(closes);
                return close.map_or(toks.len() - 1, |p| j + 1 + p);
            }
            _ => {}
        }
        j += 1;
    }
    toks.len() - 1
}

/// Splits cleaned code into tokens, skipping spaces and masked literals.
fn tokens(code: &[char]) -> Vec<Tok> {
    let mut toks = Vec::new();
    let (mut i, mut depth) = (0, 0_usize);
    while i < code.len() {
        let c = code[i];
        let len = match c {
            _ if is_ident(c) => code[i..].iter().take_while(|&&c| is_ident(c)).count(),
            ':' if code.get(i + 1) == Some(&':') => 2,
            _ => 1,
        };
        if !c.is_whitespace() && c != '"' {
            depth -= usize::from(c == '}' && depth > 0);
            let text = code[i..i + len].iter().collect();
            toks.push(Tok { at: i, text, depth });
            depth += usize::from(c == '{');
        }
        i += len;
    }
    toks
}

fn mask(chars: &mut [char], fill: char) {
    for c in chars.iter_mut().filter(|c| **c != '\n') {
        *c = fill;
    }
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn starts_ident(word: &str) -> bool {
    word.starts_with(|c: char| c.is_alphabetic() || c == '_')
}

/// Fails with every violation found, one per line.
fn report(rule: &str, errors: &[String]) {
    if !errors.is_empty() {
        panic!("{} {rule}:\n  {}\n", errors.len(), errors.join("\n  "));
    }
}
