//! `bitnet run`: the original pipeline in one command — self-generate data with the model, train it
//! toward ternary, pack it, and measure perplexity before and after on held-out samples — resumable
//! stage by stage (run it again with the same --out-dir to continue). `bitnet demo` runs the same
//! pipeline on a built-in tiny model so that anyone can see every stage work in a few minutes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bitnet_core::dataset::{Example, LossMask};
use bitnet_core::quant::Quantizer;
use bitnet_core::safetensors::{OwnedTensor, serialize};
use bitnet_core::sample::Sampling;
use bitnet_core::selfgen::{DEFAULT_TEMPERATURE, DEFAULT_TOP_P, Templates, prompt_text};
use bitnet_core::summary::human_bytes;
use bitnet_gpu::generate::{GenerateOptions, Generator};
use bitnet_gpu::model::ModelSetup;
use bitnet_gpu::selftest::Rng;
use bitnet_gpu::trainer::TrainSettings;

use crate::files::io;
use crate::infer::{self, Perplexity};
use crate::selfgen::{self, SelfgenArgs};
use crate::train::{self, TrainArgs};

/// Everything `bitnet run` was asked for.
pub struct RunArgs {
    pub model: PathBuf,
    pub out_dir: PathBuf,
    pub num: u64,
    pub max_new_tokens: usize,
    pub batch: usize,
    pub chat: bool,
    pub templates: Option<PathBuf>,
    /// The training: its base model is `model`, its data OUT/train.jsonl, its folder OUT/train;
    /// its seed and quantizer serve the whole run.
    pub train: TrainArgs,
}

/// The run's result, also written to run_report.json.
#[derive(serde::Serialize)]
struct RunReport {
    data: selfgen::SelfgenReport,
    train_examples: usize,
    eval_examples: usize,
    /// The base model as it is, the base model ternarized without training, the trained one.
    perplexity_base: Perplexity,
    perplexity_base_ternary: Perplexity,
    perplexity_trained_ternary: Perplexity,
    packed_file: String,
    packed_bytes: u64,
    sparsity: f64,
    sample: Option<Sample>,
}

#[derive(serde::Serialize)]
struct Sample {
    instruction: String,
    response: String,
}

fn write_jsonl(path: &Path, lines: &[&Example]) -> Result<(), String> {
    let mut text = String::new();
    for ex in lines {
        text.push_str(&serde_json::to_string(ex).map_err(|e| e.to_string())?);
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| io(path, e))
}

