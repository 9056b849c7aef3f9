//! The filesystem side of the CLI: a model folder as [`ModelFiles`] (reads only the byte ranges
//! asked for; a `.gguf` file is read whole and converted to a folder in memory), and a directory as the pipeline's [`Store`] — every file a command writes goes
//! through it: written under a temporary name, synced, then renamed over the final name, so a kill
//! or a full disk leaves the old file or the new one, never a cut one.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bitnet_core::{CoreError, MemoryFiles, ModelFiles};
use bitnet_pipeline::{Store, StoreError};

use crate::error::CliError;

/// The files of one folder, or of the folder a GGUF file converts to.
pub struct DirFiles {
    dir: PathBuf,
    names: Vec<(String, u64)>,
    gguf: Option<MemoryFiles>,
}

/// Whether `path` names a GGUF model file.
pub fn is_gguf(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

impl DirFiles {
    pub fn open(dir: &Path) -> Result<Self, CliError> {
        if is_gguf(dir) {
            let bytes = std::fs::read(dir).map_err(|e| CliError::io(dir, e))?;
            let name = dir.display().to_string();
            let files = bitnet_core::gguf::import::to_hf_files(&name, &bytes)
                .map_err(|e| CliError::input(&name, e))?;
            let files = MemoryFiles(files);
            return Ok(DirFiles {
                dir: dir.to_path_buf(),
                names: files
                    .names()
                    .into_iter()
                    .map(|n| {
                        let size = files.size(&n).unwrap_or(0);
                        (n, size)
                    })
                    .collect(),
                gguf: Some(files),
            });
        }
        let entries = std::fs::read_dir(dir)
            .map_err(|e| CliError::io(dir, format!("cannot read the model folder: {e}")))?;
        let mut names = Vec::new();
        for entry in entries.flatten() {
            let meta = match entry.metadata() {
                Ok(m) if m.is_file() => m,
                _ => continue,
            };
            if let Some(name) = entry.file_name().to_str() {
                names.push((name.to_string(), meta.len()));
            }
        }
        names.sort();
        Ok(DirFiles {
            dir: dir.to_path_buf(),
            names,
            gguf: None,
        })
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl ModelFiles for DirFiles {
    fn names(&self) -> Vec<String> {
        self.names.iter().map(|(n, _)| n.clone()).collect()
    }
    fn size(&self, name: &str) -> Option<u64> {
        self.names.iter().find(|(n, _)| n == name).map(|(_, s)| *s)
    }
    async fn read_range(&self, name: &str, start: u64, end: u64) -> bitnet_core::Result<Vec<u8>> {
        if let Some(files) = &self.gguf {
            return files.read_range(name, start, end).await;
        }
        let io = |e: std::io::Error| CoreError::Invalid(format!("{}: {e}", self.path(name)));
        let mut f = File::open(self.dir.join(name)).map_err(io)?;
        f.seek(SeekFrom::Start(start)).map_err(io)?;
        let len = usize::try_from(end.saturating_sub(start)).map_err(|_| {
            CoreError::Invalid(format!(
                "{}: range {start}..{end} too large",
                self.path(name)
            ))
        })?;
        let mut buf = vec![0u8; len];
        f.read_exact(&mut buf).map_err(io)?;
        Ok(buf)
    }
}

/// Suffix of the temporary file a put writes before its rename.
const PARTIAL: &str = ".partial";

/// A directory as a store: key `a/b.json` is the file `ROOT/a/b.json`.
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// The store rooted at `root` (created on the first write).
    pub fn new(root: &Path) -> DirStore {
        DirStore {
            root: root.to_path_buf(),
        }
    }

    /// The store of the folder holding `file`, and the file's key in it.
    pub fn of_file(file: &Path) -> Result<(DirStore, String), CliError> {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| CliError::io(file, "not a file name"))?;
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Ok((DirStore::new(dir), name.to_string()))
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    fn err(&self, key: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::new(self.display(key), e)
    }

    fn parent_dir(&self, key: &str) -> Result<(), StoreError> {
        if let Some(dir) = self.path(key).parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.err(key, e))?;
        }
        Ok(())
    }

    fn walk(&self, dir: &Path, rel: &str, out: &mut Vec<String>) -> std::io::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let key = format!("{rel}{name}");
            if entry.file_type()?.is_dir() {
                self.walk(&entry.path(), &format!("{key}/"), out)?;
            } else if !name.ends_with(PARTIAL) {
                out.push(key);
            }
        }
        Ok(())
    }
}

