//! Two checkpoints compared image by image: the fields that differ (by path), the files
//! only one has, and for page data how many 4 KiB pages differ.

use std::io::Read;
use std::path::Path;

use serde_json::Value as Json;

use super::{files, image_json, is_page_data, Image, ImagesError};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Difference {
    pub file: String,
    /// Where in the file, as `ferry images edit` names it (empty: the whole file).
    pub path: String,
    pub a: Option<Json>,
    pub b: Option<Json>,
}

fn walk(file: &str, path: &str, a: &Json, b: &Json, out: &mut Vec<Difference>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}/{k}")
        }
    };
    match (a, b) {
        (Json::Object(x), Json::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => walk(file, &join(k), p, q, out),
                    (p, q) => out.push(Difference {
                        file: file.into(),
                        path: join(k),
                        a: p.cloned(),
                        b: q.cloned(),
                    }),
                }
            }
        }
        (Json::Array(x), Json::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                match (x.get(i), y.get(i)) {
                    (Some(p), Some(q)) => walk(file, &join(&i.to_string()), p, q, out),
                    (p, q) => out.push(Difference {
                        file: file.into(),
                        path: join(&i.to_string()),
                        a: p.cloned(),
                        b: q.cloned(),
                    }),
                }
            }
        }
        (p, q) if p != q => out.push(Difference {
            file: file.into(),
            path: path.into(),
            a: Some(p.clone()),
            b: Some(q.clone()),
        }),
        _ => {}
    }
}

/// How many 4 KiB pages of two page files differ (a longer file's extra pages count).
fn differing_pages(a: &Path, b: &Path) -> Result<u64, ImagesError> {
    let open = |p: &Path| {
        std::fs::File::open(p).map_err(|source| ImagesError::Io {
            what: "read",
            path: p.display().to_string(),
            source,
        })
    };
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let (mut pa, mut pb) = (vec![0u8; 4096], vec![0u8; 4096]);
    let mut n = 0;
    loop {
        let ra = read_page(&mut fa, &mut pa, a)?;
        let rb = read_page(&mut fb, &mut pb, b)?;
        if ra == 0 && rb == 0 {
            return Ok(n);
        }
        if ra != rb || pa[..ra] != pb[..rb] {
            n += 1;
        }
    }
}

fn read_page(f: &mut std::fs::File, buf: &mut [u8], p: &Path) -> Result<usize, ImagesError> {
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(ImagesError::Io {
                    what: "read",
                    path: p.display().to_string(),
                    source,
                })
            }
        }
    }
    Ok(got)
}

/// Every difference between the checkpoints in `a` and `b`.
pub fn diff(a: &Path, b: &Path) -> Result<Vec<Difference>, ImagesError> {
    let (fa, fb) = (files(a)?, files(b)?);
    let mut names: Vec<&String> = fa.iter().chain(fb.iter()).collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let (in_a, in_b) = (fa.contains(name), fb.contains(name));
        if !(in_a && in_b) {
            out.push(Difference {
                file: name.clone(),
                path: String::new(),
                a: in_a.then(|| Json::from("present")),
                b: in_b.then(|| Json::from("present")),
            });
            continue;
        }
        if is_page_data(name) {
            let n = differing_pages(&a.join(name), &b.join(name))?;
            if n > 0 {
                out.push(Difference {
                    file: name.clone(),
                    path: String::new(),
                    a: None,
                    b: Some(Json::from(format!("{n} pages differ"))),
                });
            }
            continue;
        }
        let (ia, ib) = (Image::read(&a.join(name))?, Image::read(&b.join(name))?);
        walk(
            name,
            "",
            &image_json(name, &ia),
            &image_json(name, &ib),
            &mut out,
        );
        payloads(name, &ia, &ib, &mut out);
    }
    Ok(out)
}

/// Raw data after entries (socket queues, pipe contents) that differs at the same size.
fn payloads(name: &str, a: &Image, b: &Image, out: &mut Vec<Difference>) {
    let (Image::Proto(x), Image::Proto(y)) = (a, b) else {
        if a != b {
            out.push(Difference {
                file: name.into(),
                path: String::new(),
                a: None,
                b: Some(Json::from("contents differ")),
            });
        }
        return;
    };
    for (i, (p, q)) in x.entries.iter().zip(&y.entries).enumerate() {
        if p.payload.len() == q.payload.len() && p.payload != q.payload {
            out.push(Difference {
                file: name.into(),
                path: format!("entries/{i}/(payload)"),
                a: None,
                b: Some(Json::from("same size, other bytes")),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_each_changed_added_and_removed_field_by_path() {
        let a = json!({"entries": [{"tc": {"comm": "redis", "flags": 1}, "x": [1, 2]}]});
        let b = json!({"entries": [{"tc": {"comm": "other", "flags": 1}, "x": [1], "y": 3}]});
        let mut out = Vec::new();
        walk("core-1.img", "", &a, &b, &mut out);
        let paths: Vec<&str> = out.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["entries/0/tc/comm", "entries/0/x/1", "entries/0/y"]);
        assert_eq!(out[0].b, Some(json!("other")));
    }
}
