//! The hostile-input corpus: one case per way a careful user (or a bad disk) can hand `bitnet` a
//! wrong input — corrupted safetensors, configs, tokenizers, shards, packed files, checkpoints,
//! datasets and flags, and outputs that would overwrite what is being read. Each case writes its
//! files from the committed fixtures into its own folder (nothing here is a committed blob), runs
//! one command, and the runner (crates/bitnet-cli/tests/hostile.rs) asserts: a non-zero exit that is
//! an error, not a panic; a message naming the culprit (every string of `says`); and no file in the
//! case's folder changed, appeared or disappeared.
//!
//! In `args`, `{d}` is the case's folder and `{fixtures}` tests/fixtures. Most cases work on `{d}/m`,
//! a copy of the llama fixture made by their setup.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::common::{copy_dir, fixtures, flip_bit};

pub struct Case {
    pub name: &'static str,
    pub setup: fn(&Path),
    pub args: &'static [&'static str],
    pub says: &'static [&'static str],
}

/// Where the corpus is written (ignored by git): tests/hostile/corpus/{case}.
pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/hostile/corpus")
}

fn run_bitnet(args: &[&str]) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bitnet"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bitnet {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---- building blocks -------------------------------------------------------------------------

/// `{d}/m`: a copy of the fixture `name`.
fn model_of(d: &Path, name: &str) {
    copy_dir(&fixtures().join(name), &d.join("m"));
}

fn model(d: &Path) {
    model_of(d, "llama");
}

/// `{d}/m` with its config.json edited.
fn config(d: &Path, edit: impl FnOnce(&mut Map<String, Value>)) {
    model(d);
    let path = d.join("m/config.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(v.as_object_mut().unwrap());
    std::fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

/// The header text and the data section of a safetensors file.
fn split(bytes: &[u8]) -> (String, Vec<u8>) {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    (
        String::from_utf8(bytes[8..8 + n].to_vec()).unwrap(),
        bytes[8 + n..].to_vec(),
    )
}

fn join(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// A safetensors file with its header (as text) rewritten.
fn edit_header_text(path: &Path, edit: impl FnOnce(String) -> String) {
    let (header, data) = split(&std::fs::read(path).unwrap());
    std::fs::write(path, join(&edit(header), &data)).unwrap();
}

/// A safetensors file with its header (as JSON) rewritten.
fn edit_header(path: &Path, edit: impl FnOnce(&mut Map<String, Value>)) {
    edit_header_text(path, |h| {
        let mut v: Map<String, Value> = serde_json::from_str(&h).unwrap();
        edit(&mut v);
        serde_json::to_string(&v).unwrap()
    });
}

/// Sets element `i` of the F32 tensor `name`; `checksum`: rewrite the packed-file checksum to
/// match (so that only the value is wrong).
fn set_f32(path: &Path, name: &str, i: usize, value: f32, checksum: bool) {
    let (header, mut data) = split(&std::fs::read(path).unwrap());
    let mut h: Map<String, Value> = serde_json::from_str(&header).unwrap();
    let begin = h[name]["data_offsets"][0].as_u64().unwrap() as usize + 4 * i;
    data[begin..begin + 4].copy_from_slice(&value.to_le_bytes());
    if checksum {
        let meta = h["__metadata__"].as_object_mut().unwrap();
        meta.insert(
            "checksum".into(),
            bitnet_core::checksum::checksum(&data).into(),
        );
    }
    std::fs::write(path, join(&serde_json::to_string(&h).unwrap(), &data)).unwrap();
}

fn write(d: &Path, name: &str, bytes: impl AsRef<[u8]>) {
    std::fs::write(d.join(name), bytes).unwrap();
}

/// `{d}/data.jsonl`: six examples in the seed's schema.
fn data(d: &Path) {
    let rows = [
        ("Write a haiku about the sea.", "Waves fold into foam."),
        ("What is 12 times 7?", "12 times 7 is 84."),
        ("Reverse a string in Python.", "def r(s): return s[::-1]"),
        ("Why is the sky blue?", "Blue light scatters most."),
        ("Write a haiku about the moon.", "Pale light on the sea."),
        ("What is 9 plus 4?", "9 plus 4 is 13."),
    ];
    let text: String = rows
        .iter()
        .map(|(i, o)| {
            serde_json::json!({"instruction": i, "input": "", "output": o, "domain": "x"})
                .to_string()
                + "\n"
        })
        .collect();
    write(d, "data.jsonl", text);
}

fn model_and_data(d: &Path) {
    model(d);
    data(d);
}

/// A packed file of the llama fixture, made once for the corpus.
fn shared_packed() -> &'static Path {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = corpus().join("_shared");
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("llama.bitnet.safetensors");
        let _ = std::fs::remove_file(&p);
        let llama = fixtures().join("llama");
        run_bitnet(&[
            "pack",
            llama.to_str().unwrap(),
            "--out",
            p.to_str().unwrap(),
            "--cpu",
        ]);
        p
    })
}

