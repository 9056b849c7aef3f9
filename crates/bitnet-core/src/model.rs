//! Reading a Hugging Face model folder through the [`ModelFiles`] trait: `config.json`,
//! `tokenizer.json` and the weights, single-file or sharded (`model.safetensors.index.json`).
//! Only headers are read up front; tensor data is read on demand, so inspecting a large model in the
//! browser does not pull gigabytes into memory. Every tensor the config implies is checked for
//! presence, floating-point dtype and shape.

use std::collections::BTreeMap;

use crate::config::ModelConfig;
use crate::cpu::model::{extra_norm_width, extra_norms, post_attn_norm_name, subln_names};
use crate::error::{CoreError, Result};
use crate::params::{ParamSpec, Role, is_ignorable_extra, param_table};
use crate::safetensors::{Dtype, Header, TensorInfo, decode_f32};

pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const INDEX_FILE: &str = "model.safetensors.index.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// A set of named files (a folder on disk, or File objects picked in the browser). Names are base
/// names (`config.json`, `model-00001-of-00002.safetensors`).
// `async fn` in a public trait: the futures are !Send on wasm anyway, and no caller needs Send.
#[allow(async_fn_in_trait)]
pub trait ModelFiles {
    /// Names of every file in the set.
    fn names(&self) -> Vec<String>;
    /// Size in bytes of a file, None when it is not in the set.
    fn size(&self, name: &str) -> Option<u64>;
    /// Bytes `start..end` of a file.
    async fn read_range(&self, name: &str, start: u64, end: u64) -> Result<Vec<u8>>;

    /// A whole file.
    async fn read_all(&self, name: &str) -> Result<Vec<u8>> {
        let len = self
            .size(name)
            .ok_or_else(|| CoreError::MissingFile(name.to_string()))?;
        self.read_range(name, 0, len).await
    }
}

/// Files held in memory (tests, and small models already read).
#[derive(Debug, Default, Clone)]
pub struct MemoryFiles(pub BTreeMap<String, Vec<u8>>);

impl ModelFiles for MemoryFiles {
    fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
    fn size(&self, name: &str) -> Option<u64> {
        self.0.get(name).map(|b| b.len() as u64)
    }
    async fn read_range(&self, name: &str, start: u64, end: u64) -> Result<Vec<u8>> {
        let b = self
            .0
            .get(name)
            .ok_or_else(|| CoreError::MissingFile(name.to_string()))?;
        b.get(start as usize..end as usize)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                CoreError::Invalid(format!(
                    "{name}: range {start}..{end} is beyond its {} bytes",
                    b.len()
                ))
            })
    }
}

/// Where one parameter lives.
#[derive(Debug, Clone)]
pub struct TensorLocation {
    pub spec: ParamSpec,
    /// Index into [`Model::shards`].
    pub shard: usize,
    pub info: TensorInfo,
}

/// One weights file and its parsed header.
#[derive(Debug, Clone)]
pub struct Shard {
    pub file: String,
    pub header: Header,
}

/// A model whose config, tokenizer and weight headers have been read and checked.
#[derive(Debug, Clone)]
pub struct Model {
    pub config: ModelConfig,
    /// `config.json` as the user gave it (embedded verbatim in packed files).
    pub config_json: String,
    pub tokenizer_json: Option<Vec<u8>>,
    pub shards: Vec<Shard>,
    /// Every parameter of the table, in table order.
    pub tensors: Vec<TensorLocation>,
}

impl Model {
    /// Reads config, tokenizer and safetensors headers, and checks every tensor against the config.
    pub async fn open<F: ModelFiles>(files: &F) -> Result<Model> {
        let config_bytes = files.read_all(CONFIG_FILE).await.map_err(|e| match e {
            CoreError::MissingFile(_) => CoreError::MissingFile(format!(
                "{CONFIG_FILE} (a model folder needs config.json and its .safetensors weights)"
            )),
            other => other,
        })?;
        let config = ModelConfig::from_json_bytes(CONFIG_FILE, &config_bytes)?;
        let config_json = String::from_utf8(config_bytes)
            .map_err(|_| CoreError::config(CONFIG_FILE, "not UTF-8 text"))?;
        let tokenizer_json = match files.size(TOKENIZER_FILE) {
            Some(_) => Some(files.read_all(TOKENIZER_FILE).await?),
            None => None,
        };

        let shard_files = shard_files(files).await?;
        let mut shards = Vec::new();
        for file in &shard_files {
            shards.push(Shard {
                file: file.clone(),
                header: read_header(files, file).await?,
            });
        }
        let tensors = locate(&config, &shards)?;
        Ok(Model {
            config,
            config_json,
            tokenizer_json,
            shards,
            tensors,
        })
    }

