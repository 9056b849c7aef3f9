//! Optimizer steps on the GPU: gradient accumulation over micro-batches of the seed's training text,
//! the λ schedule and cosine learning rate, clipping and AdamW. The loss falls, and a second run from
//! the same start ends with bit-identical weights. Fails, never skips, without an adapter.
#![cfg(not(target_arch = "wasm32"))]

#[allow(dead_code)]
#[path = "../../../tests/support/oracle.rs"]
mod oracle;

use bitnet_core::dataset::{Example, LossMask, pad_batch, tokenize};
use bitnet_core::quant::Quantizer;
use bitnet_core::schedule::{Schedule, cosine_lr};
use bitnet_core::tokenizer::Tokenizer;
use bitnet_gpu::Gpu;
use bitnet_gpu::model::{Batch, GpuModel, ModelSetup};
use bitnet_gpu::optimizer::{AdamConfig, Optimizer};

const STEPS: u64 = 20;

/// Runs STEPS optimizer steps (2 micro-batches of 2 examples each) and returns the loss of every
/// step and the final q_proj weight of layer 0.
fn train(gpu: &Gpu) -> (Vec<f32>, Vec<f32>) {
    let (model, weights) = oracle::load("llama");
    let cfg = &model.config;
    let tok =
        Tokenizer::from_bytes("tokenizer.json", model.tokenizer_json.as_ref().unwrap()).unwrap();
    let example = |i: &str, o: &str| Example {
        instruction: i.into(),
        input: String::new(),
        output: o.into(),
        domain: String::new(),
    };
    let data = [
        example("Write a haiku about the sea.", "Waves fold into foam."),
        example(
            "Solve this math problem: what is 12 times 7?",
            "12 times 7 is 84.",
        ),
        example(
            "Write a Python function to reverse a string.",
            "def reverse(s): return s[::-1]",
        ),
        example("Why is the sky blue?", "Blue light scatters most."),
    ];
    let seqs: Vec<_> = data
        .iter()
        .map(|e| tokenize(&tok, e, 32, LossMask::All).unwrap())
        .collect();
    let mut batches: Vec<Batch> = seqs
        .chunks(2)
        .map(|c| {
            let b = pad_batch(c, 2);
            Batch::new(gpu, cfg, &b.tokens, &b.targets).unwrap()
        })
        .collect();
    let total: u32 = batches.iter().map(|b| b.n_valid).sum();
    batches.iter_mut().for_each(|b| b.loss_divisor = total);
    let setup = ModelSetup {
        quantizer: Quantizer::Absmean,
        post_attn_norm: false,
        quantize_lm_head: false,
    };
    let m = GpuModel::new(gpu, cfg, &weights, setup).unwrap();
    let opt = Optimizer::new(gpu, &m, AdamConfig::default()).unwrap();
    let mut losses = Vec::new();
    for step in 0..STEPS {
        let lambda = Schedule::Linear.lambda(step, STEPS, 0.4) as f32;
        let lr = cosine_lr(3e-3, step, STEPS, 0.1) as f32;
        let mut ops = m.zero_grads();
        for b in &batches {
            ops.extend(m.forward_backward(gpu, b, Some(lambda)).unwrap());
        }
        ops.extend(opt.step_ops(gpu, &m, step as u32 + 1, lr));
        gpu.submit(&ops);
        let mut loss = 0.0;
        for b in &batches {
            let rows = (b.b * b.t) as usize;
            loss += pollster::block_on(gpu.read_f32("loss", &b.loss, rows))
                .unwrap()
                .iter()
                .sum::<f32>();
        }
        let norm = pollster::block_on(gpu.read_f32("norm", opt.norm_buffer(), m.names.len() + 1))
            .unwrap()[m.names.len()];
        assert!(
            loss.is_finite() && norm.is_finite() && norm > 0.0,
            "step {step}: loss {loss}, grad norm {norm}"
        );
        losses.push(loss);
    }
    let name = "model.layers.0.self_attn.q_proj.weight";
    let w = pollster::block_on(gpu.read_f32(name, m.buffer(name).unwrap(), m.numel(name))).unwrap();
    (losses, w)
}

#[test]
fn training_lowers_the_loss_and_is_deterministic() {
    let gpu = pollster::block_on(Gpu::new()).expect("a GPU adapter is required for this test");
    let (losses, w1) = train(&gpu);
    eprintln!("losses: {losses:?}");
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    assert!(last < 0.8 * first, "loss went from {first} to {last}");
    let (again, w2) = train(&gpu);
    assert_eq!(losses, again, "the same run gave different losses");
    assert!(
        w1.iter().zip(&w2).all(|(a, b)| a.to_bits() == b.to_bits()),
        "the same run gave different weights"
    );
}
