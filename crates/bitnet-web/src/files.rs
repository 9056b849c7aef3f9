//! The user's picked files as [`ModelFiles`]: byte ranges are read from the File objects with
//! `Blob.slice().arrayBuffer()`, so nothing is uploaded and only what is needed is read.

use bitnet_core::{CoreError, ModelFiles, Result};
use wasm_bindgen_futures::JsFuture;

pub struct BrowserFiles {
    files: Vec<(String, web_sys::File)>,
    /// The picked folder's name, when a folder was picked.
    folder: Option<String>,
}

impl BrowserFiles {
    /// Keeps the base name of each file (a folder pick gives `folder/config.json`).
    pub fn new(list: &web_sys::FileList) -> Self {
        let mut files = Vec::new();
        for i in 0..list.length() {
            if let Some(f) = list.get(i) {
                files.push(f);
            }
        }
        Self::of(files)
    }

    /// The files of a pick or a drop (a folder's files carry `folder/name` as relative path).
    pub fn of(list: Vec<web_sys::File>) -> Self {
        let mut files = Vec::new();
        let mut folder = None;
        for f in list {
            let name = f.name();
            let base = name.rsplit('/').next().unwrap_or(&name).to_string();
            let rel = js_sys::Reflect::get(&f, &"webkitRelativePath".into())
                .ok()
                .and_then(|v| v.as_string())
                .unwrap_or_default();
            if let Some((dir, _)) = rel.split_once('/') {
                folder.get_or_insert_with(|| dir.to_string());
            }
            files.push((base, f));
        }
        BrowserFiles { files, folder }
    }

    /// The folder's name, or the files' names.
    pub fn folder_name(&self) -> String {
        match &self.folder {
            Some(f) => f.clone(),
            None => {
                let names: Vec<&str> = self.files.iter().map(|(n, _)| n.as_str()).collect();
                names.join(", ")
            }
        }
    }

    /// The whole of a file the user picked (a packed model, a JSONL dataset).
    pub async fn read_file(file: &web_sys::File) -> Result<Vec<u8>> {
        let buf = JsFuture::from(file.array_buffer()).await.map_err(|_| {
            CoreError::Invalid(format!(
                "{}: the browser refused to read the file",
                file.name()
            ))
        })?;
        Ok(js_sys::Uint8Array::new(&buf).to_vec())
    }

    fn file(&self, name: &str) -> Option<&web_sys::File> {
        self.files.iter().find(|(n, _)| n == name).map(|(_, f)| f)
    }
}

impl ModelFiles for BrowserFiles {
    fn names(&self) -> Vec<String> {
        self.files.iter().map(|(n, _)| n.clone()).collect()
    }
    fn size(&self, name: &str) -> Option<u64> {
        self.file(name).map(|f| f.size() as u64)
    }
    async fn read_range(&self, name: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        let err = |what: &str| {
            CoreError::Invalid(format!("{name}: cannot read bytes {start}..{end}: {what}"))
        };
        let f = self
            .file(name)
            .ok_or_else(|| CoreError::MissingFile(name.to_string()))?;
        let blob = f
            .slice_with_f64_and_f64(start as f64, end as f64)
            .map_err(|_| err("slice failed"))?;
        let buf = JsFuture::from(blob.array_buffer())
            .await
            .map_err(|_| err("the browser refused to read the file"))?;
        Ok(js_sys::Uint8Array::new(&buf).to_vec())
    }
}
