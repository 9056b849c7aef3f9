//! The `bitnet` binary on the committed transformers fixtures (tests/fixtures, written by
//! tools/make_fixtures.py): inspect, schedule, pack and unpack, and clear errors on bad input.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bitnet_core::safetensors::SafeTensors;
use serde_json::Value;

use common::{bitnet, dataset, fixtures, json, tmp, train_args};

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json"))
        .expect("tests/fixtures/expected.json");
    serde_json::from_str(&text).expect("expected.json is JSON")
}

#[test]
fn inspect_reports_transformers_parameter_counts() {
    let exp = expected();
    let models = exp["models"].as_object().unwrap();
    assert!(models.len() >= 5);
    for (name, e) in models {
        let dir = fixtures().join(name);
        let v = json(&["inspect", dir.to_str().unwrap(), "--json"]);
        let s = &v["summary"];
        assert_eq!(
            s["parameters"], e["num_parameters"],
            "{name}: parameter count"
        );
        assert_eq!(s["architecture"], e["architecture"], "{name}");
        assert_eq!(s["tokenizer_vocab"], e["vocab_size"], "{name}");
        assert_eq!(
            (s["layers"].as_u64(), s["hidden_size"].as_u64()),
            (Some(2), Some(64)),
            "{name}"
        );
        assert_eq!(
            (s["attention_heads"].as_u64(), s["kv_heads"].as_u64()),
            (Some(4), Some(2)),
            "{name}"
        );
    }
    let (ok, out, _) = bitnet(&["inspect", fixtures().join("llama").to_str().unwrap()]);
    assert!(
        ok && out.contains(&format!(
            "parameters:     {}",
            exp["models"]["llama"]["num_parameters"]
        )),
        "{out}"
    );
}

#[test]
fn schedule_linear_trace_matches_the_seed() {
    let v = json(&[
        "schedule",
        "--steps",
        "1000",
        "--lambda-warmup-frac",
        "0.4",
        "--json",
    ]);
    let l = v["lambda"].as_array().unwrap();
    assert_eq!(l.len(), 1001);
    let at: Vec<f64> = [0, 100, 200, 300, 400, 500]
        .iter()
        .map(|&s| l[s].as_f64().unwrap())
        .collect();
    assert_eq!(at, vec![0.0, 0.25, 0.5, 0.75, 1.0, 1.0]);
    let v = json(&[
        "schedule",
        "--steps",
        "1000",
        "--lambda_warmup_frac",
        "0",
        "--json",
    ]);
    assert_eq!(v["lambda"][0].as_f64(), Some(1.0));
    let (ok, _, err) = bitnet(&["schedule", "--steps", "10", "--shape", "cubic"]);
    assert!(!ok && err.contains("unknown schedule"), "{err}");
}

/// The absmean quantizer written out again here, independently of bitnet-core: γ = max(mean|W|, 1e-5),
/// q = clamp(round_half_even(W/γ), −1, 1).
fn absmean_dequant(w: &[f32]) -> Vec<f32> {
    let g = ((w.iter().map(|x| x.abs() as f64).sum::<f64>() / w.len() as f64) as f32).max(1e-5);
    w.iter()
        .map(|x| g * (x / g).round_ties_even().clamp(-1.0, 1.0))
        .collect()
}

