//! A lossless reader and writer of a whole checkpoint's image files, for `ferry images`:
//! every protobuf image decodes into a tree that keeps all of its bytes ([`tree`]), is
//! shown as JSON with the field names of [`schema`], changed at a path ([`json::edit`]),
//! written back, and compared with another checkpoint ([`diff`]).

pub mod diff;
mod file;
pub mod json;
mod magic;
pub mod readdress;
pub mod schema;
pub mod tree;

use std::path::{Path, PathBuf};

use serde_json::{json, Value as Json};

pub use file::{is_page_data, Entry, Image, ProtoImage};
use json::{message_json, Change, EditError};
use schema::Schema;

use super::ImageError;

#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error("{0} is not a directory of CRIU images; give the directory a checkpoint wrote")]
    NotADirectory(String),
    #[error("{0}")]
    Image(#[from] ImageError),
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    BadName(String),
    #[error("change {index}: {detail}")]
    BadChange { index: usize, detail: String },
    #[error("change {index} ({file} {path}): {source}")]
    Edit {
        index: usize,
        file: String,
        path: String,
        #[source]
        source: EditError,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ImagesError + 'a {
    move |source| ImagesError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// The image files of `dir`, sorted by name.
pub fn files(dir: &Path) -> Result<Vec<String>, ImagesError> {
    if !dir.is_dir() {
        return Err(ImagesError::NotADirectory(dir.display().to_string()));
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io("read", dir))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_image_name(n))
        .collect();
    names.sort();
    Ok(names)
}

/// One image file as JSON. Page data is not read: its size is shown.
pub fn file_json(dir: &Path, name: &str) -> Result<Json, ImagesError> {
    let path = dir.join(name);
    if is_page_data(name) {
        let len = std::fs::metadata(&path).map_err(io("read", &path))?.len();
        return Ok(json!({ "file": name, "page_data_bytes": len }));
    }
    Ok(image_json(name, &Image::read(&path)?))
}

pub fn image_json(name: &str, img: &Image) -> Json {
    let schema = Schema::criu();
    match img {
        Image::Raw(b) => json!({ "file": name, "raw_bytes": b.len() }),
        Image::Proto(p) => {
            let entries: Vec<Json> = p
                .entries
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let ty = p.entry_type(i).and_then(|t| schema.message(t));
                    let mut j = message_json(&e.message, ty, schema);
                    if let (Json::Object(o), false) = (&mut j, e.payload.is_empty()) {
                        o.insert("(payload)".into(), json!({ "bytes": e.payload.len() }));
                    }
                    j
                })
                .collect();
            let mut out = json!({
                "file": name,
                "magic": p.magic_name(),
                "type": p.entry_type(1).or(p.entry_type(0)),
                "entries": entries,
            });
            if !p.tail.is_empty() {
                out["tail_bytes"] = json!(p.tail.len());
            }
            out
        }
    }
}

/// Every image file of `dir` (or only `only`) as JSON.
pub fn show(dir: &Path, only: Option<&str>) -> Result<Json, ImagesError> {
    let names = match only {
        Some(n) => vec![plain_name(n).map_err(ImagesError::BadName)?],
        None => files(dir)?,
    };
    let files: Result<Vec<Json>, ImagesError> = names.iter().map(|n| file_json(dir, n)).collect();
    Ok(json!({ "images": dir.display().to_string(), "files": files? }))
}

/// One change of an edit file: `{"file", "path", "set"}` or `{"file", "path", "remove": true}`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeSpec {
    pub file: String,
    pub path: String,
    #[serde(default)]
    pub set: Option<Json>,
    #[serde(default)]
    pub remove: bool,
}

/// `*.img`, and the statistics files (`stats-dump`, `stats-restore`).
fn is_image_name(n: &str) -> bool {
    n.ends_with(".img") || n.starts_with("stats-")
}

fn plain_name(name: &str) -> Result<String, String> {
    let ok = !name.contains('/') && name != "." && name != ".." && is_image_name(name);
    if ok {
        Ok(name.to_string())
    } else {
        Err(format!(
            "'{name}' is not the name of an image file (like core-1.img)"
        ))
    }
}

