//! The GPU model (forward, loss, backward) against PyTorch/transformers in float64
//! (tests/fixtures/oracle) on the native adapter: every fixture model, plain, λ-blended with absmean
//! and threshold codes, with the extra norms, and distilled from the model itself at λ = 0. Fails,
//! never skips, without an adapter.
#![cfg(not(target_arch = "wasm32"))]

#[path = "../../../tests/support/oracle.rs"]
mod oracle;

use bitnet_core::cpu::model::next_token_targets;
use bitnet_core::quant::Quantizer;
use bitnet_gpu::Gpu;
use bitnet_gpu::kernels::{Distill, TopKRows};
use bitnet_gpu::model::{Batch, GpuModel, ModelSetup, Teacher, TeacherProbs};

#[test]
fn gpu_model_matches_pytorch_float64() {
    let gpu = pollster::block_on(Gpu::new())
        .expect("a GPU adapter is required for this test (install mesa-vulkan-drivers)");
    let tokens = oracle::tokens();
    let targets = next_token_targets(&tokens, None);
    for model_name in oracle::MODELS {
        let (model, params) = oracle::load(model_name);
        let cfg = &model.config;
        // The distillation teacher: the model as it is, frozen (λ = 0), on the same batch.
        let plain = ModelSetup {
            quantizer: Quantizer::Absmean,
            post_attn_norm: false,
            quantize_lm_head: false,
            subln: false,
            act8: false,
        };
        let teacher = GpuModel::for_inference(&gpu, cfg, &params, plain).unwrap();
        let teacher_batch = teacher.batch(&gpu, &tokens, &targets).unwrap();
        gpu.submit(&teacher.forward_loss(&gpu, &teacher_batch, None).unwrap());
        for variant in oracle::variants() {
            let blend = variant.blend;
            let setup = ModelSetup {
                quantizer: blend.map_or(Quantizer::Absmean, |b| b.0),
                post_attn_norm: variant.post_attn_norm,
                quantize_lm_head: false,
                subln: variant.subln,
                act8: variant.act8,
            };
            let mut params = params.clone();
            params.extend(oracle::extra_params(model_name, &variant, cfg));
            let m = GpuModel::new(&gpu, cfg, &params, setup).unwrap();
            let batch = m.batch(&gpu, &tokens, &targets).unwrap();
            let lambda = blend.map(|b| b.1);
            let ops = match variant.kd {
                None => m.forward_backward(&gpu, &batch, lambda),
                Some(kd) => {
                    // The teacher's top K on the GPU (shaders/topk.wgsl), or all its logits.
                    let rows = tokens.len() * tokens[0].len();
                    let k = kd.top_k.unwrap_or(1);
                    let rows_k = TopKRows::alloc(&gpu, rows, k).unwrap();
                    let top = rows_k.buffers();
                    let v = cfg.vocab_size as u32;
                    gpu.submit(&[gpu.topk(rows as u32, v, teacher_batch.logits(), top)]);
                    let t = Teacher {
                        probs: match kd.top_k {
                            Some(_) => TeacherProbs::TopK(top),
                            None => TeacherProbs::Logits(teacher_batch.logits()),
                        },
                        kd: Distill {
                            temperature: kd.temperature,
                            weight: kd.weight,
                        },
                        ce_weight: kd.ce_weight,
                    };
                    m.forward_backward_distilled(&gpu, &batch, lambda, &t)
                }
            };
            gpu.submit(&ops.unwrap());
            let n = tokens.len() * tokens[0].len();
            let sum = |buf| -> f32 {
                pollster::block_on(gpu.read_f32("loss", buf, n))
                    .unwrap()
                    .iter()
                    .sum()
            };
            let mut loss = sum(&batch.loss);
            if variant.kd.is_some_and(|kd| kd.ce_weight > 0.0) {
                loss += sum(&batch.kd_loss);
            }
            let logits =
                pollster::block_on(gpu.read_f32("logits", batch.logits(), n * cfg.vocab_size))
                    .unwrap();
            let mut grad = |name: &str| {
                let buf = m.grad(name)?;
                Some(pollster::block_on(gpu.read_f32(name, buf, m.numel(name))).unwrap())
            };
            oracle::check(
                model_name,
                variant.name,
                loss,
                &logits,
                m.names.len(),
                &mut grad,
            );
        }
    }
}

