//! Continuing one prompt with a loaded model: the token ids, the text, why it ended and the
//! prefill and decode speeds (`bitnet generate`, the sample at the end of the demo, the app).

use bitnet_core::sample::Sampling;
use bitnet_gpu::generate::GenerateOptions;

use crate::error::Result;
use crate::load::Loaded;
use crate::{Ctx, clock};

/// How a continuation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedBy {
    Eos,
    MaxNewTokens,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Continuation {
    pub prompt_ids: Vec<u32>,
    pub tokens: Vec<u32>,
    pub text: String,
    pub ended_by: EndedBy,
    pub prefill_tokens: usize,
    pub prefill_ms: f64,
    pub prefill_tokens_per_s: f64,
    pub decode_tokens: usize,
    pub decode_ms: f64,
    pub decode_tokens_per_s: f64,
    /// Bytes of the model's weights on the GPU (ternary projections packed at 2 bits per weight).
    pub gpu_weight_bytes: u64,
}

fn per_s(tokens: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        tokens as f64 * 1e3 / ms
    } else {
        0.0
    }
}

/// Continues `prompt_ids` with `m`; `on_token` sees each new token as it is chosen.
pub async fn continue_prompt(
    ctx: &Ctx<'_>,
    m: &Loaded,
    prompt_ids: Vec<u32>,
    max_new_tokens: usize,
    sampling: Sampling,
    seed: u64,
    on_token: &mut dyn FnMut(u32),
) -> Result<Continuation> {
    m.check_context(prompt_ids.len(), max_new_tokens)?;
    let generator = m.generator(ctx.gpu)?;
    let opts = GenerateOptions {
        max_new_tokens,
        sampling,
        seed,
        first_stream: 0,
        eos: m.eos.clone(),
        keep_logits: false,
    };
    let now = clock();
    let out = generator
        .generate(
            ctx.gpu,
            std::slice::from_ref(&prompt_ids),
            &opts,
            &now,
            &mut |_, t| on_token(t),
        )
        .await?;
    let tokens = out.tokens[0].clone();
    Ok(Continuation {
        text: m.decode(&tokens)?,
        prompt_ids,
        tokens,
        ended_by: if out.ended[0] {
            EndedBy::Eos
        } else {
            EndedBy::MaxNewTokens
        },
        prefill_tokens: out.prefill_tokens,
        prefill_ms: out.prefill_ms,
        prefill_tokens_per_s: per_s(out.prefill_tokens, out.prefill_ms),
        decode_tokens: out.decode_tokens,
        decode_ms: out.decode_ms,
        decode_tokens_per_s: per_s(out.decode_tokens, out.decode_ms),
        gpu_weight_bytes: generator.weight_bytes(),
    })
}
