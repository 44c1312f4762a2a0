//! Sending a bundle and image files to the destination.

use std::path::Path;

use ferry_proto::PeerRequest;
use ferry_runtime::bundle::Bundle;
use ferry_runtime::manifest::list_bundle;
use ferry_transport::{Conn, DATA_CHUNK};
use ferry_types::FileKind;
use tokio::io::AsyncReadExt;

use crate::AgentError;

async fn send_file(conn: &mut Conn, path: &Path, size: u64) -> Result<(), AgentError> {
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| AgentError::io(path.display().to_string(), e))?;
    let mut buf = vec![0u8; DATA_CHUNK];
    let mut left = size;
    while left > 0 {
        let want = buf.len().min(left as usize);
        let n = f
            .read(&mut buf[..want])
            .await
            .map_err(|e| AgentError::io(path.display().to_string(), e))?;
        if n == 0 {
            return Err(AgentError::Input(format!(
                "{} shrank while being sent",
                path.display()
            )));
        }
        conn.send_data(&buf[..n]).await?;
        left -= n as u64;
    }
    Ok(())
}

/// The digest the destination compares with the bundle it may already hold.
pub fn bundle_digest(bundle: &Bundle) -> Result<String, AgentError> {
    Ok(list_bundle(bundle)?.1)
}

/// Sends every file of the bundle, then `BundleDone`. Returns the bytes of file content.
pub async fn send_bundle(conn: &mut Conn, bundle: &Bundle) -> Result<u64, AgentError> {
    let (entries, _) = list_bundle(bundle)?;
    let mut bytes = 0;
    for e in entries {
        let size = e.size;
        let kind = e.kind;
        let path = bundle.dir.join(&e.path);
        conn.send(&PeerRequest::BundleFile { entry: e }).await?;
        if kind == FileKind::File && size > 0 {
            send_file(conn, &path, size).await?;
            bytes += size;
        }
    }
    conn.send(&PeerRequest::BundleDone).await?;
    Ok(bytes)
}

/// Image files to ship: everything CRIU and runc wrote except logs.
pub fn image_files(dir: &Path) -> Result<Vec<(String, u64)>, AgentError> {
    let mut out = Vec::new();
    let rd = std::fs::read_dir(dir).map_err(|e| AgentError::io(dir.display().to_string(), e))?;
    for entry in rd.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file()
            || name.ends_with(".log")
            || name.ends_with(".socket")
            || name.ends_with(".conf")
        {
            continue;
        }
        out.push((name, meta.len()));
    }
    out.sort();
    Ok(out)
}

/// Sends the image files of `dir`, then `ImagesDone`.
pub async fn send_images(conn: &mut Conn, dir: &Path, pages_bytes: u64) -> Result<u64, AgentError> {
    let mut bytes = 0;
    for (name, size) in image_files(dir)? {
        conn.send(&PeerRequest::ImageFile {
            name: name.clone(),
            size,
        })
        .await?;
        send_file(conn, &dir.join(&name), size).await?;
        bytes += size;
    }
    conn.send(&PeerRequest::ImagesDone { pages_bytes }).await?;
    Ok(bytes)
}
