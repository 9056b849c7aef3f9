//! `bitnet bench kernels|train|decode`: kernel, training-step and generation benchmarks on this
//! adapter (each kernel validated before it is timed).

use std::path::PathBuf;

use bitnet_core::config::ModelConfig;
use bitnet_core::limits::at_least;
use bitnet_core::params::param_table;
use bitnet_core::quant::Quantizer;
use bitnet_core::safetensors::Dtype;
use bitnet_core::summary::{MemoryPlan, human_bytes};
use bitnet_gpu::selftest::Rng;
use bitnet_pipeline::Store;

use crate::error::{CliError, CliResult};
use crate::output::print_json;
use crate::store::DirStore;

/// Benchmark the GPU kernels (each validated first): median time and GFLOP/s or GB/s.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: BenchWhat,
}

/// The largest `bench kernels --size`: three 8192² f32 matrices are 768 MiB.
const MAX_KERNEL_SIZE: usize = 8192;

#[derive(clap::Subcommand)]
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
    /// Generation speed three ways on this adapter: f32 weights through the GEMM only, f32 weights
    /// with the matrix–vector kernel for decode steps, and the projections packed at 2 bits per
    /// weight; prefill and decode tokens/s and GPU weight bytes of each.
    Decode {
        /// A model folder (ternarized on load, absmean) or a packed file.
        #[arg(long, conflicts_with = "shape")]
        model: Option<PathBuf>,
        /// A named shape with random weights, the embedding stored BF16: llama-256 or llama-135m
        /// (SmolLM2-135M's shape).
        #[arg(long, default_value = "llama-135m")]
        shape: String,
        /// Sequences decoded together.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long = "prompt-tokens", default_value_t = 16)]
        prompt_tokens: usize,
        /// Tokens generated per sequence (after a 2-token warm-up run that compiles the pipelines).
        #[arg(long = "new-tokens", default_value_t = 16)]
        new_tokens: usize,
    },
}

pub fn run(a: Args, json: bool) -> CliResult {
    match a.what {
        BenchWhat::Kernels { size, reps, out } => kernels(size, reps, out, json),
        BenchWhat::Train {
            model,
            shape,
            batch,
            seq_len,
            steps,
        } => train(model, &shape, batch, seq_len, steps, json),
        BenchWhat::Decode {
            model,
            shape,
            batch,
            prompt_tokens,
            new_tokens,
        } => decode(model, &shape, batch, prompt_tokens, new_tokens, json),
    }
}

/// config.json of the named benchmark shapes.
fn shape_config(name: &str) -> CliResult<String> {
    let (h, i, layers, heads, kv, vocab) = match name {
        "llama-256" => (256, 688, 4, 4, 2, 8192),
        "llama-135m" => (576, 1536, 30, 9, 3, 49152),
        _ => {
            return Err(CliError::Usage(format!(
                "unknown shape `{name}`; known: llama-256, llama-135m (or pass --model DIR)"
            )));
        }
    };
    Ok(format!(
        r#"{{"model_type": "llama", "hidden_size": {h}, "intermediate_size": {i},
        "num_hidden_layers": {layers}, "num_attention_heads": {heads}, "num_key_value_heads": {kv},
        "vocab_size": {vocab}, "rms_norm_eps": 1e-5, "rope_theta": 100000.0,
        "max_position_embeddings": 8192, "tie_word_embeddings": true}}"#
    ))
}

/// The config of a named shape.
fn named_shape(shape: &str) -> CliResult<ModelConfig> {
    let text = shape_config(shape)?;
    ModelConfig::from_json_bytes(shape, text.as_bytes()).map_err(|e| CliError::input(shape, e))
}

