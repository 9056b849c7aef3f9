//! Optimizer steps on the GPU through the Trainer: gradient accumulation over micro-batches of the
//! seed's training text, the λ schedule and cosine learning rate, clipping and AdamW. The loss
//! falls; a second run from the same start gives bit-identical weights; a run resumed from a
//! checkpoint ends where the uninterrupted one does; a NaN stops training naming the step.
//! Fails, never skips, without an adapter.
#![cfg(not(target_arch = "wasm32"))]

#[allow(dead_code)]
#[path = "../../../tests/support/oracle.rs"]
mod oracle;

use std::collections::BTreeMap;

use bitnet_core::Schedule;
use bitnet_core::config::ModelConfig;
use bitnet_core::dataset::{Example, LossMask, Sequence, tokenize};
use bitnet_core::quant::Quantizer;
use bitnet_core::tokenizer::Tokenizer;
use bitnet_gpu::Gpu;
use bitnet_gpu::model::{GpuModel, ModelSetup};
use bitnet_gpu::optimizer::AdamConfig;
use bitnet_gpu::trainer::{LossKind, TrainError, TrainSettings, Trainer};

fn gpu() -> Gpu {
    pollster::block_on(Gpu::new()).expect("a GPU adapter is required for this test")
}

/// A trainer on the llama fixture over five short examples (2 sequences × 2 micro-batches a step).
fn trainer(gpu: &Gpu, steps: u64) -> Trainer {
    trainer_with(gpu, steps, false)
}

fn trainer_with(gpu: &Gpu, steps: u64, freeze_embeddings: bool) -> Trainer {
    trainer_of(gpu, steps, freeze_embeddings, false, LossKind::Ce)
}

fn trainer_of(
    gpu: &Gpu,
    steps: u64,
    freeze_embeddings: bool,
    subln: bool,
    loss: LossKind,
) -> Trainer {
    let (cfg, weights, data, settings) = parts(steps, freeze_embeddings, subln, loss);
    Trainer::new(gpu, &cfg, &weights, data, None, 2, settings).unwrap()
}

/// What a trainer of [`trainer_of`] is made of: the config, weights, data and settings.
fn parts(
    steps: u64,
    freeze_embeddings: bool,
    subln: bool,
    loss: LossKind,
) -> (
    ModelConfig,
    BTreeMap<String, Vec<f32>>,
    Vec<Sequence>,
    TrainSettings,
) {
    let (model, weights) = oracle::load("llama");
    let tok =
        Tokenizer::from_bytes("tokenizer.json", model.tokenizer_json.as_ref().unwrap()).unwrap();
    let data = [
        ("Write a haiku about the sea.", "Waves fold into foam."),
        (
            "Solve this math problem: what is 12 times 7?",
            "12 times 7 is 84.",
        ),
        (
            "Write a Python function to reverse a string.",
            "def reverse(s): return s[::-1]",
        ),
        ("Why is the sky blue?", "Blue light scatters most."),
        ("Name a prime number.", "Seven is prime."),
    ]
    .iter()
    .map(|(i, o)| {
        let e = Example {
            instruction: i.to_string(),
            input: String::new(),
            output: o.to_string(),
            domain: String::new(),
        };
        tokenize(&tok, &e, 32, LossMask::All).unwrap()
    })
    .collect();
    let settings = TrainSettings {
        steps,
        bsz: 2,
        grad_accum: 2,
        lr: 3e-3,
        warmup_ratio: 0.1,
        lambda_warmup_frac: 0.4,
        schedule: Schedule::Linear,
        seed: 42,
        adam: AdamConfig::default(),
        freeze_embeddings,
        setup: ModelSetup {
            quantizer: Quantizer::Absmean,
            post_attn_norm: false,
            quantize_lm_head: false,
            subln,
            act8: false,
        },
        seq_len: 32,
        loss_mask: LossMask::All,
        norm_init: Default::default(),
        loss,
        kd_temperature: 1.0,
        kd_weight: 0.5,
        kd_topk: None,
        fp_dtype: None,
    };
    (model.config, weights, data, settings)
}

fn run(gpu: &Gpu, t: &mut Trainer, steps: u64) -> Vec<f32> {
    (0..steps)
        .map(|_| pollster::block_on(t.step(gpu)).unwrap().loss)
        .collect()
}