/// With lm_head blended too (the seed's choice), the GPU model matches the CPU reference model
/// (which matches PyTorch elsewhere): untied llama and tied qwen2 at λ = 0.5.
#[test]
fn gpu_model_with_a_quantized_lm_head_matches_the_cpu_reference() {
    use bitnet_core::cpu::model::{ModelOptions, loss_and_grads};

    let gpu = pollster::block_on(Gpu::new()).expect("a GPU adapter is required for this test");
    let tokens = oracle::tokens();
    let targets = next_token_targets(&tokens, None);
    for model_name in ["llama", "qwen2"] {
        let (model, params) = oracle::load(model_name);
        let cfg = &model.config;
        let blend = Some((Quantizer::Absmean, 0.5));
        let opts = ModelOptions {
            blend,
            quantize_lm_head: true,
            ..ModelOptions::default()
        };
        let want = loss_and_grads(cfg, &params, &tokens, &targets, &opts);
        let setup = ModelSetup {
            quantizer: Quantizer::Absmean,
            post_attn_norm: false,
            quantize_lm_head: true,
            subln: false,
            act8: false,
        };
        let m = GpuModel::new(&gpu, cfg, &params, setup).unwrap();
        let batch = Batch::new(&gpu, cfg, &tokens, &targets).unwrap();
        gpu.submit(&m.forward_backward(&gpu, &batch, Some(0.5)).unwrap());
        let n = tokens.len() * tokens[0].len();
        let loss: f32 = pollster::block_on(gpu.read_f32("loss", &batch.loss, n))
            .unwrap()
            .iter()
            .sum();
        assert!(
            ((loss - want.loss) / want.loss).abs() <= 1e-4,
            "{model_name}: loss {loss} vs {}",
            want.loss
        );
        for (name, g) in &want.grads {
            let got =
                pollster::block_on(gpu.read_f32(name, m.grad(name).unwrap(), g.len())).unwrap();
            let err = oracle::rel_l2(&got, g);
            assert!(
                err <= 1e-3,
                "{model_name}: gradient of {name} off by {err:.2e}"
            );
        }
        // The blended lm_head changes the model: the loss differs from the unblended head's.
        let plain = loss_and_grads(
            cfg,
            &params,
            &tokens,
            &targets,
            &ModelOptions {
                quantize_lm_head: false,
                ..opts
            },
        );
        assert!(
            (plain.loss - want.loss).abs() > 1e-4,
            "{model_name}: lm_head blending had no effect"
        );
    }
}

