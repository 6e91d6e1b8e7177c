//! The file stream's I/O: open files by path, notice when a file was moved
//! away or deleted underneath us (logrotate, an operator), rotate by size.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::config::FsyncPolicy;

struct OpenFile {
    file: File,
    size: u64,
    identity: (u64, u64),
}

#[derive(Default)]
pub(super) struct Files {
    open: HashMap<PathBuf, OpenFile>,
}

impl Files {
    /// Appends `bytes` to `path` in one write, then applies the fsync policy.
    pub(super) fn append(
        &mut self,
        path: &Path,
        bytes: &[u8],
        fsync: FsyncPolicy,
        rotate_bytes: u64,
    ) -> std::io::Result<()> {
        let file = self.current(path)?;
        if let Err(error) = file.file.write_all(bytes).and_then(|()| match fsync {
            FsyncPolicy::Batch => file.file.sync_data(),
            FsyncPolicy::Never => Ok(()),
        }) {
            // A partial write may have happened; the retry appends again, and
            // readers see at most a duplicate line, never a lost one. Reopen
            // next time rather than trusting this handle.
            self.open.remove(path);
            return Err(error);
        }
        file.size += bytes.len() as u64;
        if rotate_bytes > 0 && file.size >= rotate_bytes {
            self.open.remove(path);
            let rotated = PathBuf::from(format!("{}.{}", path.display(), deskbus_spool::now_ms()));
            std::fs::rename(path, rotated)?;
        }
        Ok(())
    }

    /// The open file for `path`, reopened if the path now names another file
    /// (or none): what we hold must be what an operator sees at that path.
    fn current(&mut self, path: &Path) -> std::io::Result<&mut OpenFile> {
        let on_disk = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        let stale = match (self.open.get(path), on_disk) {
            (Some(open), Some(identity)) => open.identity != identity,
            (Some(_), None) => true,
            (None, _) => true,
        };
        if stale {
            self.open.remove(path);
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            let meta = file.metadata()?;
            self.open.insert(
                path.to_owned(),
                OpenFile {
                    size: meta.len(),
                    identity: (meta.dev(), meta.ino()),
                    file,
                },
            );
        }
        self.open
            .get_mut(path)
            .ok_or_else(|| std::io::Error::other("file vanished from the open set"))
    }
}
