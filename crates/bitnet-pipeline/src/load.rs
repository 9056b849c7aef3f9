//! Loading a model to run or train: a Hugging Face folder (any [`ModelFiles`]: a directory, files
//! picked in a browser, a folder of a store), optionally ternarized in memory exactly as the packer
//! would, or a packed file with the post-attention norm gains written beside it. The loaded model
//! carries its tokenizer, end-of-sequence ids and chat template.

use std::collections::BTreeMap;

use bitnet_core::model::{MemoryFiles, Model, ModelFiles};
use bitnet_core::packed::PackedModel;
use bitnet_core::quant::{Quantizer, Ternary};
use bitnet_core::safetensors::{Dtype, SafeTensors};
use bitnet_core::selfgen::{ChatTemplate, eos_ids};
use bitnet_core::tokenizer::Tokenizer;
use bitnet_core::{Packing, cpu};
use bitnet_gpu::Gpu;
use bitnet_gpu::generate::Generator;
use bitnet_gpu::packer::{PackOptions, pack_model};

use crate::error::{PipelineError, Result};

/// Gains of the post-attention RMSNorm that a training run writes beside its packed file.
pub const POST_ATTN_NORM_FILE: &str = "post_attn_norm.safetensors";
/// The packed file a training run writes.
pub const PACKED_FILE: &str = "model.bitnet.safetensors";

/// A model ready to run: its config, tokenizer and f32 weights.
pub struct Loaded {
    /// How the user named it (a folder, a file).
    pub name: String,
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub weights: BTreeMap<String, Vec<f32>>,
    pub eos: Vec<u32>,
    pub chat: Option<ChatTemplate>,
    /// The projections are ternary (γ·q): a packed file, or a folder loaded with `ternary`.
    pub ternary: bool,
    /// The codes and scale of every ternary tensor (empty for a full-precision model): generation
    /// runs them packed; `weights` holds them as γ·q too.
    pub codes: BTreeMap<String, Ternary>,
    /// How the model stores each full-precision tensor (a BF16 model's embedding and lm_head stay
    /// bf16 on the GPU for generation).
    pub dtypes: BTreeMap<String, Dtype>,
    /// W1.58A8: trained with its projections' inputs rounded to 8 bits per token (the packed file
    /// says so), which running it does too.
    pub act8: bool,
}

impl Loaded {
    /// Whether the weights carry trained post-attention RMSNorm gains.
    pub fn post_attn_norm(&self) -> bool {
        self.weights
            .contains_key(&cpu::model::post_attn_norm_name(0))
    }

    /// Whether the weights carry trained SubLN gains.
    pub fn subln(&self) -> bool {
        let [att, _] = cpu::model::subln_names(0);
        self.weights.contains_key(&att)
    }

    /// The prompt's token ids: the text as is (with the tokenizer's special tokens, like
    /// `tokenizer(text)`), or through the chat template (its own special tokens, like
    /// `apply_chat_template`), truncated to `max_tokens`.
    pub fn prompt_ids(&self, text: &str, chat: bool, max_tokens: usize) -> Result<Vec<u32>> {
        let err = |e| PipelineError::input(&self.name, e);
        let mut ids = if chat {
            let t = self.chat.as_ref().ok_or_else(|| {
                PipelineError::Invalid(format!(
                    "{}: --chat needs a chat_template in tokenizer_config.json",
                    self.name
                ))
            })?;
            let rendered = t.render(text).map_err(err)?;
            self.tokenizer.encode(&rendered, false)
        } else {
            self.tokenizer.encode(text, true)
        }
        .map_err(err)?;
        ids.truncate(max_tokens);
        if ids.is_empty() {
            return Err(PipelineError::Invalid("the prompt gives no tokens".into()));
        }
        Ok(ids)
    }

    /// Refuses a continuation that would run past the model's context (`max_position_embeddings`,
    /// or a shorter `sliding_window`).
    pub fn check_context(&self, prompt_tokens: usize, max_new_tokens: usize) -> Result<()> {
        let (context, field) = self.model.config.context();
        if prompt_tokens + max_new_tokens > context {
            return Err(PipelineError::Invalid(format!(
                "{}: a prompt of {prompt_tokens} tokens plus {max_new_tokens} new tokens is longer than the model's context of {context} tokens ({field} in config.json); shorten the prompt or lower --max-new-tokens",
                self.name
            )));
        }
        Ok(())
    }

    /// The model on the GPU, ready to generate: its ternary projections packed, a BF16 model's
    /// embedding and lm_head bf16, its extra norms, and W1.58A8's rounding when it was trained so.
    pub fn generator(&self, gpu: &Gpu) -> Result<Generator> {
        let mut g = Generator::new(
            gpu,
            &self.model.config,
            &self.weights,
            &self.codes,
            &self.dtypes,
        )?;
        g.act8 = self.act8;
        Ok(g)
    }

    /// Text of `ids` without special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| PipelineError::input(&self.name, e))
    }
}

async fn optional<F: ModelFiles>(files: &F, name: &str) -> Result<Option<Vec<u8>>> {
    if files.size(name).is_none() {
        return Ok(None);
    }
    files
        .read_all(name)
        .await
        .map(Some)
        .map_err(|e| PipelineError::input(name, e))
}

