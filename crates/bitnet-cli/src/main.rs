//! `bitnet`: the native command-line shell over bitnet-core and bitnet-gpu. Every command takes
//! `--json` for machine-readable output. GPU work is async in the libraries; this binary blocks on
//! it at the top with pollster.

mod files;
mod infer;
mod pipeline;
mod selfgen;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bitnet_core::cpu::model::next_token_targets;
use bitnet_core::dataset::LossMask;
use bitnet_core::model::Model;
use bitnet_core::packed::PackedModel;
use bitnet_core::quant::{DEFAULT_THRESHOLD_RATIO, Quantizer, ScaleMode};
use bitnet_core::safetensors::{OwnedTensor, serialize};
use bitnet_core::summary::{ModelSummary, human_bytes};
use bitnet_core::tokenizer::Tokenizer;
use bitnet_core::{Packing, Schedule};
use bitnet_gpu::Gpu;
use bitnet_gpu::model::{Batch, GpuModel, ModelSetup};
use bitnet_gpu::packer::{PackOptions, pack_model};
use bitnet_gpu::trainer::TrainSettings;
use clap::{Parser, Subcommand, ValueEnum};

use crate::files::DirFiles;

mod train;

#[derive(Parser)]
#[command(
    name = "bitnet",
    version,
    about = "Turn a local language model into a BitNet b1.58 ternary model on your own GPU."
)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the GPU adapter: name, backend, device type, limits and features.
    Info,
    /// Summarize a Hugging Face model folder (config.json, tokenizer.json, *.safetensors).
    Inspect {
        /// Folder with config.json and the .safetensors weights.
        model_dir: PathBuf,
    },
    /// Print λ at every optimizer step of a schedule.
    Schedule {
        /// Total optimizer steps.
        #[arg(long)]
        steps: u64,
        /// Fraction of the steps over which λ ramps from 0 to 1.
        #[arg(
            long = "lambda-warmup-frac",
            alias = "lambda_warmup_frac",
            default_value_t = 0.4
        )]
        lambda_warmup_frac: f64,
        /// linear | sigmoid:K | exp:K | step:N | const:V
        #[arg(long, default_value = "linear")]
        shape: Schedule,
        /// In text output, print every K-th step only (the last step is always printed).
        #[arg(long, default_value_t = 1)]
        every: u64,
    },
    /// Ternarize every projection of a model into a packed file (GPU when available).
    Pack {
        model_dir: PathBuf,
        /// Output file (a safetensors container, see docs/FORMAT.md).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        quant: QuantArgs,
        /// 2bit (4 weights per byte) or trit5 (5 per byte).
        #[arg(long, default_value = "2bit")]
        packing: Packing,
        /// Ternarize lm_head too (the seed did; it usually hurts).
        #[arg(long)]
        quantize_lm_head: bool,
        /// Quantize on the CPU even when a GPU adapter exists.
        #[arg(long)]
        cpu: bool,
    },
    /// Loss, logits and every parameter's gradient of one batch on the GPU, under the Hugging Face
    /// names, so the implementation can be checked against another framework.
    Grads {
        model_dir: PathBuf,
        /// JSON file: a list of token-id lists of equal length.
        #[arg(long)]
        tokens: PathBuf,
        /// λ of the blend W + λ·(Q(W) − W) of every projection (0: the model as it is).
        #[arg(long, default_value_t = 0.0)]
        lambda: f32,
        #[command(flatten)]
        quant: QuantArgs,
        /// Insert the post-attention RMSNorm (gain 1) after every o_proj.
        #[arg(long = "rmsnorm-post-attn", alias = "rmsnorm_post_attn")]
        rmsnorm_post_attn: bool,
        /// Blend lm_head too.
        #[arg(long)]
        quantize_lm_head: bool,
        /// Output safetensors: loss (1,), logits (B, T, V), grad.<name> for every parameter.
        #[arg(long)]
        out: PathBuf,
    },
    /// Fine-tune a model toward ternary weights on the GPU (the seed's flags, either spelling).
    Train {
        #[arg(long = "base-model", alias = "base_model")]
        base_model: PathBuf,
        /// JSONL: {"instruction", "input", "output", "domain"} per line.
        #[arg(long)]
        dataset: PathBuf,
        #[arg(long = "out-dir", alias = "out_dir")]
        out_dir: PathBuf,
        #[command(flatten)]
        flags: TrainFlags,
        /// Continue from the newest checkpoint in --out-dir.
        #[arg(long)]
        resume: bool,
    },
    /// Continue a prompt on the GPU (KV cache), from a model folder or a packed file.
    Generate {
        /// A Hugging Face model folder, or a packed file (`bitnet pack`, `bitnet train`).
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        prompt: String,
        #[arg(
            long = "max-new-tokens",
            alias = "max_new_tokens",
            default_value_t = 128
        )]
        max_new_tokens: usize,
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Ternarize the projections first (γ·q, as `bitnet pack` would; a packed file already is).
        #[arg(long)]
        ternary: bool,
        #[command(flatten)]
        quant: QuantArgs,
        /// Prompt through the tokenizer's chat template (one user message).
        #[arg(long)]
        chat: bool,
    },
    /// Let the model write its own training data (JSONL), as the seed did: templates, sampling,
    /// the five filters and exact-duplicate removal. Lines are written as they pass.
    Selfgen {
        #[arg(long, alias = "model_path")]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Samples to keep.
        #[arg(long, default_value_t = 1000)]
        num: u64,
        #[arg(
            long = "max-new-tokens",
            alias = "max_new_tokens",
            default_value_t = 256
        )]
        max_new_tokens: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Prompts generated together.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Continue an interrupted run of --out (same settings) up to --num.
        #[arg(long)]
        resume: bool,
        /// Stop after this many attempts (default 4 × --num).
        #[arg(long = "max-attempts", alias = "max_attempts")]
        max_attempts: Option<u64>,
        /// JSON templates {"domains": [{"name", "form" (with {task}), "tasks": [...]}]}.
        #[arg(long)]
        templates: Option<PathBuf>,
        /// Prompt through the tokenizer's chat template (instruct models).
        #[arg(long)]
        chat: bool,
        #[arg(long, default_value_t = 0.7)]
        temperature: f32,
        #[arg(long = "top-p", alias = "top_p", default_value_t = 0.9)]
        top_p: f32,
        /// 0 keeps every token; 50 is transformers' default, which the seed ran with.
        #[arg(long = "top-k", alias = "top_k", default_value_t = 50)]
        top_k: usize,
    },
    /// Perplexity of a model (folder or packed file) over a JSONL dataset in the training format.
    Eval {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        dataset: PathBuf,
        #[arg(long)]
        ternary: bool,
        #[command(flatten)]
        quant: QuantArgs,
        #[arg(long = "seq-len", alias = "seq_len", default_value_t = 512)]
        seq_len: usize,
        #[arg(long = "loss-mask", alias = "loss_mask", default_value = "all")]
        loss_mask: LossMask,
        /// Sequences per batch.
        #[arg(long, default_value_t = 4)]
        bsz: usize,
    },
    /// The whole pipeline: self-generate data, train toward ternary, pack, and perplexity before and
    /// after on held-out samples. Run it again with the same --out-dir to continue where it stopped.
    Run {
        #[arg(long)]
        model: PathBuf,
        #[arg(long = "out-dir", alias = "out_dir")]
        out_dir: PathBuf,
        /// Samples to self-generate.
        #[arg(long, default_value_t = 500)]
        num: u64,
        #[arg(
            long = "max-new-tokens",
            alias = "max_new_tokens",
            default_value_t = 256
        )]
        max_new_tokens: usize,
        /// Prompts generated together.
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Prompt through the tokenizer's chat template (instruct models).
        #[arg(long)]
        chat: bool,
        /// Self-generation templates (see `bitnet selfgen --help`).
        #[arg(long)]
        templates: Option<PathBuf>,
        #[command(flatten)]
        flags: TrainFlags,
    },
    /// The pipeline on a built-in tiny model: self-generation, training, packing, perplexity, the λ/loss
    /// table and a sample from the ternary model, in a few minutes even on a CPU adapter.
    Demo {
        /// Where the demo writes its model, data and outputs.
        #[arg(long = "out-dir", alias = "out_dir", default_value = "bitnet-demo")]
        out_dir: PathBuf,
    },
    /// Run every GPU kernel against its CPU reference on this adapter; non-zero exit on any failure.
    Selftest,
    /// Benchmark the GPU kernels (each validated first): median time and GFLOP/s or GB/s.
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
    /// Write a Hugging Face folder with the dequantized weights (γ·q), config and tokenizer.
    Unpack {
        /// A packed file written by `bitnet pack`.
        file: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Every kernel and variant on this adapter, each validated before it is timed: matmul at
    /// SIZE³ (plain, λ-blend fused and through a scratch buffer), the other kernels at sizes
    /// derived from SIZE.
    Kernels {
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Timed repetitions (the median is reported).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Also write the JSON report to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Full training steps (forward, backward, clipping, AdamW at λ = 0.5) of a model with random
    /// weights: tokens/s, the step's GFLOP/s against the plain matmul's, GPU memory.
    Train {
        /// A model folder (its config.json is used; weights are random).
        #[arg(long, conflicts_with = "shape")]
        model: Option<PathBuf>,
        /// A named shape: llama-256 (hidden 256, 4 layers) or llama-135m (SmolLM2-135M's shape).
        #[arg(long, default_value = "llama-256")]
        shape: String,
        /// Sequences per step.
        #[arg(long, default_value_t = 2)]
        batch: usize,
        #[arg(long = "seq-len", default_value_t = 256)]
        seq_len: usize,
        /// Timed steps (the median is reported), after one warm-up step.
        #[arg(long, default_value_t = 3)]
        steps: usize,
    },
}

/// How `bitnet generate` chooses tokens.
#[derive(clap::Args)]
struct SamplingArgs {
    /// Take the most likely token every time (the default unless --temperature is given).
    #[arg(long, conflicts_with_all = ["temperature", "top_p", "top_k"])]
    greedy: bool,
    #[arg(long)]
    temperature: Option<f32>,
    #[arg(long = "top-p", alias = "top_p", default_value_t = 1.0)]
    top_p: f32,
    /// 0 keeps every token.
    #[arg(long = "top-k", alias = "top_k", default_value_t = 0)]
    top_k: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

impl SamplingArgs {
    fn sampling(&self) -> Result<bitnet_core::sample::Sampling, String> {
        match (self.greedy, self.temperature) {
            (false, Some(t)) => bitnet_core::sample::Sampling::new(t, self.top_p, self.top_k),
            _ => Ok(bitnet_core::sample::Sampling::Greedy),
        }
    }
}

/// The training flags shared by `bitnet train` and `bitnet run` (the seed's, in either spelling).
#[derive(clap::Args)]
struct TrainFlags {
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = 2)]
    bsz: usize,
    #[arg(long = "grad-accum", alias = "grad_accum", default_value_t = 8)]
    grad_accum: usize,
    #[arg(long, default_value_t = 5e-5)]
    lr: f64,
    #[arg(long = "warmup-ratio", alias = "warmup_ratio", default_value_t = 0.1)]
    warmup_ratio: f64,
    #[arg(long = "weight-decay", alias = "weight_decay", default_value_t = 0.0)]
    weight_decay: f32,
    #[arg(long = "max-grad-norm", alias = "max_grad_norm", default_value_t = 1.0)]
    max_grad_norm: f32,
    #[arg(
        long = "lambda-warmup-frac",
        alias = "lambda_warmup_frac",
        default_value_t = 0.4
    )]
    lambda_warmup_frac: f64,
    /// linear | sigmoid:K | exp:K | step:N | const:V
    #[arg(
        long = "lambda-schedule",
        alias = "lambda_schedule",
        default_value = "linear"
    )]
    lambda_schedule: String,
    /// 1: insert the trained post-attention RMSNorm (the seed's default); 0: not.
    #[arg(long = "rmsnorm-post-attn", alias = "rmsnorm_post_attn", default_value_t = 1, num_args = 0..=1, default_missing_value = "1")]
    rmsnorm_post_attn: u8,
    #[command(flatten)]
    quant: QuantArgs,
    #[arg(long = "quantize-lm-head", alias = "quantize_lm_head")]
    quantize_lm_head: bool,
    #[arg(long = "seq-len", alias = "seq_len", default_value_t = 512)]
    seq_len: usize,
    /// all (every token, the seed's) or response (only the answer).
    #[arg(long = "loss-mask", alias = "loss_mask", default_value = "all")]
    loss_mask: LossMask,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Checkpoint every N steps (default: steps / 4).
    #[arg(long = "save-steps", alias = "save_steps")]
    save_steps: Option<u64>,
    #[arg(
        long = "save-total-limit",
        alias = "save_total_limit",
        default_value_t = 2
    )]
    save_total_limit: usize,
    #[arg(long = "log-every", alias = "log_every", default_value_t = 10)]
    log_every: u64,
    #[arg(long = "freeze-embeddings", alias = "freeze_embeddings")]
    freeze_embeddings: bool,
}

