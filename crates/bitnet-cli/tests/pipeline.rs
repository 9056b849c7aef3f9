//! `bitnet generate`, `selfgen`, `eval`, `run` and `demo` on the fixtures and the built-in demo model.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use bitnet_core::dataset::{Example, parse_jsonl};
use bitnet_core::selfgen::check;
use serde_json::Value;

use common::{bitnet, demo_folder, fixtures, json, tmp};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn generate_greedy_matches_transformers_and_ternary_equals_the_packed_file() {
    let llama = fixtures().join("llama");
    let fx: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("generate/llama.json")).unwrap())
            .unwrap();
    let p = &fx["prompts"][1];
    let prompt = p["text"].as_str().unwrap();
    let v = json(&[
        "generate",
        "--model",
        s(&llama),
        "--prompt",
        prompt,
        "--max-new-tokens",
        "12",
        "--greedy",
        "--json",
    ]);
    assert_eq!(ids(&v["prompt_ids"]), ids(&p["ids"]));
    assert_eq!(ids(&v["tokens"]), ids(&p["new_ids"])[..12]);
    assert_eq!(v["ended_by"], "max_new_tokens");
    assert_eq!(v["prefill_tokens"], p["ids"].as_array().unwrap().len());
    assert_eq!(v["decode_tokens"], 11);
    for k in [
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
        "prefill_ms",
        "decode_ms",
    ] {
        assert!(v[k].as_f64().unwrap() > 0.0, "{k}: {}", v[k]);
    }

    // --ternary on the folder and the packed file of `bitnet pack` give the same tokens.
    let dir = tmp("ternary");
    let packed = dir.join("llama.bitnet.safetensors");
    let (ok, _, err) = bitnet(&["pack", s(&llama), "--out", s(&packed)]);
    assert!(ok, "{err}");
    for (args, what) in [
        (vec!["--greedy"], "greedy"),
        (
            vec![
                "--temperature",
                "0.9",
                "--top-k",
                "40",
                "--top-p",
                "0.95",
                "--seed",
                "7",
            ],
            "sampled",
        ),
    ] {
        let run = |model: &Path, ternary: bool| {
            let mut a = vec!["generate", "--model", s(model), "--prompt", prompt];
            a.extend(["--max-new-tokens", "16", "--json"]);
            a.extend(args.iter().copied());
            if ternary {
                a.push("--ternary");
            }
            json(&a)
        };
        let from_dir = run(&llama, true);
        let from_file = run(&packed, false);
        assert_eq!(from_dir["tokens"], from_file["tokens"], "{what}");
        assert_eq!(from_dir["ternary"], true);
        assert_eq!(from_file["ternary"], true);
        assert_eq!(ids(&from_dir["tokens"]).len(), 16, "{what}");
        // Ternary weights change the model: its greedy tokens differ from the full-precision ones.
        if what == "greedy" {
            assert_ne!(ids(&from_dir["tokens"]), ids(&p["new_ids"])[..16]);
        }
    }
    let (ok, _, err) = bitnet(&["generate", "--model", s(&dir), "--prompt", "x"]);
    assert!(!ok && err.contains("config.json"), "{err}");
}

/// Templates with one-word instructions, so that the random fixture model's samples can pass the
/// word filters.
fn templates(dir: &Path) -> PathBuf {
    let t = serde_json::json!({"domains": [
        {"name": "words", "form": "{task}", "tasks": ["Hello", "Story", "Poem", "Count", "Explain", "Why"]},
        {"name": "more", "form": "Say {task}", "tasks": ["anything", "more"]},
    ]});
    let p = dir.join("templates.json");
    std::fs::write(&p, t.to_string()).unwrap();
    p
}

fn lines(path: &Path) -> Vec<Example> {
    parse_jsonl("data.jsonl", &std::fs::read(path).unwrap()).unwrap()
}