fn weights(gpu: &Gpu, t: &Trainer) -> BTreeMap<String, Vec<u32>> {
    pollster::block_on(t.weights(gpu))
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.iter().map(|x| x.to_bits()).collect()))
        .collect()
}

#[test]
fn training_lowers_the_loss_and_is_deterministic() {
    let gpu = gpu();
    let mut a = trainer(&gpu, 20);
    let losses = run(&gpu, &mut a, 20);
    eprintln!("losses: {losses:?}");
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    assert!(last < 0.8 * first, "loss went from {first} to {last}");
    let mut b = trainer(&gpu, 20);
    assert_eq!(
        losses,
        run(&gpu, &mut b, 20),
        "the same run gave different losses"
    );
    assert!(
        weights(&gpu, &a) == weights(&gpu, &b),
        "the same run gave different weights"
    );
}

#[test]
fn a_resumed_run_ends_with_the_same_weights() {
    let gpu = gpu();
    let mut whole = trainer(&gpu, 6);
    let losses = run(&gpu, &mut whole, 6);
    let mut first = trainer(&gpu, 6);
    let early = run(&gpu, &mut first, 3);
    let ckpt = pollster::block_on(first.checkpoint(&gpu)).unwrap();
    drop(first);
    let mut resumed = trainer(&gpu, 6);
    resumed
        .restore(&gpu, "checkpoint.safetensors", &ckpt)
        .unwrap();
    assert_eq!(resumed.step, 3);
    let late = run(&gpu, &mut resumed, 3);
    assert_eq!([early, late].concat(), losses);
    assert!(
        weights(&gpu, &whole) == weights(&gpu, &resumed),
        "resumed weights differ"
    );
    // A checkpoint of other settings is refused by name.
    let mut other = trainer(&gpu, 7);
    let err = other
        .restore(&gpu, "checkpoint.safetensors", &ckpt)
        .unwrap_err();
    assert!(
        err.to_string().contains("checkpoint.safetensors")
            && err.to_string().contains("other settings")
            && err.to_string().contains("--steps 6 (this run: 7)"),
        "{err}"
    );
}

#[test]
fn a_nan_stops_training_and_names_the_step() {
    let gpu = gpu();
    let mut t = trainer(&gpu, 6);
    run(&gpu, &mut t, 2);
    let name = "model.layers.1.mlp.up_proj.weight";
    let mut w =
        pollster::block_on(gpu.read_f32(name, t.model.buffer(name).unwrap(), t.model.numel(name)))
            .unwrap();
    w[7] = f32::NAN;
    gpu.write_f32(t.model.buffer(name).unwrap(), &w);
    match pollster::block_on(t.step(&gpu)) {
        Err(e @ TrainError::NonFinite { step: 2, .. }) => {
            assert!(e.to_string().contains("step 2"), "{e}")
        }
        other => panic!(
            "expected a non-finite error at step 2, got {:?}",
            other.map(|r| r.loss)
        ),
    }
    assert_eq!(t.step, 2, "the failed step must not count");
}

#[test]
fn frozen_embeddings_stay_as_they_were() {
    let gpu = gpu();
    let mut t = trainer_with(&gpu, 4, true);
    let before = weights(&gpu, &t);
    run(&gpu, &mut t, 2);
    let after = weights(&gpu, &t);
    let embed = "model.embed_tokens.weight";
    assert!(before[embed] == after[embed], "the embeddings moved");
    let q = "model.layers.0.self_attn.q_proj.weight";
    assert!(before[q] != after[q], "the projections did not train");
}

/// The one memory plan (`bitnet inspect`, the app, `bitnet train`) matches what a trainer really
/// allocates for its first step — model, gradients, AdamW moments and the activations of every
/// micro-batch — within 10 % (every sequence here fills the 32 tokens the plan assumes).
#[test]
fn the_memory_plan_matches_what_training_allocates() {
    let gpu = gpu();
    for (subln, loss) in [
        (false, LossKind::Ce),
        (true, LossKind::Ce),
        (false, LossKind::CeKd),
    ] {
        let before = gpu.allocated_bytes();
        let mut t = trainer_of(&gpu, 3, false, subln, loss);
        pollster::block_on(t.step(&gpu)).unwrap();
        let used = gpu.allocated_bytes() - before;
        let plan = t.settings.memory_plan(&t.model.cfg);
        assert_eq!(plan.teacher > 0, loss != LossKind::Ce);
        let ratio = used as f64 / plan.total as f64;
        assert!(
            (0.9..=1.1).contains(&ratio),
            "SubLN {subln}, loss {loss:?}: allocated {used} bytes, the plan says {} ({ratio:.3})",
            plan.total
        );
    }
}