impl TrainFlags {
    /// The settings of a run training `base_model` on `dataset` into `out_dir`.
    fn train_args(
        &self,
        base_model: PathBuf,
        dataset: PathBuf,
        out_dir: PathBuf,
        resume: bool,
    ) -> Result<train::TrainArgs, String> {
        Ok(train::TrainArgs {
            base_model,
            dataset,
            out_dir,
            settings: TrainSettings {
                steps: self.steps,
                bsz: self.bsz,
                grad_accum: self.grad_accum,
                lr: self.lr,
                warmup_ratio: self.warmup_ratio,
                lambda_warmup_frac: self.lambda_warmup_frac,
                schedule: self.lambda_schedule.clone(),
                seed: self.seed,
                adam: train::adam(self.weight_decay, self.max_grad_norm),
                freeze_embeddings: self.freeze_embeddings,
            },
            setup: ModelSetup {
                quantizer: self.quant.quantizer()?,
                post_attn_norm: self.rmsnorm_post_attn != 0,
                quantize_lm_head: self.quantize_lm_head,
            },
            seq_len: self.seq_len,
            loss_mask: self.loss_mask,
            save_steps: self
                .save_steps
                .unwrap_or(train::default_save_steps(self.steps))
                .max(1),
            save_total_limit: self.save_total_limit,
            resume,
            log_every: self.log_every,
        })
    }
}

