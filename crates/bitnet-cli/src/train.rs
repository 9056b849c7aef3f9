//! `bitnet train`: the seed's training command on the GPU. Loads the model and the JSONL data,
//! prints the memory the run needs (refusing when a tensor would not fit a binding), runs the
//! trainer with a progress line, appends metrics.jsonl, writes checkpoints atomically every
//! --save-steps keeping the last --save-total-limit, resumes from the newest with --resume, and at
//! the end writes the packed file (same quantizer as training), a Hugging Face folder with the
//! dequantized ternary weights, and training_manifest.json — every value measured.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bitnet_core::dataset::{LossMask, parse_jsonl, tokenize};
use bitnet_core::model::{MemoryFiles, Model};
use bitnet_core::packed::PackedModel;
use bitnet_core::params::param_table;
use bitnet_core::safetensors::{OwnedTensor, serialize};
use bitnet_core::summary::human_bytes;
use bitnet_core::tokenizer::Tokenizer;
use bitnet_core::{Packing, Schedule};
use bitnet_gpu::Gpu;
use bitnet_gpu::model::ModelSetup;
use bitnet_gpu::optimizer::AdamConfig;
use bitnet_gpu::packer::{PackOptions, pack_model};
use bitnet_gpu::trainer::{TrainSettings, Trainer};

use crate::files::{DirFiles, io, write_atomic};

/// Everything `bitnet train` was asked for.
pub struct TrainArgs {
    pub base_model: PathBuf,
    pub dataset: PathBuf,
    pub out_dir: PathBuf,
    pub settings: TrainSettings,
    pub setup: ModelSetup,
    pub seq_len: usize,
    pub loss_mask: LossMask,
    pub save_steps: u64,
    pub save_total_limit: usize,
    pub resume: bool,
    pub log_every: u64,
}

/// One line of metrics.jsonl.
#[derive(serde::Serialize, serde::Deserialize)]
struct Metrics {
    step: u64,
    lambda: f64,
    phase: String,
    loss: f32,
    lr: f64,
    grad_norm: f32,
    tokens_per_s: f64,
    /// Fraction of zero codes over every ternary weight, with the training quantizer.
    sparsity: f64,
}