    /// The raw bytes of a parameter as stored.
    pub async fn tensor_bytes<F: ModelFiles>(
        &self,
        files: &F,
        loc: &TensorLocation,
    ) -> Result<Vec<u8>> {
        let shard = &self.shards[loc.shard];
        let start = shard.header.data_start + loc.info.begin;
        let end = shard.header.data_start + loc.info.end;
        files.read_range(&shard.file, start, end).await
    }

    /// A parameter as f32.
    pub async fn tensor_f32<F: ModelFiles>(
        &self,
        files: &F,
        loc: &TensorLocation,
    ) -> Result<Vec<f32>> {
        let bytes = self.tensor_bytes(files, loc).await?;
        decode_f32(&self.shards[loc.shard].file, &loc.info, &bytes)
    }

    /// Every parameter as f32, by Hugging Face name.
    pub async fn all_f32<F: ModelFiles>(&self, files: &F) -> Result<BTreeMap<String, Vec<f32>>> {
        let mut out = BTreeMap::new();
        for loc in &self.tensors {
            out.insert(loc.spec.name.clone(), self.tensor_f32(files, loc).await?);
        }
        Ok(out)
    }

    /// Total bytes of all weight files' data sections.
    pub fn weight_bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.header.data_len).sum()
    }

    /// The distinct dtypes of the stored parameters.
    pub fn dtypes(&self) -> Vec<&'static str> {
        let mut d: Vec<&'static str> = self.tensors.iter().map(|t| t.info.dtype.name()).collect();
        d.sort_unstable();
        d.dedup();
        d
    }
}

/// Reads and validates one safetensors header.
pub async fn read_header<F: ModelFiles>(files: &F, file: &str) -> Result<Header> {
    let len = files
        .size(file)
        .ok_or_else(|| CoreError::MissingFile(file.to_string()))?;
    let first8 = files.read_range(file, 0, len.min(8)).await?;
    let header_len = Header::header_len(file, &first8, len)? as u64;
    let bytes = files.read_range(file, 0, 8 + header_len).await?;
    Header::parse(file, &bytes, len)
}

/// The weight files: from the index when there is one, else `model.safetensors`, else every
/// `.safetensors` file.
async fn shard_files<F: ModelFiles>(files: &F) -> Result<Vec<String>> {
    if files.size(INDEX_FILE).is_some() {
        let bytes = files.read_all(INDEX_FILE).await?;
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| CoreError::json(INDEX_FILE, e))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| CoreError::config(INDEX_FILE, "no `weight_map` object"))?;
        let mut names: Vec<String> = Vec::new();
        for (tensor, file) in map {
            let f = file.as_str().ok_or_else(|| {
                CoreError::config(
                    INDEX_FILE,
                    format!("weight_map entry `{tensor}` is not a file name"),
                )
            })?;
            if f.contains(['/', '\\']) || f == ".." || f == "." {
                return Err(CoreError::config(
                    INDEX_FILE,
                    format!(
                        "weight_map entry `{tensor}` names `{f}`, which is not a file of the model folder (a shard is a plain file name beside the index)"
                    ),
                ));
            }
            if !names.iter().any(|n| n == f) {
                names.push(f.to_string());
            }
        }
        names.sort();
        for n in &names {
            if files.size(n).is_none() {
                return Err(CoreError::MissingFile(format!(
                    "{n} (listed in {INDEX_FILE})"
                )));
            }
        }
        return Ok(names);
    }
    // Like transformers: `model.safetensors` when it is there (other .safetensors files beside it,
    // such as adapters or our post-attention gains, are not the model's weights); else every one.
    if files.size(WEIGHTS_FILE).is_some() {
        return Ok(vec![WEIGHTS_FILE.to_string()]);
    }
    let mut names: Vec<String> = files
        .names()
        .into_iter()
        .filter(|n| n.ends_with(".safetensors"))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(CoreError::MissingFile(
            "*.safetensors (no weight files in the model folder)".into(),
        ));
    }
    Ok(names)
}