/// The quantizer flags shared by pack and grads.
#[derive(clap::Args)]
struct QuantArgs {
    #[arg(long, value_enum, default_value_t = QuantizerArg::Absmean)]
    quantizer: QuantizerArg,
    /// Threshold ratio r (threshold quantizer): Δ = r·mean|W|. Default 0.7.
    #[arg(long)]
    threshold: Option<f32>,
    /// Scale of the threshold quantizer: optimal (mean |W| of non-zero codes) or absmean (the seed's).
    #[arg(long)]
    scale: Option<ScaleMode>,
}

#[derive(Clone, Copy, ValueEnum)]
enum QuantizerArg {
    Absmean,
    Threshold,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(cli.json),
        Command::Inspect { model_dir } => inspect(&model_dir, cli.json),
        Command::Schedule {
            steps,
            lambda_warmup_frac,
            shape,
            every,
        } => schedule(steps, lambda_warmup_frac, shape, every, cli.json),
        Command::Pack {
            model_dir,
            out,
            quant,
            packing,
            quantize_lm_head,
            cpu,
        } => quant.quantizer().and_then(|quantizer| {
            let opts = PackOptions {
                quantizer,
                packing,
                quantize_lm_head,
            };
            pack(&model_dir, &out, &opts, cpu, cli.json)
        }),
        Command::Unpack { file, out } => unpack(&file, &out, cli.json),
        Command::Grads {
            model_dir,
            tokens,
            lambda,
            quant,
            rmsnorm_post_attn,
            quantize_lm_head,
            out,
        } => quant.quantizer().and_then(|quantizer| {
            let setup = ModelSetup {
                quantizer,
                post_attn_norm: rmsnorm_post_attn,
                quantize_lm_head,
            };
            grads(&model_dir, &tokens, lambda, setup, &out, cli.json)
        }),
        Command::Train {
            base_model,
            dataset,
            out_dir,
            flags,
            resume,
        } => flags
            .train_args(base_model, dataset, out_dir, resume)
            .and_then(|args| train::train(&args, cli.json))
            .map(|manifest| {
                if cli.json {
                    println!("{manifest}");
                }
            }),
        Command::Generate {
            model,
            prompt,
            max_new_tokens,
            sampling,
            ternary,
            quant,
            chat,
        } => quant.quantizer().and_then(|quantizer| {
            let args = infer::GenerateArgs {
                model: &model,
                prompt: &prompt,
                max_new_tokens,
                sampling: sampling.sampling()?,
                seed: sampling.seed,
                ternary,
                quantizer,
                chat,
            };
            infer::generate(&args, cli.json)
        }),
        Command::Selfgen {
            model,
            out,
            num,
            max_new_tokens,
            seed,
            batch,
            resume,
            max_attempts,
            templates,
            chat,
            temperature,
            top_p,
            top_k,
        } => bitnet_core::sample::Sampling::new(temperature, top_p, top_k).and_then(|sampling| {
            let args = selfgen::SelfgenArgs {
                model,
                out,
                num,
                max_new_tokens,
                seed,
                batch,
                resume,
                max_attempts,
                templates,
                chat,
                sampling,
                ternary: false,
                quantizer: Quantizer::Absmean,
            };
            selfgen::selfgen(&args, cli.json)
        }),
        Command::Eval {
            model,
            dataset,
            ternary,
            quant,
            seq_len,
            loss_mask,
            bsz,
        } => quant.quantizer().and_then(|quantizer| {
            infer::eval(
                &model, &dataset, ternary, quantizer, seq_len, loss_mask, bsz, cli.json,
            )
        }),
        Command::Run {
            model,
            out_dir,
            num,
            max_new_tokens,
            batch,
            chat,
            templates,
            flags,
        } => {
            let (data, train_dir) = (out_dir.join("train.jsonl"), out_dir.join("train"));
            flags
                .train_args(model.clone(), data, train_dir, true)
                .and_then(|train| {
                    let args = pipeline::RunArgs {
                        model,
                        out_dir,
                        num,
                        max_new_tokens,
                        batch,
                        chat,
                        templates,
                        train,
                    };
                    pipeline::run(&args, cli.json, false)
                })
        }
        Command::Demo { out_dir } => pipeline::demo(&out_dir, cli.json),
        Command::Selftest => selftest(cli.json),
        Command::Bench {
            what: BenchWhat::Kernels { size, reps, out },
        } => bench_kernels(size, reps, out.as_deref(), cli.json),
        Command::Bench {
            what:
                BenchWhat::Train {
                    model,
                    shape,
                    batch,
                    seq_len,
                    steps,
                },
        } => bench_train(model.as_deref(), &shape, batch, seq_len, steps, cli.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type CliResult = Result<(), String>;

fn print_json(v: &impl serde::Serialize) -> CliResult {
    let s = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    println!("{s}");
    Ok(())
}

fn info(json: bool) -> CliResult {
    let gpu = pollster::block_on(Gpu::new()).map_err(|e| e.to_string())?;
    let r = gpu.report();
    if json {
        return print_json(&r);
    }
    println!("adapter:     {}", r.name);
    println!("backend:     {}", r.backend);
    println!("device type: {}", r.device_type);
    println!("driver:      {} {}", r.driver, r.driver_info);
    println!("limits:");
    for (k, v) in &r.limits {
        println!("  {k:<40} {v}");
    }
    println!(
        "features:    {}",
        if r.features.is_empty() {
            "(none)".to_string()
        } else {
            r.features.join(", ")
        }
    );
    Ok(())
}

fn open_model(dir: &std::path::Path) -> Result<(DirFiles, Model), String> {
    let files = DirFiles::open(dir)?;
    let model =
        pollster::block_on(Model::open(&files)).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok((files, model))
}

fn inspect(dir: &std::path::Path, json: bool) -> CliResult {
    let (_files, model) = open_model(dir)?;
    let tokenizer_vocab = match &model.tokenizer_json {
        Some(b) => Some(
            Tokenizer::from_bytes("tokenizer.json", b)
                .map_err(|e| format!("{}: {e}", dir.display()))?
                .vocab_size(),
        ),
        None => None,
    };
    let s = ModelSummary::new(&model, tokenizer_vocab);
    let gpu = pollster::block_on(Gpu::new()).ok();
    let limits = gpu.as_ref().map(|g| {
        let notes = s.finetune_memory.limit_notes(
            g.limits.max_buffer_size,
            g.limits.max_storage_buffer_binding_size,
        );
        (g.info.name.clone(), notes)
    });
    if json {
        let v = serde_json::json!({
            "summary": s,
            "adapter": limits.as_ref().map(|(n, _)| n),
            "limit_notes": limits.as_ref().map(|(_, notes)| notes),
        });
        return print_json(&v);
    }
    println!("model:          {} ({})", s.architecture, s.model_type);
    println!("layers:         {}", s.layers);
    println!(
        "hidden size:    {} (intermediate {})",
        s.hidden_size, s.intermediate_size
    );
    println!(
        "heads:          {} attention, {} key/value, head dim {}",
        s.attention_heads, s.kv_heads, s.head_dim
    );
    match s.tokenizer_vocab {
        Some(t) => println!("vocab:          {} (tokenizer.json: {t})", s.vocab_size),
        None => println!("vocab:          {} (no tokenizer.json)", s.vocab_size),
    }
    println!(
        "embeddings:     {}",
        if s.tied_embeddings { "tied" } else { "untied" }
    );
    println!(
        "parameters:     {} ({} become ternary)",
        s.parameters, s.ternary_parameters
    );
    println!(
        "weights:        {} in {} ({})",
        human_bytes(s.weight_bytes),
        s.weight_files.join(", "),
        s.dtypes.join(", ")
    );
    let m = &s.finetune_memory;
    println!(
        "fine-tune GPU memory (batch {}, {} tokens, f32): {} = weights {} + gradients {} + AdamW {} + activations {}",
        m.batch,
        m.seq_len,
        human_bytes(m.total),
        human_bytes(m.weights),
        human_bytes(m.gradients),
        human_bytes(m.optimizer),
        human_bytes(m.activations)
    );
    match limits {
        Some((name, notes)) => notes.iter().for_each(|n| println!("  on {name}: {n}")),
        None => println!("  no GPU adapter found: cannot compare with its limits"),
    }
    Ok(())
}

fn schedule(steps: u64, frac: f64, shape: Schedule, every: u64, json: bool) -> CliResult {
    if !(0.0..=1.0).contains(&frac) {
        return Err(format!(
            "--lambda-warmup-frac must be in [0, 1], got {frac}"
        ));
    }
    let trace = shape.trace(steps, frac);
    if json {
        return print_json(&serde_json::json!({
            "shape": shape.to_string(),
            "steps": steps,
            "lambda_warmup_frac": frac,
            "warmup_steps": Schedule::warmup_steps(steps, frac),
            "lambda": trace,
        }));
    }
    println!("step\tlambda");
    let every = every.max(1);
    for (s, l) in trace.iter().enumerate() {
        if (s as u64).is_multiple_of(every) || s as u64 == steps {
            println!("{s}\t{l}");
        }
    }
    Ok(())
}

impl QuantArgs {
    /// The quantizer the flags describe.
    fn quantizer(&self) -> Result<Quantizer, String> {
        let (threshold, scale) = (self.threshold, self.scale);
        match self.quantizer {
            QuantizerArg::Absmean => {
                if threshold.is_some() || scale.is_some() {
                    return Err(
                        "--threshold and --scale apply to --quantizer threshold only".into(),
                    );
                }
                Ok(Quantizer::Absmean)
            }
            QuantizerArg::Threshold => {
                let ratio = threshold.unwrap_or(DEFAULT_THRESHOLD_RATIO);
                if !(ratio.is_finite() && ratio >= 0.0) {
                    return Err(format!(
                        "--threshold must be a non-negative number, got {ratio}"
                    ));
                }
                Ok(Quantizer::Threshold {
                    ratio,
                    scale: scale.unwrap_or(ScaleMode::Optimal),
                })
            }
        }
    }
}

fn pack(
    dir: &std::path::Path,
    out: &std::path::Path,
    opts: &PackOptions,
    cpu: bool,
    json: bool,
) -> CliResult {
    let (files, model) = open_model(dir)?;
    let gpu = if cpu {
        None
    } else {
        match pollster::block_on(Gpu::new()) {
            Ok(g) => Some(g),
            Err(e) => {
                eprintln!("note: {e}; quantizing on the CPU");
                None
            }
        }
    };
    if let (Some(g), false) = (&gpu, json) {
        println!("quantizing on {} ({:?})", g.info.name, g.info.backend);
    }
    let (bytes, report) = pollster::block_on(pack_model(gpu.as_ref(), &model, &files, opts, |t| {
        if !json {
            match t.sparsity {
                Some(sp) => println!(
                    "{:<48} {:>14} ternary  sparsity {:5.1}%  {:.2} bits/weight  scale {:.5}  [{}]",
                    t.name,
                    format!("{:?}", t.shape),
                    sp * 100.0,
                    t.bits_per_weight,
                    t.scale.unwrap_or(0.0),
                    t.device
                ),
                None => println!(
                    "{:<48} {:>14} kept     {:.0} bits/weight",
                    t.name,
                    format!("{:?}", t.shape),
                    t.bits_per_weight
                ),
            }
        }
    }))
    .map_err(|e| e.to_string())?;
    std::fs::write(out, &bytes).map_err(|e| format!("{}: cannot write: {e}", out.display()))?;
    if json {
        return print_json(&report);
    }
    println!(
        "wrote {}: {} from {} of weights ({:.1}× smaller); {} ternary weights, {:.1}% zero",
        out.display(),
        human_bytes(report.bytes_out),
        human_bytes(report.bytes_in),
        report.bytes_in as f64 / report.bytes_out.max(1) as f64,
        report.ternary_parameters,
        report.mean_sparsity * 100.0
    );
    Ok(())
}

fn unpack(file: &std::path::Path, out: &std::path::Path, json: bool) -> CliResult {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
    let name = file.display().to_string();
    let packed = PackedModel::parse(&name, &bytes).map_err(|e| e.to_string())?;
    let hf = packed.unpack_to_hf().map_err(|e| e.to_string())?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: cannot create: {e}", out.display()))?;
    for (fname, data) in &hf {
        let path = out.join(fname);
        std::fs::write(&path, data)
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    }
    if json {
        return print_json(&serde_json::json!({
            "out": out.display().to_string(),
            "files": hf.keys().collect::<Vec<_>>(),
            "ternary_tensors": packed.shapes.len(),
            "packing": packed.packing.name(),
            "quantizer": packed.quantizer.name(),
        }));
    }
    println!(
        "wrote {} ({}): {} ternary tensors ({} packing, {} quantizer) dequantized to γ·q",
        out.display(),
        hf.keys().cloned().collect::<Vec<_>>().join(", "),
        packed.shapes.len(),
        packed.packing.name(),
        packed.quantizer.name()
    );
    Ok(())
}

fn selftest(json: bool) -> CliResult {
    let gpu = pollster::block_on(Gpu::new()).map_err(|e| e.to_string())?;
    let checks = pollster::block_on(bitnet_gpu::selftest::run_all(&gpu));
    let failed = checks.iter().filter(|c| !c.passed).count();
    if json {
        print_json(&serde_json::json!({
            "adapter": gpu.info.name,
            "backend": format!("{:?}", gpu.info.backend),
            "passed": failed == 0,
            "checks": checks,
        }))?;
    } else {
        println!("adapter: {} ({:?})", gpu.info.name, gpu.info.backend);
        for c in &checks {
            println!(
                "{:<64} max abs {:>9.2e}  max rel {:>9.2e}  {}",
                c.kernel,
                c.max_abs,
                c.max_rel,
                if c.passed {
                    "pass".to_string()
                } else {
                    format!("FAIL: {}", c.detail)
                }
            );
        }
        println!("{} passed, {} failed", checks.len() - failed, failed);
    }
    if failed > 0 {
        return Err(format!(
            "{failed} of {} kernel checks failed on {}",
            checks.len(),
            gpu.info.name
        ));
    }
    Ok(())
}

fn grads(
    dir: &Path,
    tokens_file: &Path,
    lambda: f32,
    setup: ModelSetup,
    out: &Path,
    json: bool,
) -> CliResult {
    if !(0.0..=1.0).contains(&lambda) {
        return Err(format!("--lambda must be between 0 and 1, got {lambda}"));
    }
    let text = std::fs::read(tokens_file).map_err(|e| format!("{}: {e}", tokens_file.display()))?;
    let tokens: Vec<Vec<u32>> = serde_json::from_slice(&text).map_err(|e| {
        format!(
            "{}: expected a JSON list of token-id lists ({e})",
            tokens_file.display()
        )
    })?;
    let (files, model) = open_model(dir)?;
    let cfg = &model.config;
    let weights =
        pollster::block_on(model.all_f32(&files)).map_err(|e| format!("{}: {e}", dir.display()))?;
    let gpu = pollster::block_on(Gpu::new()).map_err(|e| e.to_string())?;
    let targets = next_token_targets(&tokens, None);
    let batch = Batch::new(&gpu, cfg, &tokens, &targets)
        .map_err(|e| format!("{}: {e}", tokens_file.display()))?;
    let m = GpuModel::new(&gpu, cfg, &weights, setup).map_err(|e| e.to_string())?;
    let blend = (lambda > 0.0).then_some(lambda);
    gpu.submit(
        &m.forward_backward(&gpu, &batch, blend)
            .map_err(|e| e.to_string())?,
    );
    let (b, t) = (tokens.len(), tokens[0].len());
    let read = |name: &str, buf, len: usize| {
        pollster::block_on(gpu.read_f32(name, buf, len)).map_err(|e| e.to_string())
    };
    let loss: f32 = read("loss", &batch.loss, b * t)?.iter().sum();
    let logits = read("logits", batch.logits(), b * t * cfg.vocab_size)?;
    let mut tensors = vec![
        OwnedTensor::f32("loss", vec![1], &[loss]),
        OwnedTensor::f32("logits", vec![b, t, cfg.vocab_size], &logits),
    ];
    for name in &m.names {
        let (Some(buf), shape) = (m.grad(name), m.shape(name)) else {
            continue;
        };
        let g = read(name, buf, m.numel(name))?;
        tensors.push(OwnedTensor::f32(format!("grad.{name}"), shape, &g));
    }
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("lambda".to_string(), lambda.to_string());
    meta.insert("quantizer".to_string(), setup.quantizer.name().to_string());
    meta.insert(
        "rmsnorm_post_attn".to_string(),
        setup.post_attn_norm.to_string(),
    );
    meta.insert("adapter".to_string(), gpu.info.name.clone());
    let n_grads = tensors.len() - 2;
    std::fs::write(out, serialize(tensors, &meta))
        .map_err(|e| format!("{}: {e}", out.display()))?;
    if json {
        return print_json(&serde_json::json!({
            "loss": loss,
            "lambda": lambda,
            "gradients": n_grads,
            "out": out.display().to_string(),
            "adapter": gpu.info.name,
        }));
    }
    println!(
        "loss {loss:.6} at λ = {lambda} on {}; logits and {n_grads} gradients written to {}",
        gpu.info.name,
        out.display()
    );
    Ok(())
}

/// config.json of the named benchmark shapes.
fn bench_shape(name: &str) -> Result<String, String> {
    let (h, i, layers, heads, kv, vocab) = match name {
        "llama-256" => (256, 688, 4, 4, 2, 8192),
        "llama-135m" => (576, 1536, 30, 9, 3, 49152),
        _ => {
            return Err(format!(
                "unknown shape `{name}`; known: llama-256, llama-135m (or pass --model DIR)"
            ));
        }
    };
    Ok(format!(
        r#"{{"model_type": "llama", "hidden_size": {h}, "intermediate_size": {i},
        "num_hidden_layers": {layers}, "num_attention_heads": {heads}, "num_key_value_heads": {kv},
        "vocab_size": {vocab}, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
        "max_position_embeddings": 8192, "tie_word_embeddings": true}}"#
    ))
}

