//! Helpers shared by the CLI test files: run the `bitnet` binary, parse its JSON, the fixtures and
//! a fresh scratch folder per test.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
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