fn assert_clean(data: &[Example]) {
    let mut outputs = BTreeSet::new();
    for ex in data {
        assert!(check(&ex.instruction, &ex.output).is_ok(), "{ex:?}");
        assert!(
            outputs.insert(ex.output.clone()),
            "duplicate output {:?}",
            ex.output
        );
        assert!(["words", "more"].contains(&ex.domain.as_str()));
        assert!(ex.input.is_empty());
    }
}

fn selfgen_args<'a>(out: &'a str, templates: &'a str, num: &'a str) -> Vec<&'a str> {
    vec![
        "selfgen",
        "--model",
        "",
        "--out",
        out,
        "--num",
        num,
        "--max-new-tokens",
        "160",
        "--batch",
        "4",
        "--templates",
        templates,
    ]
}

#[test]
fn selfgen_writes_filtered_unique_lines_resumes_after_a_kill_and_stops_at_its_budget() {
    let llama = fixtures().join("llama");
    let dir = tmp("selfgen");
    let t = templates(&dir);
    let out = dir.join("data.jsonl");
    let mut args = selfgen_args(s(&out), s(&t), "6");
    args[2] = s(&llama);

    // Killed once two lines are written, then a line cut short is appended as a crash would.
    let mut child = Command::new(env!("CARGO_BIN_EXE_bitnet"))
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&out).map_or(0, |t| t.lines().count()) < 2 {
        assert!(t0.elapsed().as_secs() < 300, "no lines after 5 minutes");
        assert!(child.try_wait().unwrap().is_none(), "selfgen ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = std::fs::read_to_string(&out).unwrap();
    let whole: String = before
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .collect();
    std::fs::write(&out, format!("{whole}{{\"instruction\": \"cut")).unwrap();
    let kept_before = lines_of(&whole);
    assert!(kept_before.len() >= 2 && kept_before.len() < 6);

    // Without --resume the file is never touched.
    let (ok, _, err) = bitnet(&args);
    assert!(!ok && err.contains("--resume"), "{err}");

    let mut resume = args.clone();
    resume.extend(["--resume", "--json"]);
    let report = json(&resume);
    let after = std::fs::read_to_string(&out).unwrap();
    assert!(
        after.starts_with(&whole),
        "the lines written before the kill are kept as they were"
    );
    let data = lines(&out);
    assert_eq!(data.len(), 6);
    assert_clean(&data);
    assert_eq!(report["stopped_by"], "num");
    let c = &report["counts"];
    assert_eq!(c["kept"], 6);
    let rejected: u64 = [
        "too_short",
        "too_long",
        "disclaimer",
        "too_few_words",
        "instruction_longer",
        "duplicates",
    ]
    .iter()
    .map(|k| c[k].as_u64().unwrap())
    .sum();
    assert_eq!(c["attempts"].as_u64().unwrap(), 6 + rejected);
    assert!(c["attempts"].as_u64().unwrap() <= 4 * 6);

    // The same run uninterrupted writes the same lines (each attempt has its own seeded stream).
    let fresh = dir.join("fresh.jsonl");
    let mut again = args.clone();
    again[4] = s(&fresh);
    let (ok, _, err) = bitnet(&again);
    assert!(ok, "{err}");
    assert_eq!(lines(&fresh), data);
    let fresh_report: Value =
        serde_json::from_slice(&std::fs::read(dir.join("fresh.jsonl.state.json")).unwrap())
            .unwrap();
    assert_eq!(fresh_report["counts"], report["counts"]);

    // The attempt budget.
    let budget = dir.join("budget.jsonl");
    let mut b = selfgen_args(s(&budget), s(&t), "1000");
    b[2] = s(&llama);
    b.extend(["--max-attempts", "4", "--json"]);
    let report = json(&b);
    assert_eq!(report["stopped_by"], "max_attempts");
    assert_eq!(report["counts"]["attempts"], 4);
    assert_clean(&lines(&budget));

    // A run that has kept nothing yet (one-token answers are all too short) resumes too.
    let empty = dir.join("empty.jsonl");
    let mut e = selfgen_args(s(&empty), s(&t), "5");
    e[2] = s(&llama);
    e[8] = "1";
    let first = json(&[e.clone(), vec!["--max-attempts", "2", "--json"]].concat());
    assert_eq!(first["counts"]["too_short"], 2);
    let more = json(&[e, vec!["--max-attempts", "3", "--resume", "--json"]].concat());
    assert_eq!(more["counts"]["attempts"], 3);
    assert_eq!(more["counts"]["kept"], 0);
    assert_eq!(std::fs::read_to_string(&empty).unwrap(), "");
}

fn lines_of(text: &str) -> Vec<Example> {
    parse_jsonl("data.jsonl", text.as_bytes()).unwrap()
}

#[test]
fn eval_reports_the_perplexity_of_folder_and_packed_file_alike() {
    let llama = fixtures().join("llama");
    let dir = tmp("eval");
    let data = dir.join("eval.jsonl");
    std::fs::write(
        &data,
        "{\"instruction\": \"Say hi\", \"output\": \"Hi there, how are you today?\"}\n{\"instruction\": \"Count\", \"input\": \"to three\", \"output\": \"one two three\"}\n",
    )
    .unwrap();
    let fp = json(&[
        "eval",
        "--model",
        s(&llama),
        "--dataset",
        s(&data),
        "--json",
    ])["held_out"]
        .clone();
    let loss = fp["mean_loss"].as_f64().unwrap();
    assert!((fp["perplexity"].as_f64().unwrap() - loss.exp()).abs() < 1e-9 * loss.exp());
    // A random model over a vocabulary of 297: close to uniform.
    assert!((loss - 297f64.ln()).abs() < 0.2, "loss {loss}");
    assert_eq!(fp["examples"], 2);
    let packed = dir.join("p.safetensors");
    assert!(bitnet(&["pack", s(&llama), "--out", s(&packed)]).0);
    let t1 = json(&[
        "eval",
        "--model",
        s(&llama),
        "--dataset",
        s(&data),
        "--ternary",
        "--json",
    ])["held_out"]
        .clone();
    let t2 = json(&[
        "eval",
        "--model",
        s(&packed),
        "--dataset",
        s(&data),
        "--json",
    ])["held_out"]
        .clone();
    assert_eq!(t1["mean_loss"], t2["mean_loss"]);
    assert_eq!(t1["tokens"], fp["tokens"]);
    assert_ne!(t1["mean_loss"], fp["mean_loss"]);
    let (ok, _, err) = bitnet(&[
        "eval",
        "--model",
        s(&llama),
        "--dataset",
        s(&dir.join("none.jsonl")),
    ]);
    assert!(!ok && err.contains("none.jsonl"), "{err}");
}

/// The built-in demo model's folder as tools/make_demo_model.py wrote it.
#[test]
fn eval_task_scores_the_demo_models_greedy_answers_by_exact_match() {
    let demo = demo_folder();
    let v = json(&[
        "eval",
        "--model",
        s(&demo),
        "--task",
        s(&demo.join("tasks.jsonl")),
        "--bsz",
        "32",
        "--json",
    ]);
    assert!(v["held_out"].is_null(), "{v}");
    let t = &v["tasks"];
    let (correct, n) = (t["correct"].as_u64().unwrap(), t["tasks"].as_u64().unwrap());
    assert_eq!(n, 100);
    assert!(
        correct >= 90,
        "the demo model answers {correct} of {n} tasks"
    );
    // PyTorch's greedy answers (the script's own measurement) score within 2 tasks of ours.
    let report: Value =
        serde_json::from_slice(&std::fs::read(demo.join("report.json")).unwrap()).unwrap();
    let torch = (report["tasks_jsonl_exact_match"].as_f64().unwrap() * n as f64).round() as u64;
    assert!(
        correct.abs_diff(torch) <= 2,
        "ours {correct}, PyTorch's {torch}"
    );
    let domains = t["domains"].as_array().unwrap();
    assert_eq!(domains.len(), 5, "{domains:?}");

    // Exact match: the model's own answer (spaces around it do not count) is right, one word
    // more is wrong; the batch size never changes a score.
    let answers: Vec<&Value> = t["answers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["correct"] == true)
        .take(2)
        .collect();
    let dir = tmp("eval-task");
    let small = dir.join("tasks.jsonl");
    let task = |a: &Value, output: String| {
        serde_json::json!({"instruction": a["instruction"], "output": output}).to_string()
    };
    let a = |i: usize| answers[i]["answer"].as_str().unwrap().to_string();
    std::fs::write(
        &small,
        format!(
            "{}\n{}\n",
            task(answers[0], format!("  {} ", a(0))),
            task(answers[1], format!("{} more", a(1)))
        ),
    )
    .unwrap();
    let mut seen = Vec::new();
    for bsz in ["1", "2"] {
        let v = json(&[
            "eval",
            "--model",
            s(&demo),
            "--task",
            s(&small),
            "--bsz",
            bsz,
            "--json",
        ]);
        let flags: Vec<&Value> = v["tasks"]["answers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["correct"])
            .collect();
        assert_eq!(flags, [&Value::Bool(true), &Value::Bool(false)], "{v}");
        seen.push(v["tasks"]["answers"].clone());
    }
    assert_eq!(seen[0], seen[1]);
    let (ok, out, err) = bitnet(&["eval", "--model", s(&demo), "--task", s(&small)]);
    assert!(ok, "{err}");
    assert!(out.contains("accuracy 50.0 % (1 of 2 tasks"), "{out}");
}

#[test]
fn demo_runs_the_whole_pipeline_and_a_second_run_resumes_it() {
    let dir = tmp("demo");
    let (ok, out, err) = bitnet(&["demo", "--out-dir", s(&dir)]);
    assert!(ok, "{err}");
    for want in [
        "1/4 self-generation",
        "2/4 training",
        "3/4 packed",
        "4/4 perplexity",
        "step      λ",
        "ternary",
        "sample from the ternary model",
        "accuracy on the held-out tasks (exact match)",
        "ternarized only",
        "quality: base model against trained ternary",
        "held-out KL to the original",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let r: Value =
        serde_json::from_slice(&std::fs::read(dir.join("run_report.json")).unwrap()).unwrap();
    assert_eq!(r["data"]["counts"]["kept"], 100);
    let c = &r["comparison"];
    let (base, ptq, trained) = (
        &c["quality"]["original"],
        &c["base_ternary"],
        &c["quality"]["ternary"],
    );
    let ppl = |side: &Value| side["held_out"]["perplexity"].as_f64().unwrap();
    let kl = |side: &Value| side["held_out"]["kl_to_reference"].as_f64().unwrap();
    // Training recovers part of what ternarizing alone loses, and comes closer to the original.
    assert!(ppl(trained) < ppl(ptq), "{r}");
    assert!(0.0 < kl(trained) && kl(trained) < kl(ptq), "{r}");
    assert!(base["held_out"]["kl_to_reference"].is_null());
    let acc = |side: &Value| side["tasks"]["accuracy"].as_f64().unwrap();
    assert!(acc(base) >= 0.9, "{r}");
    assert!(acc(ptq) < acc(base), "{r}");
    assert_eq!(trained["tasks"]["tasks"], 100);
    // The training manifest records the quality report.
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("train/training_manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["quality"], c["quality"]);
    // The demo trains without extra norms: no "with its norms at their start" row.
    assert!(c["base_with_norms"].is_null(), "{r}");
    assert!(r["packed_bytes"].as_u64().unwrap() > 0);
    assert!((0.0..1.0).contains(&r["sparsity"].as_f64().unwrap()));
    assert_clean_demo(&lines(&dir.join("data.jsonl")));
    let metrics = std::fs::read_to_string(dir.join("train/metrics.jsonl")).unwrap();
    let last: Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    assert_eq!(last["lambda"], 1.0);

    // Again in the same folder: nothing is generated or trained twice.
    let data_before = std::fs::read(dir.join("data.jsonl")).unwrap();
    let (ok, out, err) = bitnet(&["demo", "--out-dir", s(&dir)]);
    assert!(ok, "{err}");
    assert!(out.contains("already trained"), "{out}");
    assert_eq!(std::fs::read(dir.join("data.jsonl")).unwrap(), data_before);
}

fn assert_clean_demo(data: &[Example]) {
    let mut outputs = BTreeSet::new();
    for ex in data {
        assert!(check(&ex.instruction, &ex.output).is_ok(), "{ex:?}");
        assert!(outputs.insert(ex.output.clone()));
    }
}

#[test]
fn generate_chat_prompts_through_the_tokenizer_chat_template() {
    let dir = tmp("chat");
    let llama = fixtures().join("llama");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(llama.join(f), dir.join(f)).unwrap();
    }
    let config = serde_json::json!({
        "bos_token": {"content": "<s>"},
        "eos_token": "</s>",
        "chat_template": "{{ bos_token }}{% for message in messages %}{{ message['content'] | trim }}{% endfor %}{% if add_generation_prompt %}{{ '\\n' }}Response:{% endif %}",
    });
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    let v = json(&[
        "generate",
        "--model",
        s(&dir),
        "--prompt",
        "  Hi!  ",
        "--chat",
        "--greedy",
        "--max-new-tokens",
        "3",
        "--json",
    ]);
    // <s> from the template (id 0, not doubled), then "Hi!\nResponse:" as the oracle tokenizes it.
    let fx: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("generate/llama.json")).unwrap())
            .unwrap();
    let mut want = vec![0];
    want.extend(ids(&fx["prompts"][0]["ids"]));
    assert_eq!(ids(&v["prompt_ids"]), want);
    let (ok, _, err) = bitnet(&["generate", "--model", s(&llama), "--prompt", "Hi", "--chat"]);
    assert!(!ok && err.contains("chat_template"), "{err}");
}

/// A model trained with the post-attention RMSNorm carries its trained gains in its packed file:
/// `eval` of the file copied alone elsewhere gives the same loss, and `generate` runs it; `unpack`
/// writes them into the folder with the modeling file that adds them, and our own `generate` of
/// that folder gives the packed file's tokens. A packed file without gains (written before they travelled in
/// it) still reads post_attn_norm.safetensors beside it — trained gains, gains of 1 and none give
/// three models — and a broken one is an error that names it.
#[test]
fn a_packed_file_carries_its_trained_post_attention_gains() {
    use bitnet_core::packed::PackedModel;
    use bitnet_core::safetensors::{OwnedTensor, serialize};

    let dir = tmp("postnorm");
    let data = dir.join("data.jsonl");
    std::fs::write(
        &data,
        "{\"instruction\": \"Write a haiku about the sea.\", \"output\": \"Waves fold into foam, the tide keeps its time.\"}\n{\"instruction\": \"Solve: 12 times 7?\", \"output\": \"12 times 7 is 84.\"}\n",
    )
    .unwrap();
    let out = dir.join("run");
    let llama = fixtures().join("llama");
    let (ok, _, err) = bitnet(&[
        "train",
        "--base_model",
        s(&llama),
        "--dataset",
        s(&data),
        "--out_dir",
        s(&out),
        "--steps",
        "6",
        "--bsz",
        "2",
        "--grad_accum",
        "1",
        "--lr",
        "1e-2",
        "--seq-len",
        "32",
        "--rmsnorm_post_attn",
        "1",
        "--json",
    ]);
    assert!(ok, "{err}");
    assert!(!out.join("post_attn_norm.safetensors").exists());
    let packed = out.join("model.bitnet.safetensors");
    let packed_bytes = std::fs::read(&packed).unwrap();
    let gains = PackedModel::parse("packed", &packed_bytes)
        .unwrap()
        .extra_norms()
        .unwrap();
    assert_eq!(gains.len(), 2, "{:?}", gains.keys());
    for (name, g) in &gains {
        assert!(g.iter().any(|&x| x != 1.0), "{name} never moved from 1");
    }
    let eval = |model: &Path| {
        json(&["eval", "--model", s(model), "--dataset", s(&data), "--json"])["held_out"]["mean_loss"]
            .as_f64()
            .unwrap()
    };
    let with_trained = eval(&packed);
    let alone = dir.join("alone");
    std::fs::create_dir_all(&alone).unwrap();
    std::fs::copy(&packed, alone.join("m.safetensors")).unwrap();
    assert_eq!(eval(&alone.join("m.safetensors")), with_trained);
    let greedy = |model: &Path| {
        json(&[
            "generate",
            "--model",
            s(model),
            "--prompt",
            "Hi",
            "--greedy",
            "--max-new-tokens",
            "4",
            "--json",
        ])
    };
    let g = greedy(&packed);
    assert_eq!(g["tokens"].as_array().unwrap().len(), 4);
    // The Hugging Face folder carries the gains and the modeling file that adds the norm; our own
    // tools load it with the norm too: the tokens of the packed file.
    let hf = dir.join("hf");
    let (ok, _, err) = bitnet(&["unpack", s(&packed), "--out", s(&hf)]);
    assert!(ok, "{err}");
    assert!(
        err.contains("post_attn_norm.weight") && err.contains("trust_remote_code"),
        "{err}"
    );
    assert!(hf.join("modeling_bitnet_studio.py").is_file());
    assert_eq!(greedy(&hf)["tokens"], g["tokens"]);
    // Such a folder is no training base (yet): refused, not trained with its gains ignored.
    let data = common::dataset(&dir);
    let again = dir.join("again");
    let (ok, _, err) = bitnet(&common::train_args(s(&data), s(&again), s(&hf), "1"));
    assert!(!ok && err.contains("extra-norm gains"), "{err}");

    // A packed file without gains, as written before: the gains file beside it counts.
    let old = dir.join("old");
    std::fs::create_dir_all(&old).unwrap();
    let old_packed = old.join("m.safetensors");
    assert!(bitnet(&["pack", s(&llama), "--out", s(&old_packed)]).0);
    let sidecar = |values: &dyn Fn(&[f32]) -> Vec<f32>| {
        let tensors: Vec<OwnedTensor> = gains
            .iter()
            .map(|(n, g)| OwnedTensor::f32(n.clone(), vec![g.len()], &values(g)))
            .collect();
        std::fs::write(
            old.join("post_attn_norm.safetensors"),
            serialize(tensors, &Default::default()),
        )
        .unwrap();
        eval(&old_packed)
    };
    let trained = sidecar(&|g| g.to_vec());
    let ones = sidecar(&|g| vec![1.0; g.len()]);
    std::fs::remove_file(old.join("post_attn_norm.safetensors")).unwrap();
    let without = eval(&old_packed);
    assert_ne!(trained, ones);
    assert_ne!(ones, without);
    std::fs::write(
        old.join("post_attn_norm.safetensors"),
        b"not a safetensors file",
    )
    .unwrap();
    let (ok, _, err) = bitnet(&["eval", "--model", s(&old_packed), "--dataset", s(&data)]);
    assert!(!ok && err.contains("post_attn_norm.safetensors"), "{err}");
}

/// A continuation longer than the model's context (the fixture's max_position_embeddings is 256)
/// is refused with a message naming the limit, in `generate` and in `selfgen`.
#[test]
fn generation_past_the_models_context_is_refused() {
    let llama = fixtures().join("llama");
    let (ok, _, err) = bitnet(&[
        "generate",
        "--model",
        s(&llama),
        "--prompt",
        "Hello there",
        "--max-new-tokens",
        "300",
    ]);
    assert!(
        !ok && err.contains("context of 256 tokens") && err.contains("--max-new-tokens"),
        "{err}"
    );
    let dir = tmp("context");
    let out = dir.join("data.jsonl");
    let (ok, _, err) = bitnet(&[
        "selfgen",
        "--model",
        s(&llama),
        "--out",
        s(&out),
        "--num",
        "2",
        "--max-new-tokens",
        "255",
    ]);
    assert!(!ok && err.contains("max_position_embeddings"), "{err}");
}