fn bench_train(
    model: Option<&Path>,
    shape: &str,
    batch: usize,
    seq_len: usize,
    steps: usize,
    json: bool,
) -> CliResult {
    if batch == 0 || seq_len < 2 || steps == 0 {
        return Err("--batch and --steps must be positive and --seq-len at least 2".into());
    }
    let (name, cfg) = match model {
        Some(dir) => (dir.display().to_string(), open_model(dir)?.1.config),
        None => {
            let text = bench_shape(shape)?;
            let cfg = bitnet_core::config::ModelConfig::from_json_bytes(shape, text.as_bytes())
                .map_err(|e| e.to_string())?;
            (shape.to_string(), cfg)
        }
    };
    let gpu = pollster::block_on(Gpu::new()).map_err(|e| e.to_string())?;
    let r = pollster::block_on(bitnet_gpu::bench::bench_train(
        &gpu, &name, &cfg, batch, seq_len, steps,
    ))
    .map_err(|e| e.to_string())?;
    if json {
        return print_json(&r);
    }
    println!("adapter: {}", r.adapter);
    println!(
        "{}: {} parameters, batch {} × {} tokens",
        r.model, r.parameters, r.batch, r.seq_len
    );
    println!(
        "step {:.3} s  {:.1} tokens/s  {:.2} GFLOP/s = {:.2} of the plain matmul's {:.2} GFLOP/s  GPU buffers {}",
        r.step_seconds,
        r.tokens_per_s,
        r.step_gflops,
        r.fraction_of_matmul,
        r.matmul_gflops,
        human_bytes(r.gpu_bytes)
    );
    Ok(())
}