fn read_tensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = Vec::new();
    let files: Vec<PathBuf> = std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        let st = SafeTensors::parse(&f.display().to_string(), &bytes).unwrap();
        for t in &st.header.tensors {
            out.push((t.name.clone(), t.shape.clone(), st.to_f32(t).unwrap()));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn pack_then_unpack_gives_gamma_times_q() {
    for (fixture, packing) in [
        ("llama", "2bit"),
        ("qwen2-sharded", "trit5"),
        ("llama-bf16", "2bit"),
    ] {
        let dir = tmp(fixture);
        let packed = dir.join("model.bitnet.safetensors");
        let src = fixtures().join(fixture);
        let report = json(&[
            "pack",
            src.to_str().unwrap(),
            "--out",
            packed.to_str().unwrap(),
            "--packing",
            packing,
            "--json",
        ]);
        let tensors = report["tensors"].as_array().unwrap();
        assert!(
            tensors
                .iter()
                .filter(|t| t["ternary"] == true)
                .all(|t| t["device"] == "gpu"),
            "{fixture}: every projection on the GPU"
        );
        assert_eq!(
            tensors.iter().filter(|t| t["ternary"] == true).count(),
            14,
            "{fixture}: 7 projections × 2 layers"
        );
        let out = dir.join("hf");
        let (ok, _, err) = bitnet(&[
            "unpack",
            packed.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{fixture}: unpack failed: {err}");
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            assert!(out.join(f).is_file(), "{fixture}: unpack wrote no {f}");
        }
        let original = read_tensors(&src);
        let unpacked = read_tensors(&out);
        assert_eq!(
            original.iter().map(|t| &t.0).collect::<Vec<_>>(),
            unpacked.iter().map(|t| &t.0).collect::<Vec<_>>(),
            "{fixture}: tensor names"
        );
        for ((name, shape, w), (_, shape2, u)) in original.iter().zip(&unpacked) {
            assert_eq!(shape, shape2, "{fixture}: {name}");
            let want = if name.contains("_proj.weight") {
                absmean_dequant(w)
            } else {
                w.clone()
            };
            // γ is an f32 tree sum on the GPU vs an f64 sum here: relative 1e-5 on γ·q.
            for (i, (a, b)) in u.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-6 + 1e-5 * b.abs(),
                    "{fixture}: {name}[{i}]: unpacked {a}, expected {b}"
                );
            }
        }
    }
}