/// `{d}/p.safetensors`: the shared packed file.
fn packed(d: &Path) {
    std::fs::copy(shared_packed(), d.join("p.safetensors")).unwrap();
}

/// The flags of the shared training run (`{d}` for the case's folder).
macro_rules! train {
    ($($extra:literal),*) => {
        &["train", "--base-model", "{d}/m", "--dataset", "{d}/data.jsonl", "--out-dir", "{d}/run",
          "--steps", "2", "--bsz", "2", "--seq-len", "32", "--save-steps", "1",
          "--rmsnorm-post-attn", "0" $(, $extra)*]
    };
}
const TRAIN: &[&str] = train!();

/// A finished two-step run of the llama fixture on `data` (checkpoints of steps 1 and 2), made once.
fn shared_run() -> &'static Path {
    static R: OnceLock<PathBuf> = OnceLock::new();
    R.get_or_init(|| {
        let dir = corpus().join("_shared/train");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        model_and_data(&dir);
        let d = dir.to_str().unwrap();
        let args: Vec<String> = TRAIN.iter().map(|a| a.replace("{d}", d)).collect();
        run_bitnet(&args.iter().map(String::as_str).collect::<Vec<_>>());
        dir.join("run")
    })
}

/// `{d}/m`, `{d}/data.jsonl` and `{d}/run`: the shared run, as if killed before its manifest.
fn interrupted_run(d: &Path) {
    let run = shared_run();
    model_and_data(d);
    copy_dir(run, &d.join("run"));
    std::fs::remove_file(d.join("run/training_manifest.json")).unwrap();
}

// ---- the cases -------------------------------------------------------------------------------