/// Distillation from the frozen base model: at λ = 0 the student is the teacher, so `--loss kd`
/// starts at a KL of 0 and `ce+kd` at (1 − W)·CE; once λ grows the KL is positive and training
/// lowers it.
#[test]
fn distillation_starts_at_the_teacher_and_learns_from_it() {
    let gpu = gpu();
    let first = |loss| {
        let mut t = trainer_of(&gpu, 10, false, false, loss);
        assert_eq!(t.lambda(), 0.0);
        run(&gpu, &mut t, 1)[0]
    };
    let (ce, kd, both) = (
        first(LossKind::Ce),
        first(LossKind::Kd),
        first(LossKind::CeKd),
    );
    assert!(kd.abs() < 1e-5, "KL of the base model to itself: {kd}");
    assert!(
        ((both - 0.5 * ce) / ce).abs() < 1e-5,
        "ce+kd {both}, ce {ce}"
    );
    let mut t = trainer_of(&gpu, 10, false, false, LossKind::Kd);
    let losses = run(&gpu, &mut t, 10);
    assert!(losses[4] > 1e-4, "the KL at λ = {}: {}", 0.5, losses[4]);
    assert!(losses[9] < losses[5], "the KL does not fall: {losses:?}");
}

/// Top-K distillation from soft labels (the sidecar's path: the teacher's top K computed once,
/// before training) gives the losses of the live teacher restricted to the same K, step by step;
/// and top K = the whole vocabulary gives the full distillation's.
#[test]
fn soft_labels_train_like_the_live_teacher_restricted_to_the_same_top_k() {
    let gpu = gpu();
    let (cfg, weights, data, settings) = parts(6, false, false, LossKind::CeKd);
    let settings = TrainSettings {
        kd_temperature: 2.0,
        ..settings
    };
    let run_with = |topk: Option<usize>, soft| {
        let s = TrainSettings {
            kd_topk: topk,
            fp_dtype: None,
            ..settings.clone()
        };
        let mut t = Trainer::new(&gpu, &cfg, &weights, data.clone(), soft, 2, s).unwrap();
        run(&gpu, &mut t, 6)
    };
    let plain = ModelSetup {
        subln: false,
        ..settings.setup
    };
    let teacher = GpuModel::for_inference(&gpu, &cfg, &weights, plain).unwrap();
    let labels = pollster::block_on(bitnet_gpu::soft::soft_labels(
        &gpu, &teacher, &data, 4, 3, 2,
    ))
    .unwrap();
    for (l, seq) in labels.iter().zip(&data) {
        assert_eq!(l.positions(), seq.ids.len() - 1);
    }
    let live = run_with(Some(4), None);
    let soft = run_with(Some(4), Some(labels));
    for (step, (a, b)) in live.iter().zip(&soft).enumerate() {
        assert!(
            ((a - b) / a).abs() < 1e-4,
            "step {step}: live {a} vs soft labels {b}"
        );
    }
    // Top K restricts: at λ > 0 its losses are not the full distillation's …
    let full = run_with(None, None);
    assert!((full[5] - live[5]).abs() > 1e-3, "{full:?} {live:?}");
    // … unless K is the whole vocabulary.
    let all = run_with(Some(cfg.vocab_size), None);
    for (a, b) in full.iter().zip(&all) {
        assert!(((a - b) / a).abs() < 1e-4, "full {full:?} vs top-V {all:?}");
    }
    // Soft labels that do not cover the data are refused, naming the example.
    let short = vec![
        bitnet_core::soft::SoftLabels {
            k: 4,
            ids: vec![0; 4],
            probs: vec![0.0; 4],
        };
        data.len()
    ];
    let s = TrainSettings {
        kd_topk: Some(4),
        fp_dtype: None,
        ..settings.clone()
    };
    let err = Trainer::new(&gpu, &cfg, &weights, data.clone(), Some(short), 2, s)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("example 1"), "{err}");
}