impl Store for DirStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match std::fs::read(self.path(key)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(key, e)),
        }
    }

    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.parent_dir(key)?;
        let path = self.path(key);
        let mut tmp = path.clone().into_os_string();
        tmp.push(PARTIAL);
        let tmp = PathBuf::from(tmp);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.err(key, e)
        })
    }

    async fn append(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.parent_dir(key)?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(key))
            .map_err(|e| self.err(key, e))?;
        f.write_all(bytes)
            .and_then(|_| f.flush())
            .map_err(|e| self.err(key, e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // Only the folder the prefix names is walked.
        let folder = prefix.rfind('/').map_or("", |i| &prefix[..=i]);
        let mut out = Vec::new();
        self.walk(&self.root.join(folder), folder, &mut out)
            .map_err(|e| self.err(prefix, e))?;
        out.retain(|k| k.starts_with(prefix));
        out.sort();
        Ok(out)
    }

    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        match std::fs::remove_file(self.path(key)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(key, e)),
        }
    }

    fn display(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        match std::fs::metadata(self.path(key)) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(key, e)),
        }
    }

    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>, StoreError> {
        let read = || -> std::io::Result<Vec<u8>> {
            let mut f = File::open(self.path(key))?;
            f.seek(SeekFrom::Start(start))?;
            let mut buf = vec![0u8; end.saturating_sub(start) as usize];
            f.read_exact(&mut buf)?;
            Ok(buf)
        };
        read().map_err(|e| self.err(key, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_store_writes_atomically_lists_and_removes() {
        let root = std::env::temp_dir().join(format!("bitnet-dirstore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let s = DirStore::new(&root);
        pollster::block_on(async {
            s.put("train/checkpoint-4.safetensors", b"abc")
                .await
                .unwrap();
            s.put("train/checkpoint-4.safetensors", b"abcd")
                .await
                .unwrap();
            s.append("train/metrics.jsonl", b"1\n").await.unwrap();
            s.append("train/metrics.jsonl", b"2\n").await.unwrap();
            std::fs::write(root.join("train/x.json.partial"), b"cut").unwrap();
            assert_eq!(
                s.list("train/").await.unwrap(),
                ["train/checkpoint-4.safetensors", "train/metrics.jsonl"]
            );
            assert_eq!(
                s.get("train/metrics.jsonl").await.unwrap().unwrap(),
                b"1\n2\n"
            );
            assert_eq!(
                s.get("train/checkpoint-4.safetensors")
                    .await
                    .unwrap()
                    .unwrap(),
                b"abcd"
            );
            assert_eq!(s.get("none").await.unwrap(), None);
            assert_eq!(s.size("train/metrics.jsonl").await.unwrap(), Some(4));
            assert_eq!(s.size("train").await.unwrap(), None);
            assert_eq!(
                s.get_range("train/checkpoint-4.safetensors", 1, 3)
                    .await
                    .unwrap(),
                b"bc"
            );
            assert!(s.get_range("train/metrics.jsonl", 2, 9).await.is_err());
            s.remove("train/metrics.jsonl").await.unwrap();
            s.remove("train/metrics.jsonl").await.unwrap();
            assert_eq!(s.list("").await.unwrap().len(), 1);
        });
        let _ = std::fs::remove_dir_all(&root);
    }
}