/// Runs the pipeline; `show_table` prints the λ/loss table and a sample (the demo).
pub fn run(a: &RunArgs, json: bool, show_table: bool) -> Result<(), String> {
    if !a.model.is_dir() {
        return Err(format!(
            "{}: `bitnet run` needs a Hugging Face model folder (config.json, tokenizer.json, *.safetensors)",
            a.model.display()
        ));
    }
    std::fs::create_dir_all(&a.out_dir).map_err(|e| io(&a.out_dir, e))?;
    let say = |s: &str| {
        if !json {
            println!("{s}");
        }
    };
    let gpu = infer::gpu()?;
    let quantizer = a.train.setup.quantizer;
    let base = infer::load(&gpu, &a.model, false, quantizer)?;
    let sampling = Sampling::new(DEFAULT_TEMPERATURE, DEFAULT_TOP_P, 50)?;

    // 1. Self-generated data (continues an interrupted stage).
    let data = a.out_dir.join("data.jsonl");
    say(&format!(
        "== 1/4 self-generation: {} samples → {}",
        a.num,
        data.display()
    ));
    let sg = SelfgenArgs {
        model: a.model.clone(),
        out: data.clone(),
        num: a.num,
        max_new_tokens: a.max_new_tokens,
        seed: a.train.settings.seed,
        batch: a.batch,
        resume: true,
        max_attempts: None,
        templates: a.templates.clone(),
        chat: a.chat,
        sampling,
        ternary: false,
        quantizer,
    };
    let report = selfgen::run_with(&gpu, &base, &sg, json)?;
    if !json {
        selfgen::print_report(&report);
    }
    let bytes = std::fs::read(&data).map_err(|e| io(&data, e))?;
    let examples = match report.counts.kept {
        0 => Vec::new(),
        _ => bitnet_core::dataset::parse_jsonl(&data.display().to_string(), &bytes)
            .map_err(|e| e.to_string())?,
    };
    if examples.len() < 2 {
        return Err(format!(
            "self-generation kept {} samples; training and a held-out evaluation need at least 2 (raise --num, --max-new-tokens or use a larger model)",
            examples.len()
        ));
    }
    // Every tenth sample (at least one) is held out for the perplexity.
    let held = |i: usize| i % 10 == 9 || (examples.len() < 10 && i == examples.len() - 1);
    let (mut train_set, mut eval_set): (Vec<&Example>, Vec<&Example>) = (Vec::new(), Vec::new());
    for (i, ex) in examples.iter().enumerate() {
        if held(i) {
            eval_set.push(ex);
        } else {
            train_set.push(ex);
        }
    }
    let (train_file, eval_file) = (a.out_dir.join("train.jsonl"), a.out_dir.join("eval.jsonl"));
    write_jsonl(&train_file, &train_set)?;
    write_jsonl(&eval_file, &eval_set)?;

    // 2. Training (resumes from its newest checkpoint; skipped once finished).
    let train_dir = a.out_dir.join("train");
    let manifest = train_dir.join("training_manifest.json");
    say(&format!(
        "== 2/4 training: {} steps on {} samples → {}",
        a.train.settings.steps,
        train_set.len(),
        train_dir.display()
    ));
    if manifest.exists() {
        say("already trained (training_manifest.json exists)");
    } else {
        let args = TrainArgs {
            base_model: a.model.clone(),
            dataset: train_file.clone(),
            out_dir: train_dir.clone(),
            resume: train_dir.exists(),
            settings: a.train.settings.clone(),
            ..a.train
        };
        train::train(&args, json)?;
    }
    let packed_file = train_dir.join("model.bitnet.safetensors");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).map_err(|e| io(&manifest, e))?)
            .map_err(|e| format!("{}: {e}", manifest.display()))?;

    // 3. The packed model (written by training with the training quantizer).
    let packed_bytes = std::fs::metadata(&packed_file)
        .map_err(|e| io(&packed_file, e))?
        .len();
    let sparsity = manifest["sparsity"].as_f64().unwrap_or(f64::NAN);
    say(&format!(
        "== 3/4 packed: {} ({}, {:.1} % of the ternary weights are zero)",
        packed_file.display(),
        human_bytes(packed_bytes),
        sparsity * 100.0
    ));

    // 4. Perplexity on the held-out samples: before, ternarized without training, after.
    say(&format!(
        "== 4/4 perplexity on {} held-out samples ({})",
        eval_set.len(),
        eval_file.display()
    ));
    let ppl = |m: &infer::Loaded| {
        infer::perplexity(
            &gpu,
            m,
            &eval_file,
            a.train.seq_len,
            LossMask::All,
            a.train.settings.bsz,
        )
    };
    let p_base = ppl(&base)?;
    let base_ternary = infer::load(&gpu, &a.model, true, quantizer)?;
    let p_ptq = ppl(&base_ternary)?;
    let trained = infer::load(&gpu, &packed_file, true, quantizer)?;
    let p_trained = ppl(&trained)?;
    for (what, p) in [
        ("base model (full precision)", &p_base),
        ("base model ternarized, no training", &p_ptq),
        ("trained ternary model", &p_trained),
    ] {
        say(&format!("  {what:<36} perplexity {:>10.3}", p.perplexity));
    }

    let mut sample = None;
    if show_table {
        print_lambda_table(&train_dir.join("metrics.jsonl"), json)?;
        // One sample from the ternary model, sampled like the self-generation.
        let pick = match &a.templates {
            Some(_) => None,
            None => Some(Templates::builtin().pick(a.train.settings.seed, 0)),
        };
        if let Some(pick) = pick {
            let ids = infer::prompt_ids(&trained, &prompt_text(&pick.instruction), false, 512)?;
            let g = Generator::new(&gpu, &trained.model.config, &trained.weights)
                .map_err(|e| e.to_string())?;
            let opts = GenerateOptions {
                max_new_tokens: a.max_new_tokens,
                sampling,
                seed: a.train.settings.seed,
                first_stream: 0,
                eos: trained.eos.clone(),
                keep_logits: false,
            };
            let now = infer::clock();
            let out = pollster::block_on(g.generate(&gpu, &[ids], &opts, &now, &mut |_, _| {}))
                .map_err(|e| e.to_string())?;
            let response = trained
                .tokenizer
                .decode(&out.tokens[0], true)
                .map_err(|e| e.to_string())?;
            say(&format!(
                "sample from the ternary model:\n  Instruction: {}\n  Response: {}",
                pick.instruction,
                response.trim()
            ));
            sample = Some(Sample {
                instruction: pick.instruction,
                response: response.trim().to_string(),
            });
        }
    }

    let report = RunReport {
        data: report,
        train_examples: train_set.len(),
        eval_examples: eval_set.len(),
        perplexity_base: p_base,
        perplexity_base_ternary: p_ptq,
        perplexity_trained_ternary: p_trained,
        packed_file: packed_file.display().to_string(),
        packed_bytes,
        sparsity,
        sample,
    };
    let path = a.out_dir.join("run_report.json");
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    std::fs::write(&path, &text).map_err(|e| io(&path, e))?;
    if json {
        println!("{text}");
    } else {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// λ and loss by step from metrics.jsonl.
fn print_lambda_table(metrics: &Path, json: bool) -> Result<(), String> {
    if json {
        return Ok(());
    }
    let text = std::fs::read_to_string(metrics).map_err(|e| io(metrics, e))?;
    println!("  step      λ  phase        loss");
    for line in text.lines() {
        let m: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{}: {e}", metrics.display()))?;
        println!(
            "  {:>4}  {:>5.3}  {:<10} {:>7.4}",
            m["step"].as_u64().unwrap_or(0),
            m["lambda"].as_f64().unwrap_or(f64::NAN),
            m["phase"].as_str().unwrap_or(""),
            m["loss"].as_f64().unwrap_or(f64::NAN),
        );
    }
    Ok(())
}

/// The demo model's tokenizer: a byte-level BPE of 297 tokens (the test fixtures' tokenizer).
const DEMO_TOKENIZER: &str = include_str!("../assets/demo-tokenizer.json");

/// Writes the built-in demo model into `dir`: a 2-layer Llama (hidden 64, 4 heads, 2 KV heads)
/// with the demo tokenizer and weights drawn from a fixed seed (normal, std 0.02, like Hugging Face
/// initialization; norms 1), plus one hand-set direction that favours word-start tokens. It knows
/// no language: the demo shows the pipeline at work, and its perplexities show the model learning
/// its own samples.
pub fn write_demo_model(dir: &Path) -> Result<(), String> {
    let vocab = 297usize;
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "hidden_act": "silu",
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "tie_word_embeddings": false,
        "attention_bias": false,
        "mlp_bias": false,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 2,
        "torch_dtype": "float32",
    });
    let config_text = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?;
    let cfg = bitnet_core::ModelConfig::from_json_bytes("config.json", config_text.as_bytes())
        .map_err(|e| e.to_string())?;
    // Token ids that begin a word (byte-level BPE: a leading `Ġ`, the space).
    let tok: serde_json::Value = serde_json::from_str(DEMO_TOKENIZER).map_err(|e| e.to_string())?;
    let word_start: Vec<usize> = tok["model"]["vocab"]
        .as_object()
        .map(|v| {
            v.iter()
                .filter(|(s, _)| s.starts_with('\u{120}'))
                .filter_map(|(_, id)| id.as_u64().map(|i| i as usize))
                .collect()
        })
        .unwrap_or_default();
    let h = cfg.hidden_size;
    let mut rng = Rng::new(2026);
    let tensors: Vec<OwnedTensor> = bitnet_core::params::param_table(&cfg)
        .into_iter()
        .map(|spec| {
            let n = spec.numel();
            let mut values = if spec.name.ends_with("norm.weight") {
                vec![1f32; n]
            } else {
                rng.vec(n, 0.02)
            };
            // One constant direction (hidden dimension 0) in every embedding, read by lm_head as a
            // preference for word starts over word pieces and the end token, so that samples come
            // out as "words" and pass the filters.
            if spec.name == "model.embed_tokens.weight" {
                values.iter_mut().step_by(h).for_each(|x| *x = 1.0);
            }
            if spec.name == "lm_head.weight" {
                for (t, row) in values.chunks_mut(h).enumerate() {
                    row[0] = if word_start.contains(&t) { 0.1 } else { -0.1 };
                }
                values[h] = -0.3; // the end token, id 1
            }
            OwnedTensor::f32(spec.name.clone(), spec.shape.clone(), &values)
        })
        .collect();
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let files: [(&str, Vec<u8>); 3] = [
        ("config.json", config_text.into_bytes()),
        ("tokenizer.json", DEMO_TOKENIZER.as_bytes().to_vec()),
        ("model.safetensors", serialize(tensors, &BTreeMap::new())),
    ];
    for (name, bytes) in files {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(|e| io(&p, e))?;
    }
    Ok(())
}