#[test]
fn pack_threshold_with_seed_options_on_cpu() {
    let dir = tmp("threshold");
    let packed = dir.join("m.bitnet.safetensors");
    let src = fixtures().join("mistral");
    let v = json(&[
        "pack",
        src.to_str().unwrap(),
        "--out",
        packed.to_str().unwrap(),
        "--quantizer",
        "threshold",
        "--threshold",
        "0.7",
        "--scale",
        "absmean",
        "--cpu",
        "--json",
    ]);
    let t = v["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "model.layers.0.mlp.up_proj.weight")
        .unwrap()
        .clone();
    assert_eq!(t["device"], "cpu");
    let sp = t["sparsity"].as_f64().unwrap();
    assert!(sp > 0.3 && sp < 0.7, "sparsity {sp}");
    assert!((t["bits_per_weight"].as_f64().unwrap() - 2.0).abs() < 0.01);
    assert!(v["bytes_out"].as_u64().unwrap() < v["bytes_in"].as_u64().unwrap());
    let (ok, _, err) = bitnet(&[
        "pack",
        src.to_str().unwrap(),
        "--out",
        packed.to_str().unwrap(),
        "--threshold",
        "0.5",
    ]);
    assert!(!ok && err.contains("--quantizer threshold"), "{err}");
}

#[test]
fn bad_inputs_give_errors_that_name_the_file() {
    let dir = tmp("bad");
    std::fs::copy(
        fixtures().join("llama/config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    let bytes = std::fs::read(fixtures().join("llama/model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let (ok, _, err) = bitnet(&["inspect", dir.to_str().unwrap()]);
    assert!(
        !ok && err.contains("model.safetensors") && err.contains("out of range"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let packed = dir.join("broken.bitnet.safetensors");
    std::fs::write(&packed, b"not a packed file").unwrap();
    let (ok, _, err) = bitnet(&[
        "unpack",
        packed.to_str().unwrap(),
        "--out",
        dir.join("o").to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("broken.bitnet.safetensors"), "{err}");

    let (ok, _, err) = bitnet(&["inspect", dir.join("nope").to_str().unwrap()]);
    assert!(!ok && err.contains("nope"), "{err}");
}

#[test]
fn selftest_passes_every_kernel_on_this_adapter() {
    let v = json(&["selftest", "--json"]);
    assert_eq!(v["passed"], true, "{v:#}");
    let checks = v["checks"].as_array().unwrap();
    assert!(checks.len() > 50, "only {} checks", checks.len());
    for family in [
        "quantize",
        "matmul",
        "rmsnorm",
        "rope",
        "attention",
        "swiglu",
        "embedding",
        "xent",
        "optim",
        "elementwise",
    ] {
        assert!(
            checks
                .iter()
                .any(|c| c["kernel"].as_str().unwrap().starts_with(family)),
            "no {family} check"
        );
    }
}

#[test]
fn bench_validates_before_timing() {
    let dir = tmp("bench");
    let out = dir.join("kernels.json");
    let out_arg = out.to_str().unwrap();
    let v = json(&[
        "bench", "kernels", "--size", "64", "--reps", "1", "--out", out_arg, "--json",
    ]);
    let results = v["results"].as_array().unwrap();
    assert!(
        results
            .iter()
            .all(|r| r["validated"] == true && r["median_ms"].as_f64().unwrap() > 0.0),
        "{v:#}"
    );
    assert!(!v["adapter"].as_str().unwrap().is_empty());
    // Every kernel family, and every matmul variant with the blend fused and through scratch.
    for kernel in [
        "matmul gemm_naive x·Wᵀ",
        "matmul gemm_tiled λ-fused x·Wᵀ",
        "matmul gemm_tiled λ-scratch x·W(K,N)",
        "matmul gemm_reg λ-fused x·Wᵀ",
        "matmul gemm_reg λ-scratch x·Wᵀ",
        "rmsnorm backward",
        "swiglu backward",
        "rope forward",
        "embedding forward",
        "xent backward",
        "attention forward",
        "attention backward",
        "adamw",
    ] {
        assert!(
            results.iter().any(|r| r["kernel"] == kernel),
            "no {kernel} in {v:#}"
        );
    }
    // The plan was measured, and --out holds the same report.
    assert_eq!(v["plan"]["measured"], true, "{v:#}");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(written["results"].as_array().unwrap().len(), results.len());
}

// Shared with the model tests; this file uses the check only.
#[allow(dead_code)]
#[path = "../../../tests/support/oracle.rs"]
mod oracle;

/// `bitnet grads` writes what the PyTorch oracle computed: loss, logits and every gradient, under
/// the Hugging Face names (qwen2: tied embeddings and q/k/v biases; llama: threshold codes and the
/// post-attention norm).
#[test]
fn grads_match_the_pytorch_oracle() {
    let dir = tmp("grads");
    let tokens = fixtures().join("oracle/tokens.json");
    let cases: [(&str, &str, &[&str]); 3] = [
        ("qwen2", "absmean-l0.5", &["--lambda", "0.5"]),
        (
            "llama",
            "threshold-l1",
            &["--lambda", "1", "--quantizer", "threshold"],
        ),
        (
            "llama",
            "absmean-l0.5-postnorm",
            &["--lambda", "0.5", "--rmsnorm_post_attn"],
        ),
    ];
    for (model, variant, extra) in cases {
        let out = dir.join(format!("{model}-{variant}.safetensors"));
        let model_dir = fixtures().join(model);
        let mut args = vec![
            "grads",
            model_dir.to_str().unwrap(),
            "--tokens",
            tokens.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        let v = json(&args);
        let bytes = std::fs::read(&out).unwrap();
        let st = SafeTensors::parse("grads", &bytes).unwrap();
        let get = |name: &str| st.to_f32(st.get(name).unwrap()).unwrap();
        let loss = get("loss")[0];
        assert!((v["loss"].as_f64().unwrap() as f32 - loss).abs() < 1e-6);
        let n_grads = st
            .header
            .tensors
            .iter()
            .filter(|t| t.name.starts_with("grad."))
            .count();
        let mut grad = |name: &str| {
            st.get(&format!("grad.{name}"))
                .map(|t| st.to_f32(t).unwrap())
        };
        oracle::check(model, variant, loss, &get("logits"), n_grads, &mut grad);
    }
    // SubLN (gains 1): its gains get gradients too.
    let out = dir.join("subln.safetensors");
    let llama_dir = fixtures().join("llama");
    json(&[
        "grads",
        llama_dir.to_str().unwrap(),
        "--tokens",
        tokens.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--subln",
        "--json",
    ]);
    let bytes = std::fs::read(&out).unwrap();
    let st = SafeTensors::parse("grads", &bytes).unwrap();
    assert_eq!(st.header.metadata["subln"], "true");
    for name in [
        "grad.model.layers.0.self_attn.attn_sub_norm.weight",
        "grad.model.layers.1.mlp.ffn_sub_norm.weight",
    ] {
        let g = st.to_f32(st.get(name).expect(name)).unwrap();
        assert!(g.iter().any(|x| *x != 0.0), "{name} is all zero");
    }
    // Bad token files are named in the error.
    let bad = dir.join("bad.json");
    let llama = fixtures().join("llama");
    for (content, says) in [
        ("not json", "expected a JSON list of token-id lists"),
        ("[[1, 2, 3], [4, 5]]", "equal"),
        (
            "[[1, 2, 99999]]",
            "outside the model's vocabulary of 297 ids",
        ),
    ] {
        std::fs::write(&bad, content).unwrap();
        let (ok, _, err) = bitnet(&[
            "grads",
            llama.to_str().unwrap(),
            "--tokens",
            bad.to_str().unwrap(),
            "--out",
            dir.join("x.safetensors").to_str().unwrap(),
        ]);
        assert!(
            !ok && err.contains("bad.json") && err.contains(says),
            "{content}: {err}"
        );
    }
}

#[test]
fn bench_train_reports_a_full_training_step() {
    let llama = fixtures().join("llama");
    let v = json(&[
        "bench",
        "train",
        "--model",
        llama.to_str().unwrap(),
        "--batch",
        "1",
        "--seq-len",
        "8",
        "--steps",
        "1",
        "--json",
    ]);
    assert_eq!(
        v["parameters"],
        expected()["models"]["llama"]["num_parameters"]
    );
    for key in [
        "step_seconds",
        "tokens_per_s",
        "step_gflops",
        "matmul_gflops",
        "fraction_of_matmul",
    ] {
        let x = v[key].as_f64().unwrap_or(f64::NAN);
        assert!(x.is_finite() && x > 0.0, "{key} = {x} in {v:#}");
    }
    assert!(v["gpu_bytes"].as_u64().unwrap() > 4 * 112_064, "{v:#}");
    let (ok, _, err) = bitnet(&["bench", "train", "--shape", "gpt-9"]);
    assert!(!ok && err.contains("unknown shape `gpt-9`"), "{err}");
}

/// 60 steps on the llama fixture: the loss falls, metrics.jsonl's λ is the linear schedule at every
/// step, the packed codes are ternary and decode to the HF folder's weights, the manifest matches.
#[test]
fn train_sixty_steps_writes_metrics_packed_file_hf_folder_and_manifest() {
    let dir = tmp("train60");
    let data = dataset(&dir);
    let out = dir.join("run");
    let model = fixtures().join("llama");
    let mut args = train_args(
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        model.to_str().unwrap(),
        "60",
    );
    // Cross-entropy on the data, whose loss falls as the model learns it (a distillation loss
    // starts at 0: the student is its teacher at λ = 0).
    args.extend(["--log-every", "1", "--json", "--loss", "ce"]);
    let manifest = json(&args);
    let metrics: Vec<Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(metrics.len(), 60);
    for (s, m) in metrics.iter().enumerate() {
        assert_eq!(m["step"], s as u64);
        let want = if s < 24 { s as f64 / 24.0 } else { 1.0 };
        assert!(
            (m["lambda"].as_f64().unwrap() - want).abs() < 1e-12,
            "step {s}: {m}"
        );
        assert_eq!(m["phase"], if s < 24 { "warmup" } else { "ternary" });
    }
    let (first, last) = (
        metrics[0]["loss"].as_f64().unwrap(),
        metrics[59]["loss"].as_f64().unwrap(),
    );
    assert!(last < first, "loss {first} → {last}");
    // Losses are f32: compare them as such (JSON prints an f32 and its f64 widening differently).
    assert_eq!(
        manifest["first_loss"].as_f64().unwrap() as f32,
        first as f32
    );
    assert_eq!(manifest["final_loss"].as_f64().unwrap() as f32, last as f32);
    assert_eq!(manifest["training_steps"], 60);
    assert_eq!(manifest["final_lambda"], 1.0);
    assert_eq!(manifest["compression_ready"], true);
    assert_eq!(manifest["model_type"], "bitnet158");
    assert_eq!(manifest["quantizer"], "absmean");
    assert_eq!(manifest["rmsnorm_post_attn"], false);
    assert_eq!(manifest["lambda_warmup_frac"], 0.4);
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("training_manifest.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk, manifest);
    // Checkpoints every 15 steps, the last two kept.
    let mut ckpts: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("checkpoint-"))
        .collect();
    ckpts.sort();
    assert_eq!(
        ckpts,
        ["checkpoint-45.safetensors", "checkpoint-60.safetensors"]
    );
    // The packed file: its checksum is the manifest's; its codes are ternary and decode to hf/.
    let packed_bytes = std::fs::read(out.join("model.bitnet.safetensors")).unwrap();
    assert_eq!(manifest["packed_bytes"], packed_bytes.len());
    let packed = bitnet_core::packed::PackedModel::parse("packed", &packed_bytes).unwrap();
    assert_eq!(
        manifest["checksum"].as_str().unwrap(),
        packed.st.header.metadata["checksum"]
    );
    let hf: BTreeMap<String, Vec<f32>> = read_tensors(&out.join("hf"))
        .into_iter()
        .map(|(n, _, v)| (n, v))
        .collect();
    assert_eq!(packed.shapes.len(), 14);
    for name in packed.shapes.keys() {
        let t = packed.ternary(name).unwrap();
        assert!(t.codes.iter().all(|c| (-1..=1).contains(c)), "{name}");
        assert_eq!(t.dequantize(), hf[name], "{name}");
    }
    assert!(out.join("hf/config.json").is_file() && out.join("hf/tokenizer.json").is_file());
}

/// A run killed after a checkpoint and resumed ends with the same weights as an uninterrupted run.
#[test]
fn train_resumed_after_sigkill_ends_where_an_uninterrupted_run_does() {
    let dir = tmp("train-resume");
    let data = dataset(&dir);
    let model = fixtures().join("llama");
    let (whole, cut) = (dir.join("whole"), dir.join("cut"));
    let args = |out: &Path| -> Vec<String> {
        let mut a: Vec<String> = train_args(
            data.to_str().unwrap(),
            out.to_str().unwrap(),
            model.to_str().unwrap(),
            "24",
        )
        .into_iter()
        .map(String::from)
        .collect();
        a.extend(["--save-steps", "4"].map(String::from));
        a
    };
    let (ok, _, err) = bitnet(&args(&whole).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{err}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_bitnet"))
        .args(args(&cut))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !cut.join("checkpoint-8.safetensors").exists() {
        assert!(
            started.elapsed().as_secs() < 600,
            "no checkpoint-8 appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !cut.join("training_manifest.json").exists(),
        "the run finished before it was killed"
    );
    let mut resume = args(&cut);
    resume.push("--resume".into());
    let (ok, out, err) = bitnet(&resume.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok && out.contains("resumed from"), "{out}{err}");
    let a = std::fs::read(whole.join("hf/model.safetensors")).unwrap();
    let b = std::fs::read(cut.join("hf/model.safetensors")).unwrap();
    assert!(
        a == b,
        "resumed weights differ from the uninterrupted run's"
    );
    let lines = |d: &Path| std::fs::read_to_string(d.join("metrics.jsonl")).unwrap();
    let steps = |t: String| {
        t.lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(steps(lines(&whole)), steps(lines(&cut)));
}

/// A diverging run (absurd learning rate) stops at the first non-finite loss, names the step, and
/// leaves the checkpoint before it intact.
#[test]
fn train_stops_on_a_non_finite_loss_and_keeps_the_last_checkpoint() {
    let dir = tmp("train-nan");
    let data = dataset(&dir);
    let model = fixtures().join("llama");
    let out = dir.join("run");
    let mut args = train_args(
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        model.to_str().unwrap(),
        "10",
    );
    let lr_at = args.iter().position(|a| *a == "3e-3").unwrap();
    args[lr_at] = "1e30";
    args.extend(["--save-steps", "1", "--warmup-ratio", "0"]);
    let (ok, _, err) = bitnet(&args);
    assert!(!ok, "a diverging run must fail");
    assert!(err.contains("not finite") && err.contains("step "), "{err}");
    let ckpt = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("checkpoint-")
        })
        .expect("the checkpoint before the failure is kept");
    assert!(err.contains(&ckpt.display().to_string()), "{err}");
    let bytes = std::fs::read(&ckpt).unwrap();
    SafeTensors::parse("checkpoint", &bytes).expect("the kept checkpoint is a valid file");
    assert!(!out.join("training_manifest.json").exists());
}

/// Before allocating, train prints what the run needs and refuses a buffer no binding can hold.
#[test]
fn train_refuses_a_run_whose_logits_cannot_fit_a_binding() {
    let dir = tmp("train-too-big");
    let data = dataset(&dir);
    let model = fixtures().join("llama");
    let out = dir.join("run");
    let mut args = train_args(
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        model.to_str().unwrap(),
        "10",
    );
    let bsz_at = args.iter().position(|a| *a == "--bsz").unwrap() + 1;
    args[bsz_at] = "100000";
    let seq_at = args.iter().position(|a| *a == "--seq-len").unwrap() + 1;
    args[seq_at] = "256"; // the fixture's context
    let (ok, stdout, err) = bitnet(&args);
    assert!(!ok, "an impossible run must be refused");
    assert!(stdout.contains("GPU memory needed"), "{stdout}");
    assert!(
        err.contains("the logits of a micro-batch") && err.contains("per binding"),
        "{err}"
    );
    assert!(
        !out.join("metrics.jsonl").exists(),
        "nothing is written for a refused run"
    );
}

/// On a headless machine (no Wayland display, no XDG_RUNTIME_DIR) `bitnet info` prints the adapter
/// and no spurious error line from the Vulkan layers below it.
#[test]
fn info_prints_no_error_line_on_a_headless_machine() {
    let out = Command::new(env!("CARGO_BIN_EXE_bitnet"))
        .arg("info")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("run bitnet");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("adapter:"), "{text}");
    let bad: Vec<&str> = text
        .lines()
        .filter(|l| l.to_lowercase().contains("error"))
        .collect();
    assert!(bad.is_empty(), "lines with `error`: {bad:?}");
}

/// `--resume` with a setting that defines the run changed (here the sequence length and the
/// quantizer) is refused by the name of the setting, and nothing of the run is touched.
#[test]
fn train_resume_with_other_settings_is_refused_by_name() {
    let dir = tmp("train-resume-other");
    let data = dataset(&dir);
    let model = fixtures().join("llama");
    let out = dir.join("run");
    let mut args = train_args(
        data.to_str().unwrap(),
        out.to_str().unwrap(),
        model.to_str().unwrap(),
        "4",
    );
    args.extend(["--save-steps", "2"]);
    let (ok, _, err) = bitnet(&args);
    assert!(ok, "{err}");
    let before = std::fs::read(out.join("checkpoint-4.safetensors")).unwrap();
    let seq_at = args.iter().position(|a| *a == "--seq-len").unwrap() + 1;
    for (flag, value, says) in [
        ("--seq-len", "64", "--seq-len 32 (this run: 64)"),
        (
            "--quantizer",
            "threshold",
            "--quantizer absmean (this run: threshold",
        ),
    ] {
        let mut again = args.clone();
        if flag == "--seq-len" {
            again[seq_at] = value;
        } else {
            again.extend([flag, value]);
        }
        again.push("--resume");
        let (ok, _, err) = bitnet(&again);
        assert!(!ok, "a resume with another {flag} must be refused");
        assert!(
            err.contains("checkpoint-4.safetensors") && err.contains(says),
            "{flag}: {err}"
        );
    }
    assert_eq!(
        std::fs::read(out.join("checkpoint-4.safetensors")).unwrap(),
        before
    );
    // The same flags on the finished run: it says so, and changes nothing.
    let mut same = args.clone();
    same.push("--resume");
    let (ok, _, err) = bitnet(&same);
    assert!(!ok && err.contains("finished run (4 of 4 steps"), "{err}");
    assert_eq!(
        std::fs::read(out.join("checkpoint-4.safetensors")).unwrap(),
        before
    );
}

/// A run folder belongs to one run: `train` into the folder of an earlier run is refused (nothing
/// in it changes) unless `--resume` or `--overwrite`, which clears the earlier run's files first.
#[test]
fn train_into_an_earlier_runs_folder_is_refused_unless_overwrite() {
    let dir = tmp("train-overwrite");
    let data = dataset(&dir);
    let model = fixtures().join("llama");
    let out = dir.join("run");
    let run = |steps: &str, extra: &[&str]| {
        let mut a = train_args(
            data.to_str().unwrap(),
            out.to_str().unwrap(),
            model.to_str().unwrap(),
            steps,
        );
        a.extend(["--save-steps", "2"]);
        a.extend(extra);
        bitnet(&a)
    };
    let (ok, _, err) = run("4", &[]);
    assert!(ok, "{err}");
    let manifest = std::fs::read(out.join("training_manifest.json")).unwrap();
    let (ok, _, err) = run("2", &[]);
    assert!(
        !ok && err.contains("earlier run") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(out.join("training_manifest.json")).unwrap(),
        manifest
    );
    let (ok, _, err) = run("2", &["--overwrite"]);
    assert!(ok, "{err}");
    let ckpts: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("checkpoint-"))
        .collect();
    assert_eq!(ckpts, ["checkpoint-2.safetensors"]);
    let m: Value =
        serde_json::from_slice(&std::fs::read(out.join("training_manifest.json")).unwrap())
            .unwrap();
    assert_eq!(m["training_steps"], 2);
}

/// `pack` and `unpack` never write over their own inputs, and replace an existing output only with
/// `--overwrite`; a refused command leaves every file as it was.
#[test]
fn pack_and_unpack_refuse_to_overwrite_inputs_and_existing_outputs() {
    let dir = tmp("no-overwrite");
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(fixtures().join("llama").join(f), model.join(f)).unwrap();
    }
    let weights = std::fs::read(model.join("model.safetensors")).unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();

    // pack --out one of the model's own files: refused, even with --overwrite.
    for extra in [None, Some("--overwrite")] {
        let mut args = vec![
            "pack".to_string(),
            s(&model),
            "--out".into(),
            s(&model.join("model.safetensors")),
        ];
        args.extend(extra.map(String::from));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, err) = bitnet(&refs);
        assert!(
            !ok && err.contains("inputs") && err.contains("model.safetensors"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(model.join("model.safetensors")).unwrap(),
            weights
        );
    }

    // pack over an existing file: refused unless --overwrite.
    let packed = dir.join("llama.bitnet.safetensors");
    std::fs::write(&packed, b"an earlier file").unwrap();
    let (ok, _, err) = bitnet(&["pack", &s(&model), "--out", &s(&packed)]);
    assert!(
        !ok && err.contains("already exists") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(std::fs::read(&packed).unwrap(), b"an earlier file");
    let (ok, _, err) = bitnet(&["pack", &s(&model), "--out", &s(&packed), "--overwrite"]);
    assert!(ok, "{err}");

    // unpack into the model folder: its weights, config and tokenizer would be replaced.
    let config = std::fs::read(model.join("config.json")).unwrap();
    let (ok, _, err) = bitnet(&["unpack", &s(&packed), "--out", &s(&model)]);
    assert!(
        !ok && err.contains("config.json") && err.contains("--overwrite"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(model.join("model.safetensors")).unwrap(),
        weights
    );
    assert_eq!(std::fs::read(model.join("config.json")).unwrap(), config);
    let (ok, _, err) = bitnet(&["unpack", &s(&packed), "--out", &s(&model), "--overwrite"]);
    assert!(ok, "{err}");
    assert_ne!(
        std::fs::read(model.join("model.safetensors")).unwrap(),
        weights
    );

    // unpack of a packed file named like an output, into its own folder: refused, even with --overwrite.
    let own = dir.join("own");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::copy(&packed, own.join("model.safetensors")).unwrap();
    let (ok, _, err) = bitnet(&[
        "unpack",
        &s(&own.join("model.safetensors")),
        "--out",
        &s(&own),
        "--overwrite",
    ]);
    assert!(!ok && err.contains("inputs"), "{err}");
    assert_eq!(
        std::fs::read(own.join("model.safetensors")).unwrap(),
        std::fs::read(&packed).unwrap()
    );
}

/// A NaN in a model's weights is refused by `pack` and `generate`, naming the file, the tensor and
/// the element, and `pack` writes nothing.
#[test]
fn a_nan_weight_is_refused_by_tensor() {
    let dir = tmp("nan-weight");
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixtures().join("llama").join(f), model.join(f)).unwrap();
    }
    let mut bytes = std::fs::read(fixtures().join("llama/model.safetensors")).unwrap();
    let name = "model.layers.1.mlp.up_proj.weight";
    let at = {
        let st = SafeTensors::parse("model.safetensors", &bytes).unwrap();
        st.header.data_start as usize + st.get(name).unwrap().begin as usize
    };
    bytes[at + 12..at + 16].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(model.join("model.safetensors"), &bytes).unwrap();
    let out = dir.join("m.bitnet.safetensors");
    let m = model.to_str().unwrap();
    let (ok, _, err) = bitnet(&["pack", m, "--out", out.to_str().unwrap()]);
    assert!(
        !ok && err.contains(name) && err.contains("element 3"),
        "{err}"
    );
    assert!(!out.exists());
    let (ok, _, err) = bitnet(&[
        "generate",
        "--model",
        m,
        "--prompt",
        "Hi",
        "--max-new-tokens",
        "2",
    ]);
    assert!(
        !ok && err.contains(name) && !err.contains("panicked"),
        "{err}"
    );
}