/// Matches every parameter of the table to exactly one tensor and checks dtype and shape.
fn locate(cfg: &ModelConfig, shards: &[Shard]) -> Result<Vec<TensorLocation>> {
    let table = param_table(cfg);
    let mut found: BTreeMap<&str, (usize, &TensorInfo)> = BTreeMap::new();
    for (si, shard) in shards.iter().enumerate() {
        for t in &shard.header.tensors {
            if let Some((prev, _)) = found.insert(t.name.as_str(), (si, t)) {
                return Err(CoreError::tensor(
                    &shard.file,
                    &t.name,
                    format!("also stored in {}", shards[prev].file),
                ));
            }
        }
    }
    // Where a missing tensor was looked for.
    let all_files = || {
        shards
            .iter()
            .map(|s| s.file.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::with_capacity(table.len());
    for spec in table {
        let (si, info) =
            found
                .remove(spec.name.as_str())
                .ok_or_else(|| CoreError::MissingTensor {
                    tensor: spec.name.clone(),
                    expected: spec.shape.clone(),
                    files: all_files(),
                })?;
        let file = &shards[si].file;
        if !matches!(info.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(CoreError::tensor(
                file,
                &spec.name,
                format!(
                    "dtype {} is not a weight dtype (expected F32, F16 or BF16)",
                    info.dtype.name()
                ),
            ));
        }
        if info.shape != spec.shape {
            return Err(CoreError::tensor(
                file,
                &spec.name,
                format!(
                    "shape {:?} disagrees with config.json, which implies {:?}",
                    info.shape, spec.shape
                ),
            ));
        }
        out.push(TensorLocation {
            spec,
            shard: si,
            info: info.clone(),
        });
    }
    // The trained gains of the norms a base model does not have (post-attention RMSNorm, SubLN),
    // as bitnet-studio's Hugging Face exports carry them: loaded beside the parameters, every
    // layer's of a kind or none.
    let post = found.contains_key(post_attn_norm_name(0).as_str());
    let subln = found.contains_key(subln_names(0)[0].as_str());
    let any_extra = found.keys().any(|n| extra_norm_width(cfg, n).is_some());
    if any_extra && !post && !subln {
        let (name, (si, _)) = found
            .iter()
            .find(|(n, _)| extra_norm_width(cfg, n).is_some())
            .expect("any_extra");
        return Err(CoreError::tensor(
            &shards[*si].file,
            name,
            "an extra norm gain without layer 0's: the set is incomplete",
        ));
    }
    for (name, width) in extra_norms(cfg, post, subln) {
        let (si, info) = found
            .remove(name.as_str())
            .ok_or_else(|| CoreError::MissingTensor {
                tensor: name.clone(),
                expected: vec![width],
                files: all_files(),
            })?;
        let file = &shards[si].file;
        if !matches!(info.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) || info.shape != [width] {
            return Err(CoreError::tensor(
                file,
                &name,
                format!(
                    "{} {:?}, expected a float gain of shape [{width}]",
                    info.dtype.name(),
                    info.shape
                ),
            ));
        }
        out.push(TensorLocation {
            spec: ParamSpec {
                name,
                shape: vec![width],
                role: Role::Norm,
            },
            shard: si,
            info: info.clone(),
        });
    }
    if let Some((name, (si, _))) = found.iter().find(|(n, _)| !is_ignorable_extra(cfg, n)) {
        return Err(CoreError::tensor(
            &shards[*si].file,
            name,
            format!(
                "unexpected tensor: config.json ({} with {} layers) implies no such parameter",
                cfg.model_type, cfg.num_hidden_layers
            ),
        ));
    }
    Ok(out)
}
