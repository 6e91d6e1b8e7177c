//! The file stream's I/O: open files by path, notice when a file was moved
//! away or deleted underneath us (logrotate, an operator), rotate by size.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::config::FsyncPolicy;

struct OpenFile {
    file: File,
    size: u64,
    identity: (u64, u64),
    /// Directories whose entries changed when this file was opened (it was
    /// created, or so were directories above it): fsync'd after the first
    /// synced write, since a file's fsync does not make its name durable.
    unsynced_dirs: Vec<PathBuf>,
}

#[derive(Default)]
pub(super) struct Files {
    open: HashMap<PathBuf, OpenFile>,
    /// Directories a file dropped after a failed write still owed a sync:
    /// when it is opened again it exists, but its name may not be durable.
    owed_dirs: HashMap<PathBuf, Vec<PathBuf>>,
}

/// Most files kept open at once; past it every handle is closed, so a queue
/// templated per ticket cannot exhaust the process's file descriptors.
const MAX_OPEN: usize = 64;

impl Files {
    /// Appends `bytes` to `path` in one write, then applies the fsync policy.
    /// A file that reached `rotate_bytes` is rotated first, so a rotation
    /// failure never leaves a batch half reported.
    pub(super) fn append(
        &mut self,
        path: &Path,
        bytes: &[u8],
        fsync: FsyncPolicy,
        rotate_bytes: u64,
    ) -> std::io::Result<()> {
        if rotate_bytes > 0 && self.current(path)?.size >= rotate_bytes {
            self.open.remove(path);
            std::fs::rename(path, rotated_name(path))?;
        }
        let file = self.current(path)?;
        // The file's own size, not ours: someone may have truncated it
        // (copytruncate rotation), and a failed write must cut only what
        // it added.
        let before = file.file.metadata()?.len();
        let written = file.file.write_all(bytes).and_then(|()| match fsync {
            FsyncPolicy::Batch => {
                file.file.sync_data()?;
                for dir in &file.unsynced_dirs {
                    File::open(dir)?.sync_all()?;
                }
                file.unsynced_dirs.clear();
                // Deleted between our check of the path and the write: the
                // lines went to a file nobody can read. Not delivered.
                if file.file.metadata()?.nlink() == 0 {
                    return Err(std::io::Error::other(
                        "the file was deleted while it was written",
                    ));
                }
                Ok(())
            }
            FsyncPolicy::Never => Ok(()),
        });
        if let Err(error) = written {
            // Cut off whatever part of the batch made it, so the retry's
            // first line is not glued to a fragment. If even that fails, the
            // reopen below starts the next write on a fresh line.
            let _ = file.file.set_len(before);
            if let Some(dropped) = self.open.remove(path)
                && !dropped.unsynced_dirs.is_empty()
            {
                self.owed_dirs
                    .insert(path.to_owned(), dropped.unsynced_dirs);
            }
            return Err(error);
        }
        file.size = before + bytes.len() as u64;
        Ok(())
    }

    #[cfg(test)]
    pub(super) fn open_count(&self) -> usize {
        self.open.len()
    }

    /// The open file for `path`, reopened if the path now names another file
    /// (or none): what we hold must be what an operator sees at that path.
    fn current(&mut self, path: &Path) -> std::io::Result<&mut OpenFile> {
        let on_disk = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        let stale = match (self.open.get(path), on_disk) {
            (Some(open), Some(identity)) => open.identity != identity,
            _ => true,
        };
        if stale {
            self.open.remove(path);
            if self.open.len() >= MAX_OPEN {
                self.open.clear();
            }
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let mut unsynced_dirs = self.owed_dirs.remove(path).unwrap_or_default();
            if on_disk.is_none() {
                // The new file's directory, and the parent of each directory
                // created for it.
                unsynced_dirs.push(parent.to_owned());
                let mut dir = parent;
                while !dir.exists() {
                    let Some(up) = dir.parent() else { break };
                    let up = if up.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        up
                    };
                    unsynced_dirs.push(up.to_owned());
                    dir = up;
                }
                std::fs::create_dir_all(parent)?;
            }
            let mut file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(path)?;
            let meta = file.metadata()?;
            let mut size = meta.len();
            // A torn last line (a crash mid-write): end it, so the next
            // record starts on a line of its own.
            let mut last = [0u8; 1];
            if size > 0 && file.read_at(&mut last, size - 1)? == 1 && last[0] != b'\n' {
                file.write_all(b"\n")?;
                size += 1;
            }
            self.open.insert(
                path.to_owned(),
                OpenFile {
                    size,
                    identity: (meta.dev(), meta.ino()),
                    file,
                    unsynced_dirs,
                },
            );
        }
        self.open
            .get_mut(path)
            .ok_or_else(|| std::io::Error::other("file vanished from the open set"))
    }
}

/// `<path>.<unix ms>`, with a counter when that name is taken: a rotation
/// never overwrites an earlier one.
fn rotated_name(path: &Path) -> PathBuf {
    let base = format!("{}.{}", path.display(), deskbus_spool::now_ms());
    let mut candidate = PathBuf::from(&base);
    let mut n = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new file's name is durable only once its directory is synced, and
    /// so is each directory created for it: all are synced after the first
    /// synced write, and an existing file costs no directory sync.
    #[test]
    fn a_new_file_syncs_its_directory_and_those_created_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/x.ndjson");
        let mut files = Files::default();
        let unsynced = files.current(&path).unwrap().unsynced_dirs.clone();
        assert_eq!(
            unsynced,
            [
                dir.path().join("a/b"),
                dir.path().join("a"),
                dir.path().to_owned()
            ]
        );
        files.append(&path, b"1\n", FsyncPolicy::Batch, 0).unwrap();
        assert!(files.current(&path).unwrap().unsynced_dirs.is_empty());

        let mut again = Files::default();
        assert!(again.current(&path).unwrap().unsynced_dirs.is_empty());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
    }
}