/// Opens the model folder `files` (named `name` in messages) and checks it.
pub async fn open_model<F: ModelFiles>(files: &F, name: &str) -> Result<Model> {
    Model::open(files)
        .await
        .map_err(|e| PipelineError::input(name, e))
}

/// Reads a model folder; with `ternary`, packs it in memory first (on `gpu` when given) with the
/// same code as the packer and reads the packed bytes back, so its weights are bit-identical to
/// the packed file's.
pub async fn load_folder<F: ModelFiles>(
    gpu: Option<&Gpu>,
    files: &F,
    name: &str,
    ternary: bool,
    quantizer: Quantizer,
) -> Result<Loaded> {
    let err = |e| PipelineError::input(name, e);
    let model = open_model(files, name).await?;
    let generation = optional(files, "generation_config.json").await?;
    let eos = eos_ids(model.config_json.as_bytes(), generation.as_deref()).map_err(err)?;
    let chat = match optional(files, "tokenizer_config.json").await? {
        Some(b) => ChatTemplate::from_tokenizer_config("tokenizer_config.json", &b).map_err(err)?,
        None => None,
    };
    if ternary {
        let opts = PackOptions {
            quantizer,
            packing: Packing::TwoBit,
            quantize_lm_head: false,
            fp_dtype: None,
            act8: false,
        };
        let (bytes, _) = pack_model(gpu, &model, files, &opts, Vec::new(), |_| {})
            .await
            .map_err(|e| PipelineError::Invalid(format!("{name}: {e}")))?;
        let mut loaded = load_packed(name, &bytes, None).await?;
        loaded.eos = eos;
        loaded.chat = chat;
        return Ok(loaded);
    }
    let weights = model.all_f32(files).await.map_err(err)?;
    let tokenizer = tokenizer_of(name, &model)?;
    let dtypes = model
        .tensors
        .iter()
        .map(|l| (l.spec.name.clone(), l.info.dtype))
        .collect();
    Ok(Loaded {
        name: name.to_string(),
        model,
        tokenizer,
        weights,
        eos,
        chat,
        ternary: false,
        codes: BTreeMap::new(),
        dtypes,
        act8: false,
    })
}

/// The tokenizer of `model`, which generation and training need.
pub fn tokenizer_of(name: &str, model: &Model) -> Result<Tokenizer> {
    let bytes = model.tokenizer_json.as_ref().ok_or_else(|| {
        PipelineError::Invalid(format!(
            "{name}: no tokenizer.json (generation and training need one)"
        ))
    })?;
    Tokenizer::from_bytes("tokenizer.json", bytes).map_err(|e| PipelineError::input(name, e))
}

/// A packed file's model with its ternary weights as γ·q and the extra norms' gains it carries, or
/// — for a packed file written before they travelled in it — those of `gains` (file name, bytes:
/// post_attn_norm.safetensors beside it, the post-attention norm's and/or SubLN's, every layer's).
pub async fn load_packed(
    name: &str,
    bytes: &[u8],
    gains: Option<(String, Vec<u8>)>,
) -> Result<Loaded> {
    let err = |e| PipelineError::input(name, e);
    let packed = PackedModel::parse(name, bytes).map_err(err)?;
    let files = MemoryFiles(packed.unpack_to_hf().map_err(err)?);
    let model = Model::open(&files).await.map_err(err)?;
    let mut weights = model.all_f32(&files).await.map_err(err)?;
    let carried = packed.extra_norms().map_err(err)?;
    let gains = if carried.is_empty() { gains } else { None };
    weights.extend(carried);
    if let Some((file, b)) = gains {
        let st = SafeTensors::parse(&file, &b).map_err(|e| PipelineError::input(&file, e))?;
        let cfg = &model.config;
        let mut found = false;
        for (post, sub) in [(true, false), (false, true)] {
            let names = cpu::model::extra_norms(cfg, post, sub);
            if !names.iter().any(|(n, _)| st.get(n).is_some()) {
                continue;
            }
            found = true;
            for (n, _) in names {
                let info = st.get(&n).ok_or_else(|| {
                    PipelineError::Invalid(format!("{file}: tensor {n} is missing"))
                })?;
                let values = st
                    .to_f32(info)
                    .map_err(|e| PipelineError::input(&file, e))?;
                weights.insert(n, values);
            }
        }
        if !found {
            return Err(PipelineError::Invalid(format!(
                "{file}: no norm gains in it (tensor {} is missing)",
                cpu::model::post_attn_norm_name(0)
            )));
        }
    }
    let eos = eos_ids(model.config_json.as_bytes(), None).map_err(err)?;
    let tokenizer = tokenizer_of(name, &model)?;
    let codes = packed
        .shapes
        .keys()
        .map(|n| Ok((n.clone(), packed.ternary(n)?)))
        .collect::<bitnet_core::Result<_>>()
        .map_err(err)?;
    let dtypes = packed
        .st
        .header
        .tensors
        .iter()
        .filter(|t| !packed.is_ternary_part(&t.name))
        .map(|t| (t.name.clone(), t.dtype))
        .collect();
    Ok(Loaded {
        name: name.to_string(),
        model,
        tokenizer,
        weights,
        eos,
        chat: None,
        ternary: true,
        codes,
        dtypes,
        act8: packed.act8,
    })
}
