//! `type = "file"`: NDJSON lines appended to local files.

mod config;
mod writer;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub use config::{FileConfig, FsyncPolicy};
use writer::Files;

use super::{BoxFuture, Delivery, DeliveryError, Stream, all_failed};

pub(crate) struct FileStream {
    config: FileConfig,
    files: Arc<Mutex<Files>>,
}

impl FileStream {
    pub(crate) fn new(config: FileConfig) -> FileStream {
        FileStream {
            config,
            files: Arc::default(),
        }
    }

    fn path_for(&self, queue: &str) -> Result<PathBuf, DeliveryError> {
        check_queue(queue).map_err(DeliveryError::permanent)?;
        Ok(PathBuf::from(
            self.config.path.to_string_lossy().replace("{queue}", queue),
        ))
    }
}

/// A queue names a file: it can come from event data, so it must not
/// escape the directory, and an empty one would make the path a directory
/// (`out/{queue}`) or move the file up (`{queue}/events.ndjson` is
/// `/events.ndjson`).
pub(crate) fn check_queue(queue: &str) -> Result<(), String> {
    if queue.is_empty() {
        return Err("the queue is empty and cannot be a file name".into());
    }
    if queue.contains(['/', '\\', '\0']) || queue == "." || queue.contains("..") {
        return Err(format!(
            "queue {queue:?} cannot be a file name (holds '/', '\\', '..' or NUL)"
        ));
    }
    Ok(())
}

impl Stream for FileStream {
    fn deliver<'a>(
        &'a self,
        batch: &'a [Delivery<'a>],
    ) -> BoxFuture<'a, Vec<Result<(), DeliveryError>>> {
        Box::pin(async move {
            let mut results: Vec<Result<(), DeliveryError>> = vec![Ok(()); batch.len()];
            // One buffer (one write) per file, in batch order.
            let mut by_path: BTreeMap<PathBuf, (Vec<u8>, Vec<usize>)> = BTreeMap::new();
            for (i, delivery) in batch.iter().enumerate() {
                match self.path_for(&delivery.queue) {
                    Ok(path) => {
                        let (bytes, members) = by_path.entry(path).or_default();
                        bytes.extend_from_slice(&delivery.payload);
                        // NDJSON payloads carry their own terminator.
                        if delivery.payload.last() != Some(&b'\n') {
                            bytes.push(b'\n');
                        }
                        members.push(i);
                    }
                    Err(error) => results[i] = Err(error),
                }
            }
            let files = self.files.clone();
            let (fsync, rotate) = (self.config.fsync, self.config.rotate_bytes);
            let written = tokio::task::spawn_blocking(move || {
                let mut files = files.lock().unwrap_or_else(|p| p.into_inner());
                by_path
                    .into_iter()
                    .map(|(path, (bytes, members))| {
                        let outcome = files
                            .append(&path, &bytes, fsync, rotate)
                            .map_err(|e| format!("cannot append to {}: {e}", path.display()));
                        (members, outcome)
                    })
                    .collect::<Vec<_>>()
            })
            .await;
            match written {
                Ok(written) => {
                    for (members, outcome) in written {
                        if let Err(reason) = outcome {
                            for i in members {
                                results[i] = Err(DeliveryError::retryable(reason.clone()));
                            }
                        }
                    }
                    results
                }
                Err(join) => all_failed(
                    batch.len(),
                    DeliveryError::retryable(format!("file writer failed: {join}")),
                ),
            }
        })
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let path = self
                .config
                .path
                .to_string_lossy()
                .replace("{queue}", "healthcheck");
            let dir = std::path::Path::new(&path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| p.to_owned())
                .unwrap_or_else(|| PathBuf::from("."));
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            tempfile_in(&dir).map_err(|e| format!("cannot write in {}: {e}", dir.display()))
        })
    }
}