/// `bitnet demo`: the whole pipeline on the built-in model, sized to finish in minutes on a CPU
/// adapter.
pub fn demo(out_dir: &Path, json: bool) -> Result<(), String> {
    let model = out_dir.join("demo-model");
    write_demo_model(&model)?;
    if !json {
        println!(
            "bitnet demo: the built-in tiny model (2 layers, hidden 64, random weights) in {}",
            model.display()
        );
    }
    let train = TrainArgs {
        base_model: model.clone(),
        dataset: out_dir.join("train.jsonl"),
        out_dir: out_dir.join("train"),
        settings: TrainSettings {
            steps: 40,
            bsz: 4,
            grad_accum: 1,
            lr: 3e-3,
            warmup_ratio: 0.1,
            lambda_warmup_frac: 0.4,
            schedule: "linear".into(),
            seed: 42,
            adam: train::adam(0.0, 1.0),
            freeze_embeddings: false,
        },
        setup: ModelSetup {
            quantizer: Quantizer::Absmean,
            post_attn_norm: false,
            quantize_lm_head: false,
        },
        seq_len: 128,
        loss_mask: LossMask::All,
        save_steps: train::default_save_steps(40),
        save_total_limit: 2,
        resume: true,
        log_every: 2,
    };
    let args = RunArgs {
        model,
        out_dir: out_dir.to_path_buf(),
        num: 24,
        max_new_tokens: 48,
        batch: 8,
        chat: false,
        templates: None,
        train,
    };
    run(&args, json, true)
}
