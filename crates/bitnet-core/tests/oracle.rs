//! The CPU reference model against PyTorch/transformers in float64 (tests/fixtures/oracle): logits,
//! loss and every parameter's gradient of each fixture model, plain, λ-blended with absmean and
//! threshold codes, and with the post-attention RMSNorm.

#[path = "../../../tests/support/oracle.rs"]
mod oracle;

use bitnet_core::cpu::model::{
    ModelOptions, loss_and_grads, next_token_targets, post_attn_norm_name,
};

#[test]
fn cpu_model_matches_pytorch_float64() {
    let tokens = oracle::tokens();
    let targets = next_token_targets(&tokens, None);
    for model_name in oracle::MODELS {
        let (model, params) = oracle::load(model_name);
        let cfg = &model.config;
        for (variant, blend, post_attn_norm) in oracle::variants() {
            let mut params = params.clone();
            if post_attn_norm {
                for l in 0..cfg.num_hidden_layers {
                    params.insert(post_attn_norm_name(l), vec![1.0; cfg.hidden_size]);
                }
            }
            let opts = ModelOptions {
                blend,
                post_attn_norm,
                quantize_lm_head: false,
            };
            let out = loss_and_grads(cfg, &params, &tokens, &targets, &opts);
            let mut grad = |name: &str| out.grads.get(name).cloned();
            oracle::check(
                model_name,
                variant,
                out.loss,
                &out.logits,
                out.grads.len(),
                &mut grad,
            );
        }
    }
}

/// RoPE scaling (`linear`, `dynamic`, `llama3`, `yarn`) on the llama fixture: logits as
/// transformers computes them (tests/fixtures/oracle/rope).
#[test]
fn cpu_model_rope_scaling_matches_transformers() {
    let tokens = oracle::tokens();
    let targets = next_token_targets(&tokens, None);
    let opts = ModelOptions {
        blend: None,
        post_attn_norm: false,
        quantize_lm_head: false,
    };
    let (model, params) = oracle::load("llama");
    let default = loss_and_grads(&model.config, &params, &tokens, &targets, &opts).logits;
    for rope_type in oracle::ROPE_TYPES {
        let (model, params) = oracle::load_rope(rope_type);
        let out = loss_and_grads(&model.config, &params, &tokens, &targets, &opts);
        oracle::check_rope(rope_type, &out.logits, &default);
    }
}