fn decode(
    model: Option<PathBuf>,
    shape: &str,
    batch: usize,
    prompt_tokens: usize,
    new_tokens: usize,
    json: bool,
) -> CliResult {
    at_least(&[
        ("--batch", batch as u64, 1),
        ("--prompt-tokens", prompt_tokens as u64, 1),
        ("--new-tokens", new_tokens as u64, 2),
    ])
    .map_err(CliError::Usage)?;
    let gpu = super::gpu()?;
    let (name, cfg, weights, codes, dtypes) = match model {
        Some(path) => {
            let ctx = bitnet_pipeline::Ctx::quiet(&gpu);
            let m = super::generate::load(&ctx, &path, true, Quantizer::Absmean)?;
            (m.name, m.model.config, m.weights, m.codes, m.dtypes)
        }
        None => {
            let cfg = named_shape(shape)?;
            let weights = bitnet_gpu::bench::random_weights(&cfg, &mut Rng::new(11));
            let codes = param_table(&cfg)
                .into_iter()
                .filter(|p| p.is_ternary(false))
                .map(|p| {
                    let t = Quantizer::Absmean.quantize(&weights[&p.name]);
                    (p.name, t)
                })
                .collect();
            // Stored like the models the shapes are named after: the embedding in BF16.
            let dtypes = [("model.embed_tokens.weight".to_string(), Dtype::BF16)].into();
            (shape.to_string(), cfg, weights, codes, dtypes)
        }
    };
    let (context, field) = cfg.context();
    if prompt_tokens + new_tokens > context {
        return Err(CliError::Usage(format!(
            "--prompt-tokens plus --new-tokens is {}; {name}'s context is {context} tokens ({field})",
            prompt_tokens + new_tokens
        )));
    }
    let r = pollster::block_on(bitnet_gpu::bench::bench_decode(
        &gpu,
        &name,
        &cfg,
        &weights,
        &codes,
        &dtypes,
        bitnet_gpu::bench::DecodeWork {
            batch,
            prompt_tokens,
            new_tokens,
        },
    ))?;
    if json {
        return print_json(&r);
    }
    println!("adapter: {}", r.adapter);
    println!(
        "{}: {} parameters, batch {}, {} prompt + {} new tokens per sequence",
        r.model, r.parameters, r.work.batch, r.work.prompt_tokens, r.work.new_tokens
    );
    for run in &r.runs {
        println!(
            "{:<31} prefill {:>8.1} tokens/s  decode {:>7.2} tokens/s  weights {:>10} (projections {})",
            run.kernels,
            run.prefill_tokens_per_s,
            run.decode_tokens_per_s,
            human_bytes(run.weight_bytes),
            human_bytes(run.projection_bytes),
        );
    }
    println!(
        "decode: matvec {:.2}× the GEMM, packed {:.2}× matvec; packed projections {:.4}× their f32 bytes",
        r.matvec_speedup, r.packed_speedup, r.packed_bytes_ratio
    );
    Ok(())
}

fn train(
    model: Option<PathBuf>,
    shape: &str,
    batch: usize,
    seq_len: usize,
    steps: usize,
    json: bool,
) -> CliResult {
    at_least(&[
        ("--batch", batch as u64, 1),
        ("--seq-len", seq_len as u64, 2),
        ("--steps", steps as u64, 1),
    ])
    .map_err(CliError::Usage)?;
    let (name, cfg) = match model {
        Some(dir) => (dir.display().to_string(), super::open_model(&dir)?.1.config),
        None => (shape.to_string(), named_shape(shape)?),
    };
    let (context, field) = cfg.context();
    if seq_len > context {
        return Err(CliError::Usage(format!(
            "--seq-len is {seq_len}; {name}'s context is {context} tokens ({field})"
        )));
    }
    let gpu = super::gpu()?;
    let plan = MemoryPlan::new(&cfg, batch, seq_len, 1);
    if let Some((tensor, bytes)) = plan.too_large(gpu.max_binding()) {
        return Err(CliError::Usage(format!(
            "{tensor} of --batch {batch} × --seq-len {seq_len} needs {}, more than the adapter's {} per binding; lower --batch or --seq-len",
            human_bytes(bytes),
            human_bytes(gpu.max_binding())
        )));
    }
    let r = pollster::block_on(bitnet_gpu::bench::bench_train(
        &gpu, &name, &cfg, batch, seq_len, steps,
    ))?;
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

fn kernels(size: usize, reps: usize, out: Option<PathBuf>, json: bool) -> CliResult {
    at_least(&[("--size", size as u64, 1), ("--reps", reps as u64, 1)]).map_err(CliError::Usage)?;
    if size > MAX_KERNEL_SIZE {
        return Err(CliError::Usage(format!(
            "--size is {size}; it must be at most {MAX_KERNEL_SIZE} (the matmul holds three SIZE × SIZE f32 matrices)"
        )));
    }
    let gpu = super::gpu()?;
    let report = pollster::block_on(bitnet_gpu::bench::bench_kernels(&gpu, size, reps))?;
    if let Some(path) = out {
        let s =
            serde_json::to_string_pretty(&report).map_err(|e| CliError::Failed(e.to_string()))?;
        let (store, key) = DirStore::of_file(&path)?;
        pollster::block_on(store.put(&key, s.as_bytes()))?;
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
        return Err(CliError::Failed(
            "a kernel failed validation before timing".into(),
        ));
    }
    Ok(())
}