/// A model built for inference (evaluation) allocates no gradient buffers, gives the training
/// model's loss, and refuses a backward pass.
#[test]
fn an_inference_model_has_no_gradients_and_the_same_loss() {
    let gpu = pollster::block_on(Gpu::new()).expect("a GPU adapter is required for this test");
    let tokens = oracle::tokens();
    let targets = next_token_targets(&tokens, None);
    let (model, params) = oracle::load("llama");
    let cfg = &model.config;
    let setup = ModelSetup {
        quantizer: Quantizer::Absmean,
        post_attn_norm: false,
        quantize_lm_head: false,
        subln: false,
        act8: false,
    };
    let weight_bytes: u64 = params.values().map(|v| 4 * v.len() as u64).sum();
    let before = gpu.allocated_bytes();
    let infer = GpuModel::for_inference(&gpu, cfg, &params, setup).unwrap();
    let inference_bytes = gpu.allocated_bytes() - before;
    let train = GpuModel::new(&gpu, cfg, &params, setup).unwrap();
    let training_bytes = gpu.allocated_bytes() - before - inference_bytes;
    assert!(
        inference_bytes < weight_bytes + weight_bytes / 10,
        "inference model: {inference_bytes} bytes for {weight_bytes} of weights"
    );
    assert!(training_bytes >= 2 * weight_bytes, "{training_bytes}");
    assert!(infer.grad("model.norm.weight").is_none());
    let loss = |m: &GpuModel| {
        let batch = Batch::new(&gpu, cfg, &tokens, &targets).unwrap();
        gpu.submit(&m.forward_loss(&gpu, &batch, Some(0.5)).unwrap());
        let n = tokens.len() * tokens[0].len();
        pollster::block_on(gpu.read_f32("loss", &batch.loss, n))
            .unwrap()
            .iter()
            .sum::<f32>()
    };
    assert_eq!(loss(&infer), loss(&train));
    let batch = Batch::new(&gpu, cfg, &tokens, &targets).unwrap();
    assert!(infer.forward_backward(&gpu, &batch, None).is_err());
}

/// An inference model of the ternary model with its projections packed (what `bitnet eval` runs
/// for a packed file) gives the loss of the same model as f32 γ·q on every fixture, and refuses a λ.
#[test]
fn a_packed_inference_model_has_the_loss_of_the_f32_ternary_model() {
    use bitnet_core::params::param_table;
    let gpu = pollster::block_on(Gpu::new()).expect("a GPU adapter is required for this test");
    let tokens = oracle::tokens();
    let targets = next_token_targets(&tokens, None);
    let setup = ModelSetup {
        quantizer: Quantizer::Absmean,
        post_attn_norm: false,
        quantize_lm_head: false,
        subln: false,
        act8: false,
    };
    for name in oracle::MODELS {
        let (model, mut params) = oracle::load(name);
        let cfg = &model.config;
        let mut codes = std::collections::BTreeMap::new();
        for spec in param_table(cfg).into_iter().filter(|s| s.is_ternary(false)) {
            let t = Quantizer::Absmean.quantize(&params[&spec.name]);
            params.insert(spec.name.clone(), t.dequantize());
            codes.insert(spec.name, t);
        }
        let plain = GpuModel::for_inference(&gpu, cfg, &params, setup).unwrap();
        let mut packed = GpuModel::for_inference(&gpu, cfg, &params, setup).unwrap();
        packed.pack_projections(&gpu, &codes).unwrap();
        let rows = |m: &GpuModel| {
            let batch = Batch::new(&gpu, cfg, &tokens, &targets).unwrap();
            gpu.submit(&m.forward_loss(&gpu, &batch, None).unwrap());
            let n = tokens.len() * tokens[0].len();
            pollster::block_on(gpu.read_f32("loss", &batch.loss, n)).unwrap()
        };
        let (want, got) = (rows(&plain), rows(&packed));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                "{name}: row {i}: {g} vs {w}"
            );
        }
        let batch = Batch::new(&gpu, cfg, &tokens, &targets).unwrap();
        assert!(packed.forward_loss(&gpu, &batch, Some(0.5)).is_err());
    }
}

/// The GPU model's logits (full precision, no blend).
fn gpu_logits(
    gpu: &Gpu,
    cfg: &bitnet_core::config::ModelConfig,
    params: &std::collections::BTreeMap<String, Vec<f32>>,
    tokens: &[Vec<u32>],
) -> Vec<f32> {
    let targets = next_token_targets(tokens, None);
    let setup = ModelSetup {
        quantizer: Quantizer::Absmean,
        post_attn_norm: false,
        quantize_lm_head: false,
        subln: false,
        act8: false,
    };
    let m = GpuModel::new(gpu, cfg, params, setup).unwrap();
    let batch = Batch::new(gpu, cfg, tokens, &targets).unwrap();
    gpu.submit(&m.forward_backward(gpu, &batch, None).unwrap());
    let n = tokens.len() * tokens[0].len() * cfg.vocab_size;
    pollster::block_on(gpu.read_f32("logits", batch.logits(), n)).unwrap()
}

