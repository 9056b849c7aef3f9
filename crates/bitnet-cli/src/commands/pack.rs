//! `bitnet pack`: post-training ternarization of every projection into a packed file.

use std::path::PathBuf;

use bitnet_core::Packing;
use bitnet_core::safetensors::Dtype;
use bitnet_core::summary::human_bytes;
use bitnet_gpu::Gpu;
use bitnet_gpu::packer::{PackOptions, pack_model};
use bitnet_pipeline::Store;

use crate::args::QuantArgs;
use crate::error::CliResult;
use crate::output::print_json;
use crate::store::DirStore;

/// Ternarize every projection of a model into a packed file (GPU when available).
#[derive(clap::Args)]
pub struct Args {
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
    /// Store embeddings, norms and lm_head as f32, f16 or bf16 (default: as the model stores them).
    #[arg(long = "fp-dtype", value_parser = Dtype::float_named)]
    fp_dtype: Option<Dtype>,
    /// Quantize on the CPU even when a GPU adapter exists.
    #[arg(long)]
    cpu: bool,
    /// Replace --out when it exists (never one of the model's own files).
    #[arg(long)]
    overwrite: bool,
}

pub fn run(a: Args, json: bool) -> CliResult {
    let opts = PackOptions {
        quantizer: a.quant.quantizer()?,
        packing: a.packing,
        quantize_lm_head: a.quantize_lm_head,
        fp_dtype: a.fp_dtype,
        act8: false,
    };
    super::check_outputs(
        std::slice::from_ref(&a.out),
        &super::files_in(&a.model_dir),
        a.overwrite,
    )?;
    let (files, model) = super::open_model(&a.model_dir)?;
    let (store, key) = DirStore::of_file(&a.out)?;
    let gpu = if a.cpu {
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
    let (bytes, report) = pollster::block_on(pack_model(
        gpu.as_ref(),
        &model,
        &files,
        &opts,
        Vec::new(),
        |t| {
            if json {
                return;
            }
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
        },
    ))?;
    pollster::block_on(store.put(&key, &bytes))?;
    if json {
        return print_json(&report);
    }
    println!(
        "wrote {}: {} from {} of weights ({:.1}× smaller); {} ternary weights, {:.1}% zero",
        a.out.display(),
        human_bytes(report.bytes_out),
        human_bytes(report.bytes_in),
        report.bytes_in as f64 / report.bytes_out.max(1) as f64,
        report.ternary_parameters,
        report.mean_sparsity * 100.0
    );
    Ok(())
}
