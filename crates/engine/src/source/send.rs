//! Sending the shipment and the image files to the destination, as announced files
//! followed by their bytes.

use std::path::Path;

use ferry_proto::PeerRequest;
use tokio::io::AsyncReadExt;

use super::SourceRun;
use crate::error::SendError;
use crate::ports::container::Shipment;

/// Size of the data frames files travel in.
const CHUNK: usize = 1 << 20;

/// Image files to ship: everything CRIU and the engine wrote except logs.
pub fn image_files(dir: &Path) -> Result<Vec<(String, u64)>, SendError> {
    let read = |source| SendError::Read {
        path: dir.display().to_string(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)?.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file()
            || name.ends_with(".log")
            || name.ends_with(".socket")
            || name.ends_with(".conf")
            || name == super::journal::JOURNAL
        {
            continue;
        }
        out.push((name, meta.len()));
    }
    out.sort();
    Ok(out)
}

impl SourceRun {
    async fn send_file(&mut self, path: &Path, size: u64) -> Result<(), SendError> {
        let read = |source| SendError::Read {
            path: path.display().to_string(),
            source,
        };
        let mut f = tokio::fs::File::open(path).await.map_err(read)?;
        let mut buf = vec![0u8; CHUNK];
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = f.read(&mut buf[..want]).await.map_err(read)?;
            if n == 0 {
                return Err(SendError::Shrank(path.display().to_string()));
            }
            self.send_data(&buf[..n]).await?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Sends every entry of the shipment, then `BundleDone`. Returns the bytes of file
    /// content.
    pub(crate) async fn send_shipment(&mut self, shipment: &Shipment) -> Result<u64, SendError> {
        let mut bytes = 0;
        for e in &shipment.entries {
            let size = e.content_len();
            self.send(&PeerRequest::BundleFile { entry: e.clone() })
                .await?;
            if size > 0 {
                self.send_file(&shipment.root.join(&e.path), size).await?;
                bytes += size;
            }
        }
        self.send(&PeerRequest::BundleDone).await?;
        Ok(bytes)
    }

    /// Sends the image files of the session's directory, then `ImagesDone`.
    pub(crate) async fn send_images(&mut self, pages_bytes: u64) -> Result<u64, SendError> {
        let dir = self.dir.clone();
        let mut bytes = 0;
        for (name, size) in image_files(&dir)? {
            self.send(&PeerRequest::ImageFile {
                name: name.clone(),
                size,
            })
            .await?;
            self.send_file(&dir.join(&name), size).await?;
            bytes += size;
        }
        self.send(&PeerRequest::ImagesDone { pages_bytes }).await?;
        Ok(bytes)
    }
}
