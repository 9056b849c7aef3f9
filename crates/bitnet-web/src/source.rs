//! Where the model comes from: the built-in demo model (built in the wasm) or the user's picked
//! files, read in place. Either is a [`ModelFiles`], so the pipeline cannot tell them apart.

use bitnet_core::Result;
use bitnet_core::model::{MemoryFiles, ModelFiles};

use crate::files::BrowserFiles;

pub enum ModelSource {
    Demo(MemoryFiles),
    Files(BrowserFiles),
    /// A `.gguf` file (its name), read whole and converted to a folder in memory.
    Gguf(String, MemoryFiles),
}

/// What identifies a model source across a reload: a resumed run must see the same files.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceId {
    pub name: String,
    pub demo: bool,
    /// Every file's name and size.
    pub files: Vec<(String, u64)>,
}

impl ModelSource {
    /// The picked files: one `.gguf` file is converted to a folder in memory (every tensor
    /// dequantized, the tokenizer rebuilt); anything else is a folder's files, read in place.
    pub async fn of_files(files: Vec<web_sys::File>) -> std::result::Result<ModelSource, String> {
        let gguf = files
            .iter()
            .find(|f| f.name().to_ascii_lowercase().ends_with(".gguf"));
        let Some(file) = gguf else {
            return Ok(ModelSource::Files(BrowserFiles::of(files)));
        };
        let name = file.name();
        let bytes = BrowserFiles::read_file(file)
            .await
            .map_err(|e| e.to_string())?;
        let hf =
            bitnet_core::gguf::import::to_hf_files(&name, &bytes).map_err(|e| e.to_string())?;
        Ok(ModelSource::Gguf(name, MemoryFiles(hf)))
    }

    pub fn demo() -> std::result::Result<ModelSource, String> {
        bitnet_pipeline::demo::demo_model()
            .map(ModelSource::Demo)
            .map_err(|e| e.to_string())
    }

    /// How the source is named in messages and in the outputs' manifests.
    pub fn name(&self) -> String {
        match self {
            ModelSource::Demo(_) => "the demo model".to_string(),
            ModelSource::Files(f) => f.folder_name(),
            ModelSource::Gguf(name, _) => name.clone(),
        }
    }

    pub fn id(&self) -> SourceId {
        let mut files: Vec<(String, u64)> = self
            .names()
            .into_iter()
            .map(|n| {
                let size = self.size(&n).unwrap_or_default();
                (n, size)
            })
            .collect();
        files.sort();
        SourceId {
            name: self.name(),
            demo: matches!(self, ModelSource::Demo(_)),
            files,
        }
    }
}

impl ModelFiles for ModelSource {
    fn names(&self) -> Vec<String> {
        match self {
            ModelSource::Demo(m) => m.names(),
            ModelSource::Files(f) => f.names(),
            ModelSource::Gguf(_, m) => m.names(),
        }
    }
    fn size(&self, name: &str) -> Option<u64> {
        match self {
            ModelSource::Demo(m) => m.size(name),
            ModelSource::Files(f) => f.size(name),
            ModelSource::Gguf(_, m) => m.size(name),
        }
    }
    async fn read_range(&self, name: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        match self {
            ModelSource::Demo(m) => m.read_range(name, start, end).await,
            ModelSource::Files(f) => f.read_range(name, start, end).await,
            ModelSource::Gguf(_, m) => m.read_range(name, start, end).await,
        }
    }
}
