//! Where a run reads and writes: the [`Store`] trait (get, atomic put, append, list, remove by
//! key), an in-memory store for tests and in-page runs, and a prefixed view so that one stage of a
//! run (training under `train/`) writes into its own folder of a larger store. The CLI implements
//! it on a directory (temporary name, fsync, rename) and the app on the browser's Origin Private
//! File System, so a checkpoint written in a tab survives a reload.
//!
//! Keys are relative paths with `/` separators (`train/checkpoint-8.safetensors`).

use std::cell::RefCell;
use std::collections::BTreeMap;

use bitnet_core::model::ModelFiles;
use bitnet_core::{CoreError, Result as CoreResult};

/// A failed store operation, naming what it touched as the user sees it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {message}")]
pub struct StoreError {
    /// The key as [`Store::display`] shows it (a path, an OPFS name).
    pub what: String,
    pub message: String,
}

impl StoreError {
    pub fn new(what: impl Into<String>, message: impl std::fmt::Display) -> StoreError {
        StoreError {
            what: what.into(),
            message: message.to_string(),
        }
    }
}

/// Everything a run reads and writes, by key.
// `async fn` in a public trait: the futures are !Send on wasm anyway, and no caller needs Send.
#[allow(async_fn_in_trait)]
pub trait Store {
    /// The bytes under `key`; None when there are none.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Replaces `key` atomically: a reader (or a run after a crash) sees the old bytes or the new,
    /// never a part.
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// Appends to `key`, creating it when missing.
    async fn append(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// Every key that starts with `prefix` (`""`: all; `"train/"`: one folder), sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Removes `key`; removing a missing key is not an error.
    async fn remove(&self, key: &str) -> Result<(), StoreError>;
    /// How `key` is named to the user (a path on disk, `opfs:run/data.jsonl`).
    fn display(&self, key: &str) -> String;

    /// Whether `key` holds bytes.
    async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.size(key).await?.is_some())
    }

    /// The size in bytes of `key`; None when there is none. Stores that can tell without reading
    /// the bytes override it.
    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.get(key).await?.map(|b| b.len() as u64))
    }

    /// Bytes `start..end` of `key` (a tensor of a model kept in the store). Stores that can read a
    /// part of a file override it, so that loading a model never holds a whole weights file.
    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>, StoreError> {
        let bytes = self
            .get(key)
            .await?
            .ok_or_else(|| StoreError::new(self.display(key), "missing"))?;
        bytes
            .get(start as usize..end as usize)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                StoreError::new(
                    self.display(key),
                    format!("range {start}..{end} is beyond its {} bytes", bytes.len()),
                )
            })
    }
}

/// A store held in memory (tests; a run in a page that keeps nothing).
#[derive(Debug, Default)]
pub struct MemoryStore {
    files: RefCell<BTreeMap<String, Vec<u8>>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
    /// Every key and its bytes.
    pub fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        self.files.borrow().clone()
    }
}

impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.files.borrow().get(key).cloned())
    }
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.files
            .borrow_mut()
            .insert(key.to_string(), bytes.to_vec());
        Ok(())
    }
    async fn append(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.files
            .borrow_mut()
            .entry(key.to_string())
            .or_default()
            .extend_from_slice(bytes);
        Ok(())
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .files
            .borrow()
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.files.borrow_mut().remove(key);
        Ok(())
    }
    fn display(&self, key: &str) -> String {
        format!("memory:{key}")
    }
    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.files.borrow().get(key).map(|b| b.len() as u64))
    }
}

/// The keys of `inner` under `prefix` (which ends with `/`), seen without it.
pub struct Prefixed<'a, S: Store> {
    inner: &'a S,
    prefix: String,
}

impl<'a, S: Store> Prefixed<'a, S> {
    pub fn new(inner: &'a S, folder: &str) -> Self {
        let mut prefix = folder.trim_end_matches('/').to_string();
        prefix.push('/');
        Prefixed { inner, prefix }
    }
    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

impl<S: Store> Store for Prefixed<'_, S> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(&self.key(key)).await
    }
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.put(&self.key(key), bytes).await
    }
    async fn append(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.append(&self.key(key), bytes).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let all = self.inner.list(&self.key(prefix)).await?;
        Ok(all
            .into_iter()
            .filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_string))
            .collect())
    }
    async fn remove(&self, key: &str) -> Result<(), StoreError> {
        self.inner.remove(&self.key(key)).await
    }
    fn display(&self, key: &str) -> String {
        self.inner.display(&self.key(key))
    }
    async fn size(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.inner.size(&self.key(key)).await
    }
    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Vec<u8>, StoreError> {
        self.inner.get_range(&self.key(key), start, end).await
    }
}

/// The files of one folder of a store, as [`ModelFiles`] (a model a run wrote, such as the demo
/// model, loads like any other). The folder's listing and sizes are read once when it is opened.
pub struct StoreFiles<'a, S: Store> {
    store: &'a S,
    folder: String,
    sizes: BTreeMap<String, u64>,
}

impl<'a, S: Store> StoreFiles<'a, S> {
    /// The files directly under `folder` ("" for the store's root).
    pub async fn open(store: &'a S, folder: &str) -> Result<StoreFiles<'a, S>, StoreError> {
        let prefix = if folder.is_empty() {
            String::new()
        } else {
            format!("{}/", folder.trim_end_matches('/'))
        };
        let mut sizes = BTreeMap::new();
        for key in store.list(&prefix).await? {
            let name = &key[prefix.len()..];
            if name.contains('/') {
                continue;
            }
            if let Some(n) = store.size(&key).await? {
                sizes.insert(name.to_string(), n);
            }
        }
        Ok(StoreFiles {
            store,
            folder: prefix,
            sizes,
        })
    }
}

impl<S: Store> ModelFiles for StoreFiles<'_, S> {
    fn names(&self) -> Vec<String> {
        self.sizes.keys().cloned().collect()
    }
    fn size(&self, name: &str) -> Option<u64> {
        self.sizes.get(name).copied()
    }
    async fn read_range(&self, name: &str, start: u64, end: u64) -> CoreResult<Vec<u8>> {
        let key = format!("{}{name}", self.folder);
        self.store
            .get_range(&key, start, end)
            .await
            .map_err(|e| CoreError::Invalid(e.to_string()))
    }
}

/// The files under `folder/` of `store` as one ZIP archive (stored), named from the folder on
/// (`train/hf` gives `hf/config.json`, …), sorted.
pub async fn zip_folder<S: Store>(store: &S, folder: &str) -> crate::Result<Vec<u8>> {
    let folder = folder.trim_end_matches('/');
    let prefix = format!("{folder}/");
    let parent = folder.rfind('/').map_or(0, |i| i + 1);
    let mut keys = store.list(&prefix).await?;
    keys.sort();
    if keys.is_empty() {
        return Err(crate::PipelineError::Invalid(format!(
            "{} holds no files",
            store.display(folder)
        )));
    }
    let mut files = Vec::with_capacity(keys.len());
    for key in keys {
        let bytes = store.get(&key).await?.unwrap_or_default();
        files.push((key[parent..].to_string(), bytes));
    }
    bitnet_core::zip::store_zip(&files).map_err(|e| crate::PipelineError::input(folder, e))
}