fn tempfile_in(dir: &std::path::Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".deskbus-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery<'a>(queue: &'a str, payload: &'a str) -> Delivery<'a> {
        Delivery::for_test(queue, payload.as_bytes())
    }

    fn stream(dir: &std::path::Path, rotate_bytes: u64) -> FileStream {
        FileStream::new(FileConfig {
            path: dir.join("out/{queue}.ndjson"),
            fsync: FsyncPolicy::Batch,
            rotate_bytes,
        })
    }

    #[tokio::test]
    async fn appends_lines_per_queue_and_refuses_escaping_queues() {
        let dir = tempfile::tempdir().unwrap();
        let s = stream(dir.path(), 0);
        let batch = [
            delivery("a", "1"),
            delivery("b", "2"),
            delivery("a", "3"),
            delivery("../x", "4"),
            delivery("", "5"),
        ];
        let results = s.deliver(&batch).await;
        assert!(results[..3].iter().all(Result::is_ok));
        assert!(matches!(results[3], Err(DeliveryError::Permanent { .. })));
        assert!(
            matches!(&results[4], Err(DeliveryError::Permanent { reason }) if reason.contains("empty")),
            "{results:?}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out/a.ndjson")).unwrap(),
            "1\n3\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out/b.ndjson")).unwrap(),
            "2\n"
        );
    }

    #[tokio::test]
    async fn reopens_a_file_moved_away_and_rotates_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let s = stream(dir.path(), 0);
        s.deliver(&[delivery("a", "1")]).await;
        std::fs::rename(dir.path().join("out/a.ndjson"), dir.path().join("moved")).unwrap();
        s.deliver(&[delivery("a", "2")]).await;
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out/a.ndjson")).unwrap(),
            "2\n"
        );

        let s = stream(dir.path(), 4);
        s.deliver(&[delivery("r", "12"), delivery("r", "34")]).await;
        s.deliver(&[delivery("r", "5")]).await;
        let names: Vec<String> = std::fs::read_dir(dir.path().join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("r.ndjson"))
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out/r.ndjson")).unwrap(),
            "5\n"
        );
    }

    /// A file truncated under us (copytruncate rotation) is measured as it
    /// is, not as we left it: no early rotation, nothing cut wrongly.
    #[tokio::test]
    async fn a_file_truncated_underneath_keeps_its_true_size() {
        let dir = tempfile::tempdir().unwrap();
        let s = stream(dir.path(), 4);
        assert!(s.deliver(&[delivery("r", "12")]).await[0].is_ok());
        let path = dir.path().join("out/r.ndjson");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        assert!(s.deliver(&[delivery("r", "3")]).await[0].is_ok());
        assert!(s.deliver(&[delivery("r", "4")]).await[0].is_ok());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "3\n4\n");
        let files = std::fs::read_dir(dir.path().join("out")).unwrap().count();
        assert_eq!(files, 1, "rotated early");
    }

    #[tokio::test]
    async fn a_torn_last_line_is_ended_and_handles_stay_bounded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        std::fs::write(dir.path().join("out/t.ndjson"), b"{\"torn").unwrap();
        let s = stream(dir.path(), 0);
        assert!(s.deliver(&[delivery("t", "x")]).await[0].is_ok());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out/t.ndjson")).unwrap(),
            "{\"torn\nx\n"
        );
        let queues: Vec<String> = (0..200).map(|i| format!("q{i}")).collect();
        let many: Vec<Delivery> = queues.iter().map(|q| delivery(q, "y")).collect();
        assert!(s.deliver(&many).await.iter().all(Result::is_ok));
        assert!(s.files.lock().unwrap().open_count() <= 64);
    }

    #[tokio::test]
    async fn unwritable_directory_is_retryable() {
        let dir = tempfile::tempdir().unwrap();
        // A regular file where the directory should be: fails even for root.
        std::fs::write(dir.path().join("out"), b"").unwrap();
        let results = stream(dir.path(), 0).deliver(&[delivery("a", "1")]).await;
        assert!(
            matches!(results[0], Err(DeliveryError::Retryable { .. })),
            "{results:?}"
        );
    }
}
