//! `bitnet`: the native command-line shell over bitnet-pipeline (the job), bitnet-gpu and
//! bitnet-core. It parses flags, calls the libraries, and prints what they report; every command
//! takes `--json` for machine-readable output. The libraries are async; this binary blocks on them
//! at its top with pollster. One module per command in `commands/`.

mod args;
mod commands;
mod error;
mod output;
mod store;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::commands::*;

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
    Inspect(inspect::Args),
    /// Print λ at every optimizer step of a schedule.
    Schedule(schedule::Args),
    /// Ternarize every projection of a model into a packed file (GPU when available).
    Pack(pack::Args),
    /// Loss, logits and every parameter's gradient of one batch on the GPU, under the Hugging Face
    /// names, so the implementation can be checked against another framework.
    Grads(grads::Args),
    /// Fine-tune a model toward ternary weights on the GPU (the seed's flags, either spelling).
    Train(train::Args),
    /// Continue a prompt on the GPU (KV cache), from a model folder or a packed file.
    Generate(generate::Args),
    /// Let the model write its own training data (JSONL), as the seed did: templates, sampling,
    /// the five filters and exact-duplicate removal. Lines are written as they pass.
    Selfgen(selfgen::Args),
    /// Perplexity of a model (folder or packed file) over a JSONL dataset in the training format.
    Eval(eval::Args),
    /// The whole pipeline: self-generate data, train toward ternary, pack, and perplexity before and
    /// after on held-out samples. Run it again with the same --out-dir to continue where it stopped.
    Run(run::Args),
    /// The pipeline on a built-in tiny model: self-generation, training, packing, perplexity, the λ/loss
    /// table and a sample from the ternary model, in a few minutes even on a CPU adapter.
    Demo(demo::Args),
    /// Run every GPU kernel against its CPU reference on this adapter; non-zero exit on any failure.
    Selftest,
    /// Benchmark the GPU kernels (each validated first): median time and GFLOP/s or GB/s.
    Bench(bench::Args),
    /// Write a Hugging Face folder with the dequantized weights (γ·q), config and tokenizer.
    Unpack(unpack::Args),
    /// Write a model in a format other tools run: GGUF (llama.cpp), transformers' packed BitNet.
    Export(export::Args),
}

fn main() -> ExitCode {
    quiet_wayland_probe();
    let cli = Cli::parse();
    let json = cli.json;
    let result = match cli.command {
        Command::Info => info::run(json),
        Command::Inspect(a) => inspect::run(a, json),
        Command::Schedule(a) => schedule::run(a, json),
        Command::Pack(a) => pack::run(a, json),
        Command::Unpack(a) => unpack::run(a, json),
        Command::Export(a) => export::run(a, json),
        Command::Grads(a) => grads::run(a, json),
        Command::Train(a) => train::run(a, json),
        Command::Generate(a) => generate::run(a, json),
        Command::Selfgen(a) => selfgen::run(a, json),
        Command::Eval(a) => eval::run(a, json),
        Command::Run(a) => run::run(a, json),
        Command::Demo(a) => demo::run(a, json),
        Command::Selftest => selftest::run(json),
        Command::Bench(a) => bench::run(a, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Mesa's Vulkan device-select layer (an implicit layer of mesa-vulkan-drivers) asks Wayland for the
/// default GPU whenever the app enables the Wayland surface extension, as wgpu does; on a headless
/// machine (no Wayland display, no XDG_RUNTIME_DIR) libwayland then prints
/// `error: XDG_RUNTIME_DIR is invalid or not set` once per probe, before any output of ours. With no
/// display there is no default GPU to find, so the layer is switched off there; on a desktop it
/// keeps choosing the GPU as it always does.
fn quiet_wayland_probe() {
    let unset = |k: &str| std::env::var_os(k).is_none_or(|v| v.is_empty());
    if cfg!(target_os = "linux") && unset("WAYLAND_DISPLAY") && unset("XDG_RUNTIME_DIR") {
        // SAFETY: first thing in main, before any other thread exists.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
}
