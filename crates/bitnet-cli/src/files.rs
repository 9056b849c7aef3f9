//! A model folder on disk as [`ModelFiles`]: reads only the byte ranges asked for.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bitnet_core::{CoreError, ModelFiles, Result};

pub struct DirFiles {
    dir: PathBuf,
    names: Vec<(String, u64)>,
}

impl DirFiles {
    pub fn open(dir: &Path) -> std::result::Result<Self, String> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: cannot read the model folder: {e}", dir.display()))?;
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
    async fn read_range(&self, name: &str, start: u64, end: u64) -> Result<Vec<u8>> {
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

/// An I/O error naming the path.
pub fn io(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a kill leaves either the old
/// file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::result::Result<(), String> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}