/// RoPE scaling (`linear`, `dynamic`, `llama3`, `yarn`) on the GPU: logits as transformers
/// computes them (tests/fixtures/oracle/rope).
#[test]
fn gpu_model_rope_scaling_matches_transformers() {
    let gpu = pollster::block_on(Gpu::new())
        .expect("a GPU adapter is required for this test (install mesa-vulkan-drivers)");
    let tokens = oracle::tokens();
    let (model, params) = oracle::load("llama");
    let default = gpu_logits(&gpu, &model.config, &params, &tokens);
    for rope_type in oracle::ROPE_TYPES {
        let (model, params) = oracle::load_rope(rope_type);
        let logits = gpu_logits(&gpu, &model.config, &params, &tokens);
        oracle::check_rope(rope_type, &logits, &default);
    }
}

/// The extra norms' calibration on the GPU (each layer's mean RMS of the o_proj output, the
/// attention output and the SwiGLU output over the real tokens) equals the CPU reference model's.
#[test]
fn gpu_calibration_of_the_extra_norms_matches_the_cpu_reference() {
    use bitnet_core::cpu::model::{ModelOptions, loss_and_grads};
    use bitnet_core::cpu::norm::mean_rms;
    let gpu = pollster::block_on(Gpu::new())
        .expect("a GPU adapter is required for this test (install mesa-vulkan-drivers)");
    let tokens = oracle::tokens();
    let targets = next_token_targets(&tokens, None);
    // The second sequence's last 4 positions stand for padding: not counted.
    let t = tokens[0].len();
    let rows: Vec<usize> = (0..t).chain(t..2 * t - 4).collect();
    for model_name in oracle::MODELS {
        let (model, params) = oracle::load(model_name);
        let cfg = &model.config;
        let setup = ModelSetup {
            quantizer: Quantizer::Absmean,
            post_attn_norm: false,
            quantize_lm_head: false,
            subln: false,
            act8: false,
        };
        let m = GpuModel::for_inference(&gpu, cfg, &params, setup).unwrap();
        let batch = Batch::new(&gpu, cfg, &tokens, &targets).unwrap();
        gpu.submit(&m.forward_loss(&gpu, &batch, None).unwrap());
        let got = pollster::block_on(m.norm_input_rms(&gpu, &batch, &rows)).unwrap();
        let cpu = loss_and_grads(cfg, &params, &tokens, &targets, &ModelOptions::default());
        let q = cfg.num_attention_heads * cfg.head_dim;
        for l in 0..cfg.num_hidden_layers {
            for (what, g, x, width) in [
                (
                    "o_proj output",
                    got.o_proj_output[l],
                    &cpu.o_out[l],
                    cfg.hidden_size,
                ),
                ("attention output", got.attention_output[l], &cpu.att[l], q),
                (
                    "SwiGLU output",
                    got.swiglu_output[l],
                    &cpu.h_act[l],
                    cfg.intermediate_size,
                ),
            ] {
                let want = mean_rms(x, width, &rows);
                assert!(
                    ((g - want) / want).abs() < 1e-4,
                    "{model_name} layer {l} {what}: GPU {g}, CPU {want}"
                );
            }
        }
    }
}

/// A sliding window as long as the sequence changes nothing on the GPU either: transformers'
/// logits for the mistral fixture with `sliding_window` 12.
#[test]
fn gpu_model_with_a_sliding_window_as_long_as_the_sequence_matches_transformers() {
    let gpu = pollster::block_on(Gpu::new())
        .expect("a GPU adapter is required for this test (install mesa-vulkan-drivers)");
    let (model, params, want) = oracle::load_window();
    let logits = gpu_logits(&gpu, &model.config, &params, &oracle::tokens());
    oracle::assert_logits("mistral sliding window (GPU)", &logits, &want);
}
