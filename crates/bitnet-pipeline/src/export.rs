//! Exports of a model in the formats other tools run (`bitnet export`, the app's download menu):
//! GGUF for llama.cpp (ternary tensors TQ2_0/TQ1_0 from a packed file; F32/F16 from a
//! full-precision folder), the transformers packed-BitNet folder, and the dequantized folder.

use std::collections::BTreeMap;

use bitnet_core::gguf::GgmlType;
use bitnet_core::gguf::export::{Data, Source, export_gguf};
use bitnet_core::model::{Model, ModelFiles};
use bitnet_core::packed::PackedModel;

use crate::error::{PipelineError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    GgufTq2,
    GgufTq1,
    GgufF32,
    GgufF16,
    HfBitnet,
    Hf,
}

impl Format {
    pub const ALL: [Format; 6] = [
        Format::GgufTq2,
        Format::GgufTq1,
        Format::GgufF32,
        Format::GgufF16,
        Format::HfBitnet,
        Format::Hf,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::GgufTq2 => "gguf-tq2_0",
            Format::GgufTq1 => "gguf-tq1_0",
            Format::GgufF32 => "gguf-f32",
            Format::GgufF16 => "gguf-f16",
            Format::HfBitnet => "hf-bitnet",
            Format::Hf => "hf",
        }
    }

    pub fn parse(s: &str) -> std::result::Result<Format, String> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|f| f.name()).collect();
                format!(
                    "unknown export format `{s}`; expected one of {}",
                    names.join(", ")
                )
            })
    }

    /// Whether the export is one file (GGUF) rather than a folder.
    pub fn is_file(self) -> bool {
        matches!(
            self,
            Format::GgufTq2 | Format::GgufTq1 | Format::GgufF32 | Format::GgufF16
        )
    }

    /// The ternary formats need a packed model; the full-precision ones a folder.
    fn needs_packed(self) -> bool {
        !matches!(self, Format::GgufF32 | Format::GgufF16)
    }
}

/// What an export produced.
pub struct Exported {
    /// One GGUF file (key `model.gguf`) or a folder's files.
    pub files: BTreeMap<String, Vec<u8>>,
    /// GGUF: llama.cpp's architecture.
    pub architecture: Option<String>,
    /// GGUF: ternary tensors stored F16 because their rows are not a multiple of 256.
    pub f16_fallback: Vec<String>,
    /// What a user must know about the result (differences in what it computes, dropped parts).
    pub notes: Vec<String>,
}

/// The key of a GGUF export in [`Exported::files`].
pub const GGUF_FILE: &str = "model.gguf";

fn gguf(
    name: &str,
    src: &Source,
    ternary: GgmlType,
    float: Option<GgmlType>,
    chat: Option<&str>,
) -> Result<Exported> {
    let e =
        export_gguf(name, src, ternary, float, chat).map_err(|e| PipelineError::input(name, e))?;
    let mut notes = Vec::new();
    if !e.f16_fallback.is_empty() {
        notes.push(format!(
            "{} ternary tensors have rows that are not a multiple of 256 and are stored F16 (γ·q), as llama.cpp's converter stores them: {}",
            e.f16_fallback.len(),
            e.f16_fallback.join(", ")
        ));
    }
    Ok(Exported {
        files: BTreeMap::from([(GGUF_FILE.to_string(), e.bytes)]),
        architecture: Some(e.architecture),
        f16_fallback: e.f16_fallback,
        notes,
    })
}

