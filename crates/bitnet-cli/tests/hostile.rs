//! The hostile-input corpus (tests/hostile/cases.rs) against the `bitnet` binary: every case exits
//! with an error (not a panic), names its culprit, and leaves every file of its folder as it was.
//! The corpus is written to tests/hostile/corpus/{case} (ignored by git), so a failing case can be
//! rerun by hand.

#[path = "../../../tests/hostile/cases.rs"]
mod cases;
mod common;

use std::process::Command;

use cases::{CASES, corpus};
use common::{fixtures, snapshot};

/// What is wrong with one case's run, if anything.
fn check(case: &cases::Case) -> Option<String> {
    let dir = corpus().join(case.name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    (case.setup)(&dir);
    let before = snapshot(&dir);
    let (d, fx) = (dir.display().to_string(), fixtures().display().to_string());
    let args: Vec<String> = case
        .args
        .iter()
        .map(|a| a.replace("{d}", &d).replace("{fixtures}", &fx))
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_bitnet"))
        .args(&args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let mut wrong = Vec::new();
    match out.status.code() {
        Some(1 | 2) => {}
        Some(0) => wrong.push("it succeeded".to_string()),
        other => wrong.push(format!("exit status {other:?} (a panic or a signal)")),
    }
    if err.contains("panicked") {
        wrong.push("it panicked".into());
    }
    let missing: Vec<&str> = case
        .says
        .iter()
        .copied()
        .filter(|s| !err.contains(s))
        .collect();
    if !missing.is_empty() {
        wrong.push(format!("the message lacks {missing:?}"));
    }
    let after = snapshot(&dir);
    let changed: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    if !changed.is_empty() {
        wrong.push(format!(
            "files changed, appeared or disappeared: {changed:?}"
        ));
    }
    (!wrong.is_empty()).then(|| {
        format!(
            "{}: {}\n    bitnet {}\n    stderr: {}",
            case.name,
            wrong.join("; "),
            case.args.join(" "),
            err.trim()
        )
    })
}

#[test]
fn every_hostile_input_is_refused_by_name_and_changes_nothing() {
    let failures: Vec<String> = CASES.iter().filter_map(check).collect();
    assert!(
        failures.is_empty(),
        "{} of {} hostile cases failed:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
    println!(
        "{} hostile cases refused by name, nothing changed",
        CASES.len()
    );
}
