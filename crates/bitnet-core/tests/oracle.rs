//! The CPU reference model against PyTorch/transformers in float64 (tests/fixtures/oracle): logits,
//! loss and every parameter's gradient of each fixture model, plain, λ-blended with absmean and
//! threshold codes, and with the post-attention RMSNorm.

#[path = "../../../tests/support/oracle.rs"]
mod oracle;

use bitnet_core::cpu::kl::top_k;
use bitnet_core::cpu::model::{
    Distillation, ModelOptions, Objective, TeacherProbs, loss_and_grads, loss_and_grads_of,
    next_token_targets,
};

#[test]
fn cpu_model_matches_pytorch_float64() {
    let tokens = oracle::tokens();
    let targets = next_token_targets(&tokens, None);
    for model_name in oracle::MODELS {
        let (model, params) = oracle::load(model_name);
        let cfg = &model.config;
        // The distillation teacher: the model as it is (λ = 0).
        let teacher = loss_and_grads(cfg, &params, &tokens, &targets, &ModelOptions::default());
        for variant in oracle::variants() {
            let mut params = params.clone();
            params.extend(oracle::extra_params(model_name, &variant, cfg));
            let opts = ModelOptions {
                blend: variant.blend,
                post_attn_norm: variant.post_attn_norm,
                subln: variant.subln,
                quantize_lm_head: false,
                act8: variant.act8,
            };
            let vocab = cfg.vocab_size;
            let top = variant
                .kd
                .and_then(|kd| kd.top_k)
                .map(|k| top_k(&teacher.logits, vocab, k));
            let objective = match variant.kd {
                None => Objective::CE,
                Some(kd) => Objective {
                    ce_weight: kd.ce_weight,
                    kd: Some(Distillation {
                        teacher: match &top {
                            Some(t) => TeacherProbs::TopK(t),
                            None => TeacherProbs::Logits(&teacher.logits),
                        },
                        temperature: kd.temperature,
                        weight: kd.weight,
                    }),
                },
            };
            let out = loss_and_grads_of(cfg, &params, &tokens, &targets, &opts, &objective);
            let mut grad = |name: &str| out.grads.get(name).cloned();
            oracle::check(
                model_name,
                variant.name,
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
    let opts = ModelOptions::default();
    let (model, params) = oracle::load("llama");
    let default = loss_and_grads(&model.config, &params, &tokens, &targets, &opts).logits;
    for rope_type in oracle::ROPE_TYPES {
        let (model, params) = oracle::load_rope(rope_type);
        let out = loss_and_grads(&model.config, &params, &tokens, &targets, &opts);
        oracle::check_rope(rope_type, &out.logits, &default);
    }
}

/// The relative L2 distances of the logits at λ = 0 on the oracle's batch to the base model's, with
/// the extra norms of `opts` started at gains of 1 and calibrated (each gain = the mean RMS of that
/// norm's input in the base model: o_proj's output, the attention output or the SwiGLU output).
fn start_distances(model_name: &str, opts: ModelOptions) -> (f64, f64) {
    use bitnet_core::cpu::model::extra_norms;
    use bitnet_core::cpu::norm::mean_rms;
    let tokens = oracle::tokens();
    let targets = next_token_targets(&tokens, None);
    let (model, params) = oracle::load(model_name);
    let cfg = &model.config;
    let base = loss_and_grads(cfg, &params, &tokens, &targets, &ModelOptions::default());
    let rows: Vec<usize> = (0..tokens.len() * tokens[0].len()).collect();
    let calibrated = |name: &str, width: usize| {
        let l: usize = name.split('.').nth(2).unwrap().parse().unwrap();
        let input = if name.ends_with("post_attn_norm.weight") {
            &base.o_out[l]
        } else if name.ends_with("attn_sub_norm.weight") {
            &base.att[l]
        } else {
            &base.h_act[l]
        };
        mean_rms(input, width, &rows)
    };
    let distance = |calibrate: bool| {
        let mut p = params.clone();
        for (name, width) in extra_norms(cfg, opts.post_attn_norm, opts.subln) {
            let g = if calibrate {
                calibrated(&name, width)
            } else {
                1.0
            };
            p.insert(name, vec![g; width]);
        }
        let logits = loss_and_grads(cfg, &p, &tokens, &targets, &opts).logits;
        oracle::rel_l2(&logits, &base.logits)
    };
    (distance(false), distance(true))
}

/// The post-attention norm's calibrated start (each layer's gain = the mean RMS of its o_proj
/// output on the batch, from the base model) keeps the model closer to the base model than the
/// seed's gain 1: the logits at λ = 0 on the oracle's batch (relative L2 distance to the base
/// model's).
#[test]
fn a_calibrated_post_attention_norm_starts_closer_to_the_base_model_than_gain_one() {
    for model_name in oracle::MODELS {
        let opts = ModelOptions {
            post_attn_norm: true,
            ..ModelOptions::default()
        };
        let (d_one, d_cal) = start_distances(model_name, opts);
        println!(
            "{model_name}: logits off the base model's by {d_one:.4} with gain 1, {d_cal:.4} calibrated"
        );
        assert!(
            d_cal < d_one / 2.0,
            "{model_name}: calibrated ({d_cal}) is not closer to the base model than gain 1 ({d_one})"
        );
    }
}

/// A sliding window as long as the sequence (Mistral's `sliding_window`, here 12 = the oracle's
/// sequence length) changes nothing: the logits equal transformers' with that window, and the
/// model's context is the window (longer sequences are refused, see tests/hostile).
#[test]
fn a_sliding_window_as_long_as_the_sequence_matches_transformers() {
    let (model, params, want) = oracle::load_window();
    let tokens = oracle::tokens();
    assert_eq!(model.config.context(), (tokens[0].len(), "sliding_window"));
    let targets = next_token_targets(&tokens, None);
    let out = loss_and_grads(
        &model.config,
        &params,
        &tokens,
        &targets,
        &ModelOptions::default(),
    );
    oracle::assert_logits("mistral sliding window", &out.logits, &want);
}

/// SubLN's calibrated start (each gain = the mean RMS of that norm's input, the attention output or
/// the SwiGLU output, in the base model) keeps the model closer to the base model than gains of 1:
/// the logits at λ = 0 on the oracle's batch.
#[test]
fn calibrated_subln_starts_closer_to_the_base_model_than_gains_of_one() {
    for model_name in oracle::MODELS {
        let opts = ModelOptions {
            subln: true,
            ..ModelOptions::default()
        };
        let (d_one, d_cal) = start_distances(model_name, opts);
        println!(
            "{model_name}: SubLN logits off the base model's by {d_one:.4} with gains 1, {d_cal:.4} calibrated"
        );
        assert!(
            d_cal < d_one / 2.0,
            "{model_name}: calibrated ({d_cal}) is not closer to the base model than gains of 1 ({d_one})"
        );
    }
}