/// Exports the packed file `bytes` (named `name`); `chat_template` goes into a GGUF file's metadata.
pub fn export_packed(
    name: &str,
    bytes: &[u8],
    format: Format,
    chat_template: Option<&str>,
) -> Result<Exported> {
    let err = |e| PipelineError::input(name, e);
    if !format.needs_packed() {
        return Err(PipelineError::Invalid(format!(
            "{name} is a packed ternary model: export it as gguf-tq2_0, gguf-tq1_0, hf-bitnet or hf ({} is for full-precision folders)",
            format.name()
        )));
    }
    let packed = PackedModel::parse(name, bytes).map_err(err)?;
    let mut exported = export_parsed(name, &packed, format, chat_template)?;
    if packed.act8 && format != Format::HfBitnet {
        exported.notes.push(if format == Format::Hf {
            "the model was trained W1.58A8 (projection inputs rounded to 8 bits per token); the dequantized folder computes it without that rounding — hf-bitnet computes it as trained".to_string()
        } else {
            "the model was trained W1.58A8 (projection inputs rounded to 8 bits per token); llama.cpp rounds activations for TQ tensors per block of 256 values (Q8_K) and not at all for F16 ones: close to it, not exactly it".to_string()
        });
    }
    Ok(exported)
}

fn export_parsed(
    name: &str,
    packed: &PackedModel,
    format: Format,
    chat_template: Option<&str>,
) -> Result<Exported> {
    let err = |e| PipelineError::input(name, e);
    match format {
        Format::GgufTq2 | Format::GgufTq1 => {
            let ty = if format == Format::GgufTq1 {
                GgmlType::TQ1_0
            } else {
                GgmlType::TQ2_0
            };
            gguf(
                name,
                &Source::from_packed(packed).map_err(err)?,
                ty,
                None,
                chat_template,
            )
        }
        Format::HfBitnet => {
            let h = packed.to_hf_bitnet().map_err(err)?;
            Ok(Exported {
                files: h.files,
                architecture: None,
                f16_fallback: Vec::new(),
                notes: h.notes,
            })
        }
        _ => {
            let norms = packed.extra_norms().map_err(err)?;
            let mut notes = Vec::new();
            if let Some(first) = norms.keys().next() {
                notes.push(format!(
                    "the model has {} extra norms (post-attention RMSNorm or SubLN, e.g. {first}) that a stock Llama-family class does not have: the folder carries their gains and {}, which adds them; load it with trust_remote_code=True",
                    norms.len(),
                    bitnet_core::hf_extra::MODELING_FILE
                ));
            }
            Ok(Exported {
                files: packed.unpack_to_hf().map_err(err)?,
                architecture: None,
                f16_fallback: Vec::new(),
                notes,
            })
        }
    }
}

/// Exports the full-precision model folder `files` (named `name`) as an F32 or F16 GGUF file.
pub async fn export_folder<F: ModelFiles>(
    files: &F,
    name: &str,
    format: Format,
) -> Result<Exported> {
    let err = |e| PipelineError::input(name, e);
    let float = match format {
        Format::GgufF32 => GgmlType::F32,
        Format::GgufF16 => GgmlType::F16,
        other => {
            return Err(PipelineError::Invalid(format!(
                "{name} is a full-precision folder: {} needs a ternary model; pack it first (`bitnet pack`) or train it (`bitnet train`), or export it as gguf-f32 / gguf-f16",
                other.name()
            )));
        }
    };
    let model = Model::open(files).await.map_err(err)?;
    let mut weights = model.all_f32(files).await.map_err(err)?;
    let tensors = model
        .tensors
        .iter()
        .map(|l| {
            let v = weights.remove(&l.spec.name).unwrap_or_default();
            (
                l.spec.name.clone(),
                l.spec.shape.clone(),
                Data::Float(v, l.info.dtype),
            )
        })
        .collect();
    let chat = match files.size("tokenizer_config.json") {
        Some(_) => {
            let b = files.read_all("tokenizer_config.json").await.map_err(err)?;
            serde_json::from_slice::<serde_json::Value>(&b)
                .ok()
                .and_then(|v| v.get("chat_template")?.as_str().map(str::to_string))
        }
        None => None,
    };
    let src = Source {
        config_json: model.config_json.clone(),
        tokenizer_json: model
            .tokenizer_json
            .as_ref()
            .map(|t| String::from_utf8_lossy(t).into_owned()),
        tensors,
    };
    gguf(name, &src, GgmlType::TQ2_0, Some(float), chat.as_deref())
}
