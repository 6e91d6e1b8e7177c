use std::path::PathBuf;

use crate::config::walker::Table;

/// `[streams.X]` `type = "file"`
///
/// Appends one event per line to files on local disk: each payload, then a
/// newline unless the payload already ends with one (NDJSON with `lf`).
/// A crash in the middle of a write (`kill -9`, power loss) can leave one
/// incomplete line at the end of a file: deskbus ends it with a newline
/// when it starts again, and writes that event again, whole, since its
/// delivery was never recorded. Readers should skip a line they cannot
/// parse.
#[derive(Debug, Clone, PartialEq)]
pub struct FileConfig {
    /// The file to append to. `{queue}` is replaced by the use case's queue,
    /// e.g. `"./deskbus-out/{queue}.ndjson"`. Directories are created as needed.
    /// A queue that would leave the directory (holding `/`, `..` or a NUL)
    /// or is empty sends the event to dead letters. Required.
    pub path: PathBuf,
    /// When data is forced to disk: `"batch"` (default) fsyncs each batch
    /// before it counts as delivered (and, for a new file, its directory),
    /// so delivered events survive power loss;
    /// `"never"` leaves it to the operating system (survives a deskbus crash only).
    pub fsync: FsyncPolicy,
    /// Rotate the file once it holds this many bytes: it is renamed to
    /// `<path>.<unix milliseconds>` and a new file is started. 0 never
    /// rotates. Default 134217728 (128 MiB).
    pub rotate_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    Batch,
    Never,
}

impl FileConfig {
    pub(crate) fn from_table(t: &Table<'_, '_, '_>) -> Option<FileConfig> {
        let path = t.string("path");
        if path.is_none() && !t.has("path") {
            t.ctx
                .error(t.span.clone(), format!("[{}] needs `path`", t.name));
        }
        let fsync = t
            .parsed("fsync", |s| match s {
                "batch" => Ok(FsyncPolicy::Batch),
                "never" => Ok(FsyncPolicy::Never),
                other => Err(format!("{other:?} is not \"batch\" or \"never\"")),
            })
            .unwrap_or(FsyncPolicy::Batch);
        let rotate_bytes = t.integer("rotate_bytes", 0..=i64::MAX).unwrap_or(128 << 20) as u64;
        Some(FileConfig {
            path: PathBuf::from(path?.value),
            fsync,
            rotate_bytes,
        })
    }
}