fn bench_kernels(size: usize, reps: usize, out: Option<&Path>, json: bool) -> CliResult {
    if size == 0 || reps == 0 {
        return Err("--size and --reps must be positive".into());
    }
    let gpu = pollster::block_on(Gpu::new()).map_err(|e| e.to_string())?;
    let report = pollster::block_on(bitnet_gpu::bench::bench_kernels(&gpu, size, reps))
        .map_err(|e| e.to_string())?;
    if let Some(path) = out {
        let s = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, s).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if json {
        return print_json(&report);
    }
    println!("adapter: {} ({})", report.adapter, report.backend);
    println!(
        "linear layers here: {:?} kernels, λ-blend {:?} (measured fastest)",
        report.plan.variant, report.plan.blend
    );
    for r in &report.results {
        let rate = match (r.gflops, r.gbps) {
            (Some(g), _) => format!("{g:8.2} GFLOP/s"),
            (_, Some(b)) => format!("{b:8.2} GB/s"),
            _ => "   (not timed: validation failed)".into(),
        };
        println!(
            "{:<36} {:>16} {:>10.2} ms {rate}  (max abs err {:.1e})",
            r.kernel, r.shape, r.median_ms, r.max_abs_error
        );
    }
    if report.results.iter().any(|r| !r.validated) {
        return Err("a kernel failed validation before timing".into());
    }
    Ok(())
}
