//! Where the model comes from: the built-in demo model (built in the wasm) or the user's picked
//! files, read in place. Either is a [`ModelFiles`], so the pipeline cannot tell them apart.

use bitnet_core::Result;
use bitnet_core::model::{MemoryFiles, ModelFiles};

use crate::files::BrowserFiles;

pub enum ModelSource {
    Demo(MemoryFiles),
    Files(BrowserFiles),
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
        }
    }
    fn size(&self, name: &str) -> Option<u64> {
        match self {
            ModelSource::Demo(m) => m.size(name),
            ModelSource::Files(f) => f.size(name),
        }
    }
    async fn read_range(&self, name: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        match self {
            ModelSource::Demo(m) => m.read_range(name, start, end).await,
            ModelSource::Files(f) => f.read_range(name, start, end).await,
        }
    }
}