pub const CASES: &[Case] = &[
    // A run folder belongs to one run; no command writes over what it reads.
    Case {
        name: "train-into-an-earlier-runs-folder",
        setup: |d| {
            model_and_data(d);
            std::fs::create_dir_all(d.join("run")).unwrap();
            write(d, "run/metrics.jsonl", "{\"step\":0}\n");
            write(d, "run/training_manifest.json", "{}");
        },
        args: train!(),
        says: &["holds an earlier run", "--resume", "--overwrite"],
    },
    // A soft-label sidecar beside the dataset is read with --kd-topk: one that is not a sidecar,
    // or one written for other samples, is refused by name before training starts.
    Case {
        name: "train-with-a-sidecar-that-is-not-one",
        setup: |d| {
            model_and_data(d);
            write(d, "data.soft", "{\"instruction\": \"a\"}\n");
        },
        args: train!("--loss", "kd", "--kd-topk", "2"),
        says: &["data.soft", "BNSOFT01", "--soft-labels"],
    },
    Case {
        name: "train-with-a-sidecar-of-other-samples",
        setup: |d| {
            model_and_data(d);
            let mut b = b"BNSOFT01".to_vec();
            for v in [2u32, 1] {
                b.extend(v.to_le_bytes());
            }
            b.extend([0u8; 8]); // a key no sample has
            b.extend(1u32.to_le_bytes());
            for (id, p) in [(3u32, 0.5f32), (4, 0.25)] {
                b.extend(id.to_le_bytes());
                b.extend(p.to_le_bytes());
            }
            write(d, "data.soft", b);
        },
        args: train!("--loss", "kd", "--kd-topk", "2"),
        says: &["data.soft", "no labels for example 1", "data.jsonl"],
    },
    Case {
        name: "pack-over-its-own-input",
        setup: model,
        args: &["pack", "{d}/m", "--out", "{d}/m/model.safetensors"],
        says: &["m/model.safetensors", "one of this command's inputs"],
    },
    Case {
        name: "pack-over-an-existing-file",
        setup: |d| {
            model(d);
            write(d, "out.safetensors", "an earlier output");
        },
        args: &["pack", "{d}/m", "--out", "{d}/out.safetensors"],
        says: &["out.safetensors already exists", "--overwrite"],
    },
    Case {
        name: "unpack-into-a-model-folder",
        setup: |d| {
            model(d);
            packed(d);
        },
        args: &["unpack", "{d}/p.safetensors", "--out", "{d}/m"],
        says: &["m/model.safetensors", "already exist", "--overwrite"],
    },
    Case {
        name: "unpack-over-its-own-input",
        setup: |d| {
            packed(d);
            std::fs::rename(d.join("p.safetensors"), d.join("model.safetensors")).unwrap();
        },
        args: &[
            "unpack",
            "{d}/model.safetensors",
            "--out",
            "{d}",
            "--overwrite",
        ],
        says: &["model.safetensors", "one of this command's inputs"],
    },
    Case {
        name: "grads-over-the-model",
        setup: model,
        args: &[
            "grads",
            "{d}/m",
            "--tokens",
            "{fixtures}/oracle/tokens.json",
            "--out",
            "{d}/m/model.safetensors",
        ],
        says: &["model.safetensors", "one of this command's inputs"],
    },
    Case {
        name: "selfgen-over-an-existing-file",
        setup: |d| {
            model(d);
            write(d, "out.jsonl", "{}\n");
        },
        args: &[
            "selfgen",
            "--model",
            "{d}/m",
            "--out",
            "{d}/out.jsonl",
            "--num",
            "1",
        ],
        says: &["out.jsonl exists", "--resume"],
    },
    // config.json fields that change the math: implemented, or refused by name and value.
    Case {
        name: "rope-type-not-implemented",
        setup: |d| {
            config(d, |c| {
                c.remove("rope_parameters");
                c.insert("rope_theta".into(), 10000.0.into());
                c.insert(
                    "rope_scaling".into(),
                    serde_json::json!({"rope_type": "longrope", "factor": 2.0}),
                );
            })
        },
        args: &[
            "generate",
            "--model",
            "{d}/m",
            "--prompt",
            "hi",
            "--max-new-tokens",
            "1",
        ],
        says: &[
            "m: config.json",
            "`rope_scaling.rope_type` is `longrope`",
            "llama3, yarn",
        ],
    },
    Case {
        name: "rope-parameters-type-unknown",
        setup: |d| {
            config(d, |c| {
                c.insert(
                    "rope_parameters".into(),
                    serde_json::json!({"rope_type": "su", "rope_theta": 10000.0}),
                );
            })
        },
        args: &["inspect", "{d}/m"],
        says: &["config.json", "`rope_parameters.rope_type` is `su`"],
    },
    Case {
        name: "rope-llama3-without-its-fields",
        setup: |d| {
            config(d, |c| {
                c.insert("rope_parameters".into(), serde_json::json!({"rope_type": "llama3", "factor": 8.0, "rope_theta": 10000.0}));
            })
        },
        args: &["inspect", "{d}/m"],
        says: &["config.json", "rope_parameters.low_freq_factor"],
    },
    Case {
        name: "rope-theta-not-a-number",
        setup: |d| {
            config(d, |c| {
                c.insert(
                    "rope_parameters".into(),
                    serde_json::json!({"rope_type": "default", "rope_theta": "ten thousand"}),
                );
            })
        },
        args: &["inspect", "{d}/m"],
        says: &[
            "config.json",
            "`rope_parameters.rope_theta` must be a number",
            "ten thousand",
        ],
    },
    Case {
        name: "hidden-act-gelu",
        setup: |d| {
            config(d, |c| {
                c.insert("hidden_act".into(), "gelu_pytorch_tanh".into());
            })
        },
        args: &["pack", "{d}/m", "--out", "{d}/p.safetensors"],
        says: &["config.json", "`hidden_act` is `gelu_pytorch_tanh`", "silu"],
    },
    Case {
        name: "partial-rotary-factor",
        setup: |d| {
            config(d, |c| {
                c.insert("partial_rotary_factor".into(), 0.5.into());
            })
        },
        args: &["inspect", "{d}/m"],
        says: &["config.json", "`partial_rotary_factor` is 0.5"],
    },
    Case {
        name: "rms-norm-eps-negative",
        setup: |d| {
            config(d, |c| {
                c.insert("rms_norm_eps".into(), (-1e-5).into());
            })
        },
        args: &["inspect", "{d}/m"],
        says: &["config.json", "`rms_norm_eps` is -0.00001"],
    },
    Case {
        name: "prompt-past-max-position-embeddings",
        setup: |d| {
            config(d, |c| {
                c.insert("max_position_embeddings".into(), 8.into());
            })
        },
        args: &[
            "generate",
            "--model",
            "{d}/m",
            "--prompt",
            "Write a haiku about the sea and the moon.",
            "--max-new-tokens",
            "4",
        ],
        says: &["context of 8 tokens", "max_position_embeddings"],
    },
    Case {
        name: "example-past-max-position-embeddings",
        setup: |d| {
            model(d);
            let long = "the sea and the moon ".repeat(100);
            let line = serde_json::json!({"instruction": "Write a long poem.", "output": long});
            write(d, "data.jsonl", format!("{line}\n"));
        },
        args: &[
            "train",
            "--base-model",
            "{d}/m",
            "--dataset",
            "{d}/data.jsonl",
            "--out-dir",
            "{d}/run",
            "--steps",
            "2",
            "--seq-len",
            "512",
        ],
        says: &[
            "data.jsonl, example 1",
            "(--seq-len 512)",
            "context of 256 tokens",
            "max_position_embeddings",
            "lower --seq-len",
        ],
    },
    Case {
        name: "prompt-past-sliding-window",
        setup: |d| {
            model_of(d, "mistral");
            let path = d.join("m/config.json");
            let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            v["sliding_window"] = 4.into();
            std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        },
        args: &[
            "generate",
            "--model",
            "{d}/m",
            "--prompt",
            "Write a haiku about the sea.",
            "--max-new-tokens",
            "2",
        ],
        says: &["context of 4 tokens", "sliding_window"],
    },
    // Weights: duplicate names and non-finite values refused by tensor.
    Case {
        name: "tensor-listed-twice",
        setup: |d| {
            model(d);
            edit_header_text(&d.join("m/model.safetensors"), |h| {
                let v: Map<String, Value> = serde_json::from_str(&h).unwrap();
                let entry = serde_json::to_string(&v["model.norm.weight"]).unwrap();
                format!("{{\"model.norm.weight\":{entry},{}", &h[1..])
            });
        },
        args: &["inspect", "{d}/m"],
        says: &["model.safetensors", "`model.norm.weight` is listed twice"],
    },
    Case {
        name: "nan-weight-pack",
        setup: |d| {
            model(d);
            set_f32(
                &d.join("m/model.safetensors"),
                "model.norm.weight",
                3,
                f32::NAN,
                false,
            );
        },
        args: &["pack", "{d}/m", "--out", "{d}/p.safetensors"],
        says: &["model.safetensors", "model.norm.weight", "NaN"],
    },
    Case {
        name: "infinite-weight-generate",
        setup: |d| {
            model(d);
            set_f32(
                &d.join("m/model.safetensors"),
                "model.layers.0.self_attn.q_proj.weight",
                7,
                f32::INFINITY,
                false,
            );
        },
        args: &[
            "generate",
            "--model",
            "{d}/m",
            "--prompt",
            "hi",
            "--max-new-tokens",
            "1",
        ],
        says: &["model.layers.0.self_attn.q_proj.weight", "inf"],
    },
    Case {
        name: "nan-scale-in-a-packed-file",
        setup: |d| {
            packed(d);
            set_f32(
                &d.join("p.safetensors"),
                "model.layers.1.mlp.down_proj.weight.scale",
                0,
                f32::NAN,
                true,
            );
        },
        args: &["unpack", "{d}/p.safetensors", "--out", "{d}/out"],
        says: &[
            "p.safetensors",
            "model.layers.1.mlp.down_proj.weight.scale",
            "NaN",
        ],
    },
    // Checkpoints: verified before a resume uses them.
    Case {
        name: "resume-every-checkpoint-corrupt",
        setup: |d| {
            interrupted_run(d);
            flip_bit(&d.join("run/checkpoint-1.safetensors"), 100);
            flip_bit(&d.join("run/checkpoint-2.safetensors"), 100);
        },
        args: train!("--resume"),
        says: &[
            "no checkpoint",
            "checkpoint-2.safetensors",
            "checksum mismatch",
            "--overwrite",
        ],
    },
    Case {
        name: "resume-on-another-dataset",
        setup: |d| {
            interrupted_run(d);
            let text = std::fs::read_to_string(d.join("data.jsonl")).unwrap();
            write(d, "data.jsonl", text.replace("sea", "sky"));
        },
        args: train!("--resume"),
        says: &["checkpoint-2.safetensors", "another dataset"],
    },
    Case {
        name: "resume-on-another-base-model",
        setup: |d| {
            interrupted_run(d);
            set_f32(
                &d.join("m/model.safetensors"),
                "model.norm.weight",
                0,
                0.5,
                false,
            );
        },
        args: train!("--resume"),
        says: &["checkpoint-2.safetensors", "other base weights"],
    },
    Case {
        name: "resume-with-other-settings",
        setup: interrupted_run,
        args: train!("--resume", "--lr", "0.5"),
        says: &["checkpoint-2.safetensors", "--lr"],
    },
    Case {
        name: "resume-a-finished-run",
        setup: |d| {
            model_and_data(d);
            copy_dir(shared_run(), &d.join("run"));
        },
        args: train!("--resume"),
        says: &["finished run (2 of 2 steps"],
    },
    // Flags: validated with the flag, its value and the allowed range.
    Case {
        name: "weight-decay-nan",
        setup: model_and_data,
        args: train!("--weight-decay", "nan"),
        says: &["--weight-decay", "NaN", "≥ 0"],
    },
    Case {
        name: "lambda-warmup-frac-above-1",
        setup: model_and_data,
        args: train!("--lambda-warmup-frac", "2"),
        says: &["--lambda-warmup-frac", "[0, 1]", "got 2"],
    },
    Case {
        name: "warmup-ratio-negative",
        setup: model_and_data,
        args: train!("--warmup-ratio=-0.5"),
        says: &["--warmup-ratio", "[0, 1]", "-0.5"],
    },
    Case {
        name: "max-grad-norm-zero",
        setup: model_and_data,
        args: train!("--max-grad-norm", "0"),
        says: &["--max-grad-norm", "positive", "got 0"],
    },
    Case {
        name: "lr-nan",
        setup: model_and_data,
        args: train!("--lr", "nan"),
        says: &["--lr", "NaN"],
    },
    Case {
        name: "save-total-limit-zero",
        setup: model_and_data,
        args: train!("--save-total-limit", "0"),
        says: &["--save-total-limit is 0", "at least 1"],
    },
    Case {
        name: "schedule-steps-huge",
        setup: |_| {},
        args: &["schedule", "--steps", "100000000000"],
        says: &["--steps 100000000000", "10000000"],
    },
    Case {
        name: "bench-kernels-size-huge",
        setup: |_| {},
        args: &["bench", "kernels", "--size", "1000000"],
        says: &["--size is 1000000", "at most 8192"],
    },
    Case {
        name: "bench-train-seq-len-past-the-context",
        setup: |_| {},
        args: &["bench", "train", "--seq-len", "100000"],
        says: &["--seq-len is 100000", "context is 8192 tokens"],
    },
    Case {
        name: "bench-train-batch-huge",
        setup: |_| {},
        args: &["bench", "train", "--batch", "100000", "--seq-len", "8192"],
        says: &[
            "--batch 100000",
            "per binding",
            "lower --batch or --seq-len",
        ],
    },
    Case {
        name: "threshold-ratio-out-of-range",
        setup: model,
        args: &[
            "pack",
            "{d}/m",
            "--out",
            "{d}/p.safetensors",
            "--quantizer",
            "threshold",
            "--threshold",
            "5",
        ],
        says: &["--threshold is 5", "[0, 3]"],
    },
    Case {
        name: "top-p-out-of-range",
        setup: model,
        args: &[
            "generate",
            "--model",
            "{d}/m",
            "--prompt",
            "hi",
            "--temperature",
            "0.7",
            "--top-p",
            "2",
        ],
        says: &["--top-p", "(0, 1]", "2"],
    },
    Case {
        name: "top-p-without-temperature",
        setup: model,
        args: &[
            "generate", "--model", "{d}/m", "--prompt", "hi", "--top-p", "0.5",
        ],
        says: &["--top-p 0.5", "--temperature"],
    },
    Case {
        name: "max-attempts-zero",
        setup: model,
        args: &[
            "selfgen",
            "--model",
            "{d}/m",
            "--out",
            "{d}/out.jsonl",
            "--num",
            "2",
            "--max-attempts",
            "0",
        ],
        says: &["--max-attempts is 0", "at least 1"],
    },
    Case {
        name: "eval-bsz-zero",
        setup: model_and_data,
        args: &[
            "eval",
            "--model",
            "{d}/m",
            "--dataset",
            "{d}/data.jsonl",
            "--bsz",
            "0",
            "--seq-len",
            "32",
        ],
        says: &["--bsz is 0", "at least 1"],
    },
    Case {
        name: "task-with-an-empty-output",
        setup: |d| {
            model(d);
            write(
                d,
                "tasks.jsonl",
                "{\"instruction\":\"Add 1 and 2.\",\"output\":\"3\"}\n{\"instruction\":\"Add 2 and 2.\",\"output\":\" \"}\n",
            );
        },
        args: &["eval", "--model", "{d}/m", "--task", "{d}/tasks.jsonl"],
        says: &["tasks.jsonl", "task 2", "empty output"],
    },
    Case {
        name: "task-file-not-jsonl",
        setup: |d| {
            model(d);
            write(d, "tasks.jsonl", "instruction,output\nAdd 1 and 2.,3\n");
        },
        args: &["eval", "--model", "{d}/m", "--task", "{d}/tasks.jsonl"],
        says: &["tasks.jsonl", "line 1"],
    },
    Case {
        name: "eval-with-nothing-to-measure",
        setup: model,
        args: &["eval", "--model", "{d}/m"],
        says: &["--dataset", "--task"],
    },
    Case {
        name: "kd-temperature-zero",
        setup: model_and_data,
        args: train!("--loss", "kd", "--kd-temperature", "0"),
        says: &["--kd-temperature", "positive"],
    },
    Case {
        name: "kd-weight-above-one",
        setup: model_and_data,
        args: train!("--loss", "ce+kd", "--kd-weight", "1.5"),
        says: &["--kd-weight", "[0, 1]", "1.5"],
    },
    Case {
        name: "unknown-loss",
        setup: model_and_data,
        args: train!("--loss", "mse"),
        says: &["mse", "ce+kd"],
    },
    Case {
        name: "unknown-lambda-schedule",
        setup: model_and_data,
        args: train!("--lambda-schedule", "zigzag"),
        says: &["zigzag"],
    },
    // Messages that name the file, the line, the field or the flag.
    Case {
        name: "shard-index-points-outside-the-folder",
        setup: |d| {
            model_of(d, "qwen2-sharded");
            let path = d.join("m/model.safetensors.index.json");
            let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let map = v["weight_map"].as_object_mut().unwrap();
            let first = map.keys().next().unwrap().clone();
            map.insert(first, "../../etc/passwd".into());
            std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
        },
        args: &["inspect", "{d}/m"],
        says: &[
            "model.safetensors.index.json",
            "../../etc/passwd",
            "outside",
        ],
    },
    Case {
        name: "missing-shard",
        setup: |d| {
            model_of(d, "qwen2-sharded");
            let shard = std::fs::read_dir(d.join("m"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| {
                    p.to_str().unwrap().ends_with("-of-00003.safetensors")
                        || p.to_str().unwrap().contains("00002-of")
                })
                .unwrap();
            std::fs::remove_file(shard).unwrap();
        },
        args: &["pack", "{d}/m", "--out", "{d}/p.safetensors"],
        says: &["missing file", "00002-of"],
    },
    Case {
        name: "token-outside-the-vocabulary",
        setup: |d| {
            model(d);
            write(d, "tokens.json", "[[1, 2, 400]]");
        },
        args: &[
            "grads",
            "{d}/m",
            "--tokens",
            "{d}/tokens.json",
            "--out",
            "{d}/g.safetensors",
        ],
        says: &["tokens.json", "token id 400", "vocabulary of 297"],
    },
    Case {
        name: "tokenizer-not-a-tokenizer",
        setup: |d| {
            model(d);
            write(d, "m/tokenizer.json", "{\"model\": 5}");
        },
        args: &["generate", "--model", "{d}/m", "--prompt", "hi"],
        says: &[
            "tokenizer.json",
            "not a tokenizer",
            "tokenizer.json saved with the model",
        ],
    },
    Case {
        name: "tokenizer-missing",
        setup: |d| {
            model(d);
            std::fs::remove_file(d.join("m/tokenizer.json")).unwrap();
        },
        args: &["generate", "--model", "{d}/m", "--prompt", "hi"],
        says: &["tokenizer.json"],
    },
    Case {
        name: "dataset-invalid-utf8",
        setup: |d| {
            model_and_data(d);
            let mut bytes = std::fs::read(d.join("data.jsonl")).unwrap();
            let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 5;
            bytes[second] = 0xff;
            write(d, "data.jsonl", bytes);
        },
        args: train!(),
        says: &["data.jsonl", "line 2"],
    },
    Case {
        name: "dataset-line-not-json",
        setup: |d| {
            model_and_data(d);
            let text = std::fs::read_to_string(d.join("data.jsonl")).unwrap();
            write(
                d,
                "data.jsonl",
                text.replacen("{", "not json {", 3)
                    .replacen("not json {", "{", 2),
            );
        },
        args: train!(),
        says: &["data.jsonl", "line 3"],
    },
    Case {
        name: "dataset-missing-instruction",
        setup: |d| {
            model(d);
            write(d, "data.jsonl", "{\"output\": \"only an answer\"}\n");
        },
        args: train!(),
        says: &["data.jsonl", "line 1", "instruction"],
    },
    Case {
        name: "dataset-empty",
        setup: |d| {
            model(d);
            write(d, "data.jsonl", "");
        },
        args: train!(),
        says: &["data.jsonl"],
    },
    Case {
        name: "dataset-missing",
        setup: model,
        args: train!(),
        says: &["data.jsonl", "No such file"],
    },
    Case {
        name: "templates-not-json",
        setup: |d| {
            model(d);
            write(d, "templates.json", "{\"domains\": [");
        },
        args: &[
            "selfgen",
            "--model",
            "{d}/m",
            "--out",
            "{d}/out.jsonl",
            "--num",
            "1",
            "--templates",
            "{d}/templates.json",
        ],
        says: &["templates.json"],
    },
    // Safetensors that lie: truncations and header lies.
    Case {
        name: "data-offsets-reversed",
        setup: |d| {
            model(d);
            edit_header(&d.join("m/model.safetensors"), |h| {
                let o = h["lm_head.weight"]["data_offsets"]
                    .as_array()
                    .unwrap()
                    .clone();
                h["lm_head.weight"]["data_offsets"] = serde_json::json!([o[1], o[0]]);
            });
        },
        args: &["inspect", "{d}/m"],
        says: &[
            "model.safetensors",
            "lm_head.weight",
            "end before they begin",
        ],
    },
    Case {
        name: "safetensors-truncated",
        setup: |d| {
            model(d);
            let p = d.join("m/model.safetensors");
            let bytes = std::fs::read(&p).unwrap();
            std::fs::write(&p, &bytes[..bytes.len() - 1000]).unwrap();
        },
        args: &["pack", "{d}/m", "--out", "{d}/p.safetensors"],
        says: &["model.safetensors", "truncated"],
    },
    Case {
        name: "safetensors-header-length-lies",
        setup: |d| {
            model(d);
            let p = d.join("m/model.safetensors");
            let mut bytes = std::fs::read(&p).unwrap();
            bytes[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
            std::fs::write(&p, bytes).unwrap();
        },
        args: &["inspect", "{d}/m"],
        says: &["model.safetensors", "header"],
    },
    Case {
        name: "safetensors-header-not-json",
        setup: |d| {
            model(d);
            edit_header_text(&d.join("m/model.safetensors"), |h| h.replacen('{', "[", 1));
        },
        args: &["inspect", "{d}/m"],
        says: &["model.safetensors", "header"],
    },
    Case {
        name: "safetensors-shape-disagrees-with-config",
        setup: |d| {
            model(d);
            edit_header(&d.join("m/model.safetensors"), |h| {
                h["model.layers.0.self_attn.o_proj.weight"]["shape"] = serde_json::json!([32, 128]);
            });
        },
        args: &["pack", "{d}/m", "--out", "{d}/p.safetensors"],
        says: &["model.layers.0.self_attn.o_proj.weight", "[32, 128]"],
    },
    Case {
        name: "safetensors-unsupported-dtype",
        setup: |d| {
            model(d);
            edit_header(&d.join("m/model.safetensors"), |h| {
                h["model.norm.weight"]["dtype"] = "I32".into();
            });
        },
        args: &["pack", "{d}/m", "--out", "{d}/p.safetensors"],
        says: &["model.norm.weight", "I32"],
    },
    Case {
        name: "config-not-json",
        setup: |d| {
            model(d);
            write(d, "m/config.json", "{\"model_type\": ");
        },
        args: &["inspect", "{d}/m"],
        says: &["config.json", "invalid JSON"],
    },
    Case {
        name: "config-missing-field",
        setup: |d| {
            config(d, |c| {
                c.remove("hidden_size");
            })
        },
        args: &["inspect", "{d}/m"],
        says: &["config.json", "missing required field `hidden_size`"],
    },
    Case {
        name: "config-unsupported-model-type",
        setup: |d| {
            config(d, |c| {
                c.insert("model_type".into(), "gpt2".into());
            })
        },
        args: &["inspect", "{d}/m"],
        says: &["config.json", "gpt2", "llama, qwen2, mistral"],
    },
    Case {
        name: "config-field-of-the-wrong-type",
        setup: |d| {
            config(d, |c| {
                c.insert("num_hidden_layers".into(), "2".into());
            })
        },
        args: &["inspect", "{d}/m"],
        says: &[
            "config.json",
            "`num_hidden_layers` must be a non-negative integer",
        ],
    },
    // Packed files that were damaged.
    Case {
        name: "packed-bit-flip",
        setup: |d| {
            packed(d);
            flip_bit(&d.join("p.safetensors"), 50);
        },
        args: &["unpack", "{d}/p.safetensors", "--out", "{d}/out"],
        says: &["p.safetensors", "checksum mismatch"],
    },
    Case {
        name: "packed-truncated",
        setup: |d| {
            packed(d);
            let p = d.join("p.safetensors");
            let bytes = std::fs::read(&p).unwrap();
            std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
        },
        args: &["generate", "--model", "{d}/p.safetensors", "--prompt", "hi"],
        says: &["p.safetensors"],
    },
    Case {
        name: "packed-file-is-not-packed",
        setup: model,
        args: &["unpack", "{d}/m/model.safetensors", "--out", "{d}/out"],
        says: &["model.safetensors", "format"],
    },
];