/// The checkpoints in `dir`, oldest first: (step, path).
fn checkpoints(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name
                .strip_prefix("checkpoint-")?
                .strip_suffix(".safetensors")?
                .parse()
                .ok()?;
            Some((step, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Fraction of zero codes over every ternary weight of `weights`.
fn sparsity(
    cfg: &bitnet_core::config::ModelConfig,
    weights: &BTreeMap<String, Vec<f32>>,
    setup: &ModelSetup,
) -> f64 {
    let (mut zeros, mut total) = (0u64, 0u64);
    for spec in param_table(cfg) {
        if !spec.is_ternary(setup.quantize_lm_head) {
            continue;
        }
        if let Some(w) = weights.get(&spec.name) {
            let t = setup.quantizer.quantize(w);
            zeros += t.codes.iter().filter(|&&c| c == 0).count() as u64;
            total += t.codes.len() as u64;
        }
    }
    zeros as f64 / total.max(1) as f64
}

/// Runs the training; returns training_manifest.json's text (which `bitnet train --json` prints).
/// With `json`, nothing is printed here.
pub fn train(args: &TrainArgs, json: bool) -> Result<String, String> {
    let s = &args.settings;
    if s.steps == 0 || s.bsz == 0 || s.grad_accum == 0 || args.seq_len < 2 || args.log_every == 0 {
        return Err("--steps, --bsz, --grad-accum and --log-every must be positive and --seq-len at least 2".into());
    }
    if !(s.lr > 0.0 && s.lr.is_finite()) {
        return Err(format!("--lr must be a positive number, got {}", s.lr));
    }
    s.schedule.parse::<Schedule>()?;
    let files = DirFiles::open(&args.base_model)?;
    let dir_name = args.base_model.display().to_string();
    let model = pollster::block_on(Model::open(&files)).map_err(|e| format!("{dir_name}: {e}"))?;
    let cfg = model.config.clone();
    let tok_bytes = model
        .tokenizer_json
        .as_ref()
        .ok_or_else(|| format!("{dir_name}: no tokenizer.json (training needs one)"))?;
    let tok = Tokenizer::from_bytes("tokenizer.json", tok_bytes)
        .map_err(|e| format!("{dir_name}: {e}"))?;
    let data_name = args.dataset.display().to_string();
    let data_bytes = std::fs::read(&args.dataset).map_err(|e| io(&args.dataset, e))?;
    let examples = parse_jsonl(&data_name, &data_bytes).map_err(|e| e.to_string())?;
    let mut seqs = Vec::with_capacity(examples.len());
    for ex in &examples {
        let seq = tokenize(&tok, ex, args.seq_len, args.loss_mask)
            .map_err(|e| format!("{data_name}: {e}"))?;
        if let Some(&id) = seq.ids.iter().find(|&&id| id as usize >= cfg.vocab_size) {
            return Err(format!(
                "{data_name}: the tokenizer gives id {id}, outside the model's vocabulary of {}",
                cfg.vocab_size
            ));
        }
        seqs.push(seq);
    }

    // The memory the run needs, before any of it is allocated.
    let params: u64 = param_table(&cfg).iter().map(|p| p.numel() as u64).sum();
    let tokens = (s.bsz * args.seq_len) as u64;
    let (h, i, v) = (
        cfg.hidden_size as u64,
        cfg.intermediate_size as u64,
        cfg.vocab_size as u64,
    );
    let layers = cfg.num_hidden_layers as u64;
    let qkv = ((cfg.num_attention_heads + 2 * cfg.num_key_value_heads) * cfg.head_dim) as u64;
    let activations = 4 * tokens * (layers * (10 * h + 2 * qkv + 3 * i) + 2 * v + 12 * h + 4 * i);
    let state = 16 * params; // weights, gradients, two moments
    // The largest single buffer: a micro-batch's logits, or the largest weight.
    let biggest_weight = param_table(&cfg)
        .into_iter()
        .max_by_key(|p| p.numel())
        .map(|p| (4 * p.numel() as u64, p.name))
        .map(|(bytes, name)| (name, bytes));
    let (largest_name, largest) = match biggest_weight {
        Some((name, bytes)) if bytes > 4 * tokens * v => (name, bytes),
        _ => ("the logits of a micro-batch".to_string(), 4 * tokens * v),
    };
    let gpu = pollster::block_on(Gpu::new()).map_err(|e| e.to_string())?;
    if !json {
        println!(
            "GPU memory needed: {} ({} weights, gradients and AdamW moments; {} activations per micro-batch of {} tokens); largest buffer {} ({largest_name}) of {} allowed per binding on {}",
            human_bytes(state + activations),
            human_bytes(state),
            human_bytes(activations),
            tokens,
            human_bytes(largest),
            human_bytes(gpu.max_binding()),
            gpu.info.name
        );
    }
    if largest > gpu.max_binding() {
        return Err(format!(
            "{largest_name} needs {}, more than the adapter's {} per binding (micro-batch {} × {} tokens, vocabulary {}); lower --bsz or --seq-len, or use a GPU with larger bindings",
            human_bytes(largest),
            human_bytes(gpu.max_binding()),
            s.bsz,
            args.seq_len,
            cfg.vocab_size
        ));
    }

    // Linear layers run with the variant and blend path measured fastest on this adapter.
    let clock = Instant::now();
    let plan = pollster::block_on(gpu.tune_gemm(&|| clock.elapsed().as_secs_f64() * 1e3))
        .map_err(|e| e.to_string())?;
    if !json {
        println!(
            "linear layers: {:?} kernels, λ-blend {:?} (measured fastest here)",
            plan.variant, plan.blend
        );
    }
    let weights =
        pollster::block_on(model.all_f32(&files)).map_err(|e| format!("{dir_name}: {e}"))?;
    std::fs::create_dir_all(&args.out_dir).map_err(|e| io(&args.out_dir, e))?;
    let mut trainer = Trainer::new(&gpu, &cfg, &weights, args.setup, seqs, 0, s.clone())
        .map_err(|e| e.to_string())?;
    let metrics_path = args.out_dir.join("metrics.jsonl");
    let mut first_loss = None;
    if args.resume {
        match checkpoints(&args.out_dir).pop() {
            Some((step, path)) => {
                let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
                trainer
                    .restore(&gpu, &path.display().to_string(), &bytes)
                    .map_err(|e| e.to_string())?;
                // Keep the metrics of the steps the checkpoint includes.
                let kept: Vec<String> = std::fs::read_to_string(&metrics_path)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| serde_json::from_str::<Metrics>(l).is_ok_and(|m| m.step < step))
                    .map(String::from)
                    .collect();
                first_loss = kept
                    .first()
                    .and_then(|l| serde_json::from_str::<Metrics>(l).ok())
                    .map(|m| m.loss);
                write_atomic(
                    &metrics_path,
                    (kept.join("\n") + if kept.is_empty() { "" } else { "\n" }).as_bytes(),
                )?;
                if !json {
                    println!("resumed from {} at step {step}", path.display());
                }
            }
            None => {
                if !json {
                    println!(
                        "no checkpoint in {}: starting from step 0",
                        args.out_dir.display()
                    );
                }
            }
        }
    } else {
        write_atomic(&metrics_path, b"")?;
    }

    let start = Instant::now();
    let start_step = trainer.step;
    let mut last_loss = f32::NAN;
    let mut metrics = std::fs::OpenOptions::new()
        .append(true)
        .open(&metrics_path)
        .map_err(|e| io(&metrics_path, e))?;
    while trainer.step < s.steps {
        let t0 = Instant::now();
        let r = pollster::block_on(trainer.step(&gpu)).map_err(|e| {
            let last = checkpoints(&args.out_dir).pop();
            match last {
                Some((step, p)) => format!(
                    "{e}; the last checkpoint (step {step}) is intact: {}",
                    p.display()
                ),
                None => e.to_string(),
            }
        })?;
        let secs = t0.elapsed().as_secs_f64();
        first_loss.get_or_insert(r.loss);
        last_loss = r.loss;
        let done = trainer.step;
        if r.step % args.log_every == 0 || done == s.steps {
            let w = pollster::block_on(trainer.weights(&gpu)).map_err(|e| e.to_string())?;
            let m = Metrics {
                step: r.step,
                lambda: r.lambda,
                phase: r.phase.to_string(),
                loss: r.loss,
                lr: r.lr,
                grad_norm: r.grad_norm,
                tokens_per_s: r.tokens as f64 / secs,
                sparsity: sparsity(&cfg, &w, &args.setup),
            };
            let line = serde_json::to_string(&m).map_err(|e| e.to_string())?;
            writeln!(metrics, "{line}").map_err(|e| io(&metrics_path, e))?;
        }
        if done % args.save_steps == 0 || done == s.steps {
            let bytes = pollster::block_on(trainer.checkpoint(&gpu)).map_err(|e| e.to_string())?;
            write_atomic(
                &args.out_dir.join(format!("checkpoint-{done}.safetensors")),
                &bytes,
            )?;
            let all = checkpoints(&args.out_dir);
            for (_, old) in &all[..all.len().saturating_sub(args.save_total_limit.max(1))] {
                std::fs::remove_file(old).map_err(|e| io(old, e))?;
            }
        }
        if !json {
            let per_step = start.elapsed().as_secs_f64() / (done - start_step) as f64;
            let eta = per_step * (s.steps - done) as f64;
            let width = 24;
            let filled = (width as u64 * done / s.steps) as usize;
            print!(
                "\r[{}{}] step {done}/{} λ {:.3} {:<7} loss {:.4} {:.0} tok/s ETA {:.0} s   ",
                "#".repeat(filled),
                "-".repeat(width - filled),
                s.steps,
                r.lambda,
                r.phase,
                r.loss,
                r.tokens as f64 / secs,
                eta
            );
            let _ = std::io::stdout().flush();
        }
    }
    if !json {
        println!();
    }

    // Outputs: the packed file with the training quantizer, the HF folder, the manifest.
    let w = pollster::block_on(trainer.weights(&gpu)).map_err(|e| e.to_string())?;
    let table: Vec<String> = param_table(&cfg).into_iter().map(|p| p.name).collect();
    let mut tensors = Vec::new();
    for name in &table {
        tensors.push(OwnedTensor::f32(
            name.clone(),
            trainer.model.shape(name),
            &w[name],
        ));
    }
    let mut mem = BTreeMap::new();
    mem.insert(
        "config.json".to_string(),
        model.config_json.clone().into_bytes(),
    );
    mem.insert("tokenizer.json".to_string(), tok_bytes.clone());
    mem.insert(
        "model.safetensors".to_string(),
        serialize(tensors, &BTreeMap::new()),
    );
    let mem = MemoryFiles(mem);
    let trained = pollster::block_on(Model::open(&mem)).map_err(|e| e.to_string())?;
    let opts = PackOptions {
        quantizer: args.setup.quantizer,
        packing: Packing::TwoBit,
        quantize_lm_head: args.setup.quantize_lm_head,
    };
    let (packed_bytes, report) =
        pollster::block_on(pack_model(Some(&gpu), &trained, &mem, &opts, |_| {}))
            .map_err(|e| e.to_string())?;
    let packed_path = args.out_dir.join("model.bitnet.safetensors");
    write_atomic(&packed_path, &packed_bytes)?;
    let packed = PackedModel::parse(&packed_path.display().to_string(), &packed_bytes)
        .map_err(|e| e.to_string())?;
    let hf_dir = args.out_dir.join("hf");
    std::fs::create_dir_all(&hf_dir).map_err(|e| io(&hf_dir, e))?;
    for (fname, data) in packed.unpack_to_hf().map_err(|e| e.to_string())? {
        let p = hf_dir.join(fname);
        std::fs::write(&p, data).map_err(|e| io(&p, e))?;
    }
    if args.setup.post_attn_norm {
        let gains: Vec<OwnedTensor> = trainer
            .model
            .names
            .iter()
            .filter(|n| n.ends_with("post_attn_norm.weight"))
            .map(|n| OwnedTensor::f32(n.clone(), trainer.model.shape(n), &w[n]))
            .collect();
        let p = args.out_dir.join("post_attn_norm.safetensors");
        write_atomic(&p, &serialize(gains, &BTreeMap::new()))?;
    }
    let final_lambda = trainer.settings.steps.checked_sub(1).map_or(0.0, |last| {
        s.schedule
            .parse::<Schedule>()
            .map_or(0.0, |sch| sch.lambda(last, s.steps, s.lambda_warmup_frac))
    });
    let checksum = packed
        .st
        .header
        .metadata
        .get("checksum")
        .cloned()
        .unwrap_or_default();
    let manifest = serde_json::json!({
        "base_model": args.base_model.display().to_string(),
        "dataset_path": args.dataset.display().to_string(),
        "training_steps": s.steps,
        "lambda_warmup_frac": s.lambda_warmup_frac,
        "rmsnorm_post_attn": args.setup.post_attn_norm,
        "final_lambda": final_lambda,
        "compression_ready": final_lambda == 1.0,
        "model_type": "bitnet158",
        "quantizer": args.setup.quantizer.name(),
        "lambda_schedule": s.schedule,
        "first_loss": first_loss,
        "final_loss": last_loss,
        "sparsity": report.mean_sparsity,
        "packed_file": packed_path.display().to_string(),
        "packed_bytes": packed_bytes.len(),
        "checksum": checksum,
        "hf_folder": hf_dir.display().to_string(),
        "post_attn_norm_file": args.setup.post_attn_norm.then_some("post_attn_norm.safetensors"),
        "settings": s,
        "adapter": gpu.info.name,
    });
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| e.to_string())?;
    write_atomic(
        &args.out_dir.join("training_manifest.json"),
        text.as_bytes(),
    )?;
    if !json {
        println!(
            "trained {} steps: loss {:.4} → {:.4}, final λ {final_lambda}, sparsity {:.1} %; wrote {} ({}), {} and training_manifest.json",
            s.steps,
            first_loss.unwrap_or(f32::NAN),
            last_loss,
            report.mean_sparsity * 100.0,
            packed_path.display(),
            human_bytes(packed_bytes.len() as u64),
            hf_dir.display()
        );
        if args.setup.post_attn_norm {
            println!(
                "note: the post-attention RMSNorm gains are in post_attn_norm.safetensors; a stock transformers model class ignores them"
            );
        }
    }
    Ok(text)
}

/// The default of --save-steps: a quarter of the steps (at least 1).
pub fn default_save_steps(steps: u64) -> u64 {
    (steps / 4).max(1)
}

/// AdamW settings from the flags.
pub fn adam(weight_decay: f32, max_grad_norm: f32) -> AdamConfig {
    AdamConfig {
        weight_decay,
        max_grad_norm,
        ..AdamConfig::default()
    }
}
