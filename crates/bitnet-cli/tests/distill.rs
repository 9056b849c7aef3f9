//! Top-K distillation through the CLI on the demo model: `selfgen --soft-labels K` writes a sidecar
//! of 8·K bytes a position, and `train --kd-topk K` from it logs the losses of the same run with the
//! live base model restricted to its top K; a sidecar that does not fit is refused by name.

mod common;

use std::path::Path;

use common::{bitnet, demo_folder, json, tmp};

/// The losses `metrics.jsonl` of `run` logged.
fn losses(run: &Path) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect()
}

#[test]
fn soft_labels_cost_8k_bytes_a_position_and_train_like_the_live_teacher() {
    let dir = tmp("distill");
    let demo = demo_folder();
    let data = dir.join("data.jsonl");
    let templates = demo.join("templates.json");
    let report = json(&[
        "selfgen",
        "--model",
        demo.to_str().unwrap(),
        "--out",
        data.to_str().unwrap(),
        "--num",
        "12",
        "--max-new-tokens",
        "32",
        "--batch",
        "12",
        "--templates",
        templates.to_str().unwrap(),
        "--soft-labels",
        "8",
        "--json",
    ]);
    let soft = &report["soft_labels"];
    let (k, positions, examples) = (
        soft["k"].as_u64().unwrap(),
        soft["positions"].as_u64().unwrap(),
        soft["examples"].as_u64().unwrap(),
    );
    assert_eq!((k, examples), (8, 12), "{report}");
    let sidecar = dir.join("data.soft");
    let bytes = std::fs::metadata(&sidecar).unwrap().len();
    assert_eq!(bytes, soft["bytes"].as_u64().unwrap());
    // 16 bytes of header and 12 per example; every position 8·K.
    assert_eq!(bytes - 16 - 12 * examples, 8 * k * positions, "{report}");
    assert!(positions > 12 * 10, "{report}");

    let train = |out: &str, extra: &[&str]| {
        let out = dir.join(out);
        let mut args = vec![
            "train",
            "--base-model",
            demo.to_str().unwrap(),
            "--dataset",
            data.to_str().unwrap(),
            "--out-dir",
            out.to_str().unwrap(),
            "--steps",
            "4",
            "--bsz",
            "4",
            "--lr",
            "1e-3",
            "--seq-len",
            "64",
            "--kd-temperature",
            "2",
            "--log-every",
            "1",
        ];
        args.extend(extra);
        let (ok, _, err) = bitnet(&args);
        (ok, err, out)
    };
    let (ok, err, from_sidecar) = train("soft", &["--loss", "ce+kd", "--kd-topk", "8"]);
    assert!(ok && err.contains("data.soft"), "{err}");
    // The same top K, from the base model as it trains (no sidecar beside the data).
    std::fs::rename(&sidecar, dir.join("kept.soft")).unwrap();
    let (ok, err, live) = train("live", &["--loss", "ce+kd", "--kd-topk", "8"]);
    assert!(ok && !err.contains("data.soft"), "{err}");
    let (a, b) = (losses(&from_sidecar), losses(&live));
    assert_eq!(a.len(), 4);
    for (step, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            ((x - y) / y).abs() < 1e-4,
            "step {step}: sidecar {x} vs live {y}"
        );
    }
    // A smaller K reads the first K of each position; a larger one is refused by name.
    std::fs::rename(dir.join("kept.soft"), &sidecar).unwrap();
    let (ok, err, _) = train("k4", &["--loss", "ce+kd", "--kd-topk", "4"]);
    assert!(ok, "{err}");
    let (ok, err, _) = train("k9", &["--loss", "ce+kd", "--kd-topk", "9"]);
    assert!(
        !ok && err.contains("data.soft") && err.contains("--kd-topk 9"),
        "{err}"
    );
    // A sidecar cut short is refused by name, before any training.
    let whole = std::fs::read(&sidecar).unwrap();
    std::fs::write(&sidecar, &whole[..whole.len() - 5]).unwrap();
    let (ok, err, out) = train("cut", &["--loss", "ce+kd", "--kd-topk", "8"]);
    assert!(
        !ok && err.contains("data.soft") && err.contains("cut short"),
        "{err}"
    );
    assert!(!out.join("metrics.jsonl").exists() || losses(&out).is_empty());
    // --soft-labels 0 and a --kd-topk that is not a number or `all` are refused.
    let (ok, _, err) = bitnet(&[
        "selfgen",
        "--model",
        demo.to_str().unwrap(),
        "--out",
        dir.join("other.jsonl").to_str().unwrap(),
        "--num",
        "1",
        "--soft-labels",
        "0",
    ]);
    assert!(!ok && err.contains("--soft-labels 0"), "{err}");
    let (ok, err, _) = train("bad-k", &["--loss", "kd", "--kd-topk", "most"]);
    assert!(
        !ok && err.contains("--kd-topk") && err.contains("`all`"),
        "{err}"
    );
}