/// Applies `changes` to the images of `dir`, in place or (with `out`) to a copy of the
/// whole directory. Returns the files written. Nothing is written if any change fails.
pub fn edit(
    dir: &Path,
    changes: &[ChangeSpec],
    out: Option<&Path>,
) -> Result<Vec<String>, ImagesError> {
    files(dir)?;
    let schema = Schema::criu();
    let mut changed: Vec<(String, Image)> = Vec::new();
    for (index, c) in changes.iter().enumerate() {
        let bad = |detail: String| ImagesError::BadChange { index, detail };
        let name = plain_name(&c.file).map_err(bad)?;
        if is_page_data(&name) {
            return Err(bad(format!("{name} holds page data, which has no fields")));
        }
        let change = match (&c.set, c.remove) {
            (Some(v), false) => Change::Set(v.clone()),
            (None, true) => Change::Remove,
            _ => return Err(bad("give either \"set\" or \"remove\": true".into())),
        };
        let pos = match changed.iter().position(|(n, _)| *n == name) {
            Some(p) => p,
            None => {
                changed.push((name.clone(), Image::read(&dir.join(&name))?));
                changed.len() - 1
            }
        };
        let Image::Proto(p) = &mut changed[pos].1 else {
            return Err(bad(format!("{name} is not a protobuf image")));
        };
        let parts: Vec<&str> = c.path.split('/').filter(|s| !s.is_empty()).collect();
        let (k, rest) = match parts.as_slice() {
            ["entries", k, rest @ ..] if !rest.is_empty() => (k.parse::<usize>().ok(), rest),
            _ => (None, &[][..]),
        };
        let k = k.ok_or_else(|| bad(format!("path '{}' must start with entries/N/", c.path)))?;
        let len = p.entries.len();
        let ty = p.entry_type(k).and_then(|t| schema.message(t));
        let entry = p
            .entries
            .get_mut(k)
            .ok_or_else(|| bad(format!("{name} has {len} entries, not {}", k + 1)))?;
        json::edit(&mut entry.message, ty, schema, rest, &change).map_err(|source| {
            ImagesError::Edit {
                index,
                file: name.clone(),
                path: c.path.clone(),
                source,
            }
        })?;
    }
    let target = match out {
        Some(o) => {
            copy_dir(dir, o)?;
            o.to_path_buf()
        }
        None => dir.to_path_buf(),
    };
    for (name, img) in &changed {
        write_atomic(&target.join(name), &img.encode())?;
    }
    Ok(changed.into_iter().map(|(n, _)| n).collect())
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), ImagesError> {
    if to.exists() {
        return Err(ImagesError::Io {
            what: "write to",
            path: to.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "it exists already; name a new directory",
            ),
        });
    }
    std::fs::create_dir_all(to).map_err(io("create", to))?;
    for e in std::fs::read_dir(from).map_err(io("read", from))? {
        let e = e.map_err(io("read", from))?;
        if e.file_type().is_ok_and(|t| t.is_file()) {
            let dest: PathBuf = to.join(e.file_name());
            std::fs::copy(e.path(), &dest).map_err(io("copy to", &dest))?;
        }
    }
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImagesError> {
    let tmp = path.with_extension("img.ferry-edit");
    std::fs::write(&tmp, bytes).map_err(io("write", &tmp))?;
    if let Ok(m) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, m.permissions());
    }
    std::fs::rename(&tmp, path).map_err(io("replace", path))
}

/// What decoding and encoding every image of a checkpoint gave.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RoundTrip {
    /// Protobuf images, each decoded and written back.
    pub decoded: Vec<String>,
    /// Files without a protobuf magic, kept as bytes.
    pub raw: Vec<String>,
    /// Images with bytes past their last decoded entry.
    pub with_tail: Vec<String>,
    /// Images whose encoding differs from the file (never, if the code is right).
    pub differ: Vec<String>,
}

/// Decodes and encodes every image of `dir` (page data excepted) and compares.
pub fn round_trip(dir: &Path) -> Result<RoundTrip, ImagesError> {
    let mut r = RoundTrip::default();
    for name in files(dir)? {
        if is_page_data(&name) {
            continue;
        }
        let path = dir.join(&name);
        let buf = super::read_meta_file(&path)?;
        let img = Image::decode(buf.clone(), Schema::criu());
        if img.encode() != buf {
            r.differ.push(name.clone());
        }
        match &img {
            Image::Raw(_) => r.raw.push(name),
            Image::Proto(p) => {
                if !p.tail.is_empty() {
                    r.with_tail.push(name.clone());
                }
                r.decoded.push(name);
            }
        }
    }
    Ok(r)
}
