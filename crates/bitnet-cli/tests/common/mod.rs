//! Helpers shared by the CLI test files: run the `bitnet` binary, parse its JSON, the fixtures and
//! a fresh scratch folder per test.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The built-in demo model's folder.
pub fn demo_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../bitnet-pipeline/assets/demo")
}

/// Runs `bitnet ARGS`, returning (success, stdout, stderr).
pub fn bitnet(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bitnet"))
        .args(args)
        .output()
        .expect("run bitnet");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `bitnet ARGS`, which must succeed and print JSON.
pub fn json(args: &[&str]) -> Value {
    let (ok, out, err) = bitnet(args);
    assert!(ok, "bitnet {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("bitnet {args:?}: not JSON ({e}): {out}"))
}

/// An empty scratch folder for one test.
pub fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("bitnet-cli-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small JSONL in the seed's schema.
pub fn dataset(dir: &Path) -> PathBuf {
    let path = dir.join("data.jsonl");
    let rows = [
        (
            "Write a haiku about the sea.",
            "Waves fold into foam, the tide keeps its time.",
            "writing",
        ),
        (
            "Solve this math problem: what is 12 times 7?",
            "12 times 7 is 84.",
            "math",
        ),
        (
            "Write a Python function to reverse a string.",
            "def reverse(s): return s[::-1]",
            "coding",
        ),
        (
            "Answer this question with step-by-step reasoning: why is the sky blue?",
            "Blue light scatters most.",
            "reasoning",
        ),
        (
            "Write a haiku about the moon.",
            "Pale light on the sea.",
            "writing",
        ),
        (
            "Solve this math problem: what is 9 plus 4?",
            "9 plus 4 is 13.",
            "math",
        ),
    ];
    let text: String = rows
        .iter()
        .map(|(i, o, d)| {
            serde_json::json!({"instruction": i, "input": "", "output": o, "domain": d}).to_string()
                + "\n"
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    path
}

pub fn train_args<'a>(data: &'a str, out: &'a str, model: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--base_model",
        model,
        "--dataset",
        data,
        "--out_dir",
        out,
        "--steps",
        steps,
        "--bsz",
        "2",
        "--grad_accum",
        "1",
        "--lr",
        "3e-3",
        "--seq-len",
        "32",
        "--rmsnorm_post_attn",
        "0",
    ]
}

/// Every file under `dir` (relative path → contents); an absent folder is empty.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut std::collections::BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// Flips the lowest bit of the byte `from_end` bytes before the end of `path`.
pub fn flip_bit(path: &Path, from_end: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() - from_end;
    bytes[at] ^= 1;
    std::fs::write(path, bytes).unwrap();
}

/// A copy of the folder `from` (and its subfolders) at `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
