//! Whether a model trained with SubLN computes what llama.cpp's `bitnet` architecture computes
//! (src/models/bitnet.cpp): RMSNorm (the file's one epsilon) on the attention output before
//! `attn_output` and on silu(gate)·up before `ffn_down` — where our SubLN sits, with the config's
//! epsilon —, SwiGLU, NEOX RoPE on the rows as transformers stores them (no permutation), no
//! biases, `wq`/`wo` of hidden × hidden, and the token embedding as the output layer (the
//! architecture has no `output` tensor).

use crate::config::ModelConfig;
use crate::error::{CoreError, Result};

/// Ok when llama.cpp's `bitnet` architecture computes the SubLN model `cfg`; else why not, by name.
pub fn check(file: &str, cfg: &ModelConfig) -> Result<()> {
    let why = if !cfg.tie_word_embeddings {
        Some("its lm_head is not tied to the embedding, and llama.cpp's `bitnet` architecture has no output tensor of its own (it multiplies by token_embd)".to_string())
    } else if cfg.num_attention_heads * cfg.head_dim != cfg.hidden_size {
        Some(format!(
            "its attention width {}·{} differs from hidden_size {} (the `bitnet` architecture's attn_q and attn_output are hidden × hidden)",
            cfg.num_attention_heads, cfg.head_dim, cfg.hidden_size
        ))
    } else if cfg.qkv_bias || cfg.o_bias || cfg.mlp_bias {
        Some(
            "it has biases on its projections, which the `bitnet` architecture does not load"
                .into(),
        )
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(CoreError::packed(
            file,
            format!(
                "it was trained with SubLN, whose llama.cpp home is the `bitnet` architecture, but {why}; export `hf-bitnet`, or run the packed file itself"
            ),
        )),
    }
}
