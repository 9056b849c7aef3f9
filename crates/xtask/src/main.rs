//! `cargo xtask setup|test|serve|bench` — the only build glue of bitnet-studio (std only, no
//! dependencies).
//!
//! - setup: installs what the build and the tests need, pinned (DESIGN.md §5), skipping what is there.
//! - test: setup, fmt, clippy, native tests (GPU tests on lavapipe), the release wasm build through
//!   trunk, the browser tests in headless Chromium on WebGPU, and the app's end-to-end test.
//! - serve: builds the web app and serves it on 127.0.0.1:8080.
//! - bench: the release `bitnet bench kernels` on this machine's adapter; the JSON report is also
//!   written to target/bench/kernels.json.

mod serve;
mod setup;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

pub const TRUNK_VERSION: &str = "0.21.14";
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = repo_root();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::setup(&root, setup::Scope::All),
        Some("test") => test(&root),
        Some("serve") => serve_app(&root, &args[1..]),
        Some("bench") => bench(&root, &args[1..]),
        Some("demo") => demo(&root, &args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n  setup   install the pinned tools and packages the build and tests need\n  test    run every check and test (what CI runs)\n  serve   build the web app and serve it on http://127.0.0.1:8080 (--port N)\n  bench   time every kernel on this machine's adapter (release build; --size N --reps N)\n  demo    the whole pipeline on the built-in tiny model (release build; `bitnet demo`)"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

pub type XResult = Result<(), String>;

/// `bitnet bench kernels` from a release build: the table on the terminal, the JSON report in
/// target/bench/kernels.json. Extra arguments (--size, --reps) pass through.
/// `bitnet demo` from a release build, afresh, its outputs in target/demo.
fn demo(root: &Path, args: &[String]) -> XResult {
    let dir = root.join("target/demo");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    run(cargo()
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "bitnet-cli",
            "--",
            "demo",
        ])
        .arg("--out-dir")
        .arg(&dir)
        .args(args)
        .current_dir(root))
}

fn bench(root: &Path, args: &[String]) -> XResult {
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let file = dir.join("kernels.json");
    run(cargo()
        .args([
            "run",
            "--quiet",
            "--release",
            "-p",
            "bitnet-cli",
            "--",
            "bench",
            "kernels",
        ])
        .args(args)
        .arg("--out")
        .arg(&file)
        .current_dir(root))?;
    eprintln!("xtask: JSON report written to {}", file.display());
    Ok(())
}

fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or(manifest)
}

/// Runs a command, echoing it, and fails with its exit status.
pub fn run(cmd: &mut Command) -> XResult {
    eprintln!("xtask: $ {}", describe(cmd));
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start `{}`: {e}", describe(cmd)))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed ({status})", describe(cmd)))
    }
}

pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// PATH with the project-local npm binaries (wasm-opt) and cargo's bin folder first.
pub fn tool_path(root: &Path) -> String {
    let mut parts = vec![root.join("node_modules/.bin").display().to_string()];
    if let Some(home) = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
    {
        parts.push(home.join("bin").display().to_string());
    }
    parts.push(std::env::var("PATH").unwrap_or_default());
    parts.join(":")
}

fn step(name: &str) {
    eprintln!("\n=== {name} ===");
}

/// Builds the web app in release mode into dist/.
pub fn build_web(root: &Path) -> XResult {
    run(Command::new("trunk")
        .args(["build", "--release", "--offline"])
        .current_dir(root)
        .env("PATH", tool_path(root)))
}

fn test(root: &Path) -> XResult {
    setup::setup(root, setup::Scope::All)?;
    let path = tool_path(root);

    step("format");
    run(cargo()
        .args(["fmt", "--all", "--", "--check"])
        .current_dir(root))?;

    step("clippy (native)");
    clippy(root, &["--workspace", "--exclude", "bitnet-web"])?;
    step("clippy (wasm32)");
    clippy(
        root,
        &[
            "--target",
            WASM_TARGET,
            "-p",
            "bitnet-core",
            "-p",
            "bitnet-gpu",
            "-p",
            "bitnet-pipeline",
            "-p",
            "bitnet-web",
        ],
    )?;

    step("the pipeline library stays free of the shells' APIs");
    pipeline_is_shell_free(root)?;

    step("native tests (GPU tests on the system's Vulkan adapter)");
    run(cargo()
        .args(["test", "--workspace", "--exclude", "bitnet-web"])
        .current_dir(root))?;

    step("release wasm build (trunk)");
    build_web(root)?;

    step("browser tests (wasm-bindgen-test in headless Chromium, WebGPU)");
    run(cargo()
        .args([
            "test",
            "--target",
            WASM_TARGET,
            "-p",
            "bitnet-gpu",
            "--test",
            "kernels_web",
            "-p",
            "bitnet-pipeline",
            "--test",
            "flow_web",
            "-p",
            "bitnet-web",
            "--test",
            "opfs_store",
        ])
        .current_dir(root.join("crates/bitnet-gpu"))
        .env("PATH", &path)
        .env("CHROMEDRIVER", setup::CHROMEDRIVER)
        .env("WASM_BINDGEN_TEST_TIMEOUT", "300"))?;

    step("app end-to-end test (Playwright in headless Chromium, checked against the native CLI)");
    // The native `bitnet` the flow test compares the page with (built by the native tests).
    run(cargo()
        .args(["build", "-p", "bitnet-cli"])
        .current_dir(root))?;
    let server = serve::Server::start(&root.join("dist"), 0)?;
    let result = run(Command::new("node")
        .args(["--test", "tests/e2e/"])
        .current_dir(root)
        .env("APP_URL", format!("http://127.0.0.1:{}/", server.port))
        .env("CHROMIUM", setup::CHROMIUM)
        .env("BITNET_BIN", root.join("target/debug/bitnet")));
    drop(server);
    result?;

    eprintln!("\nxtask: all checks passed");
    Ok(())
}

/// What the pipeline crate must not use (DESIGN.md §1): the filesystem, blocking on futures, the
/// OS clock, printing. They do not exist in the browser, and the shells own them.
const SHELL_ONLY: [&str; 5] = [
    "std::fs",
    "pollster",
    "std::time::Instant",
    "println!",
    "std::thread",
];

/// Fails naming the file and line of any [`SHELL_ONLY`] use in crates/bitnet-pipeline/src.
fn pipeline_is_shell_free(root: &Path) -> XResult {
    let mut bad = Vec::new();
    let mut dirs = vec![root.join("crates/bitnet-pipeline/src")];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            for (i, line) in text.lines().enumerate() {
                if let Some(what) = SHELL_ONLY.iter().find(|w| line.contains(*w)) {
                    bad.push(format!("{}:{}: {what}", path.display(), i + 1));
                }
            }
        }
    }
    if bad.is_empty() {
        eprintln!("xtask: ok  no {} in bitnet-pipeline", SHELL_ONLY.join(", "));
        Ok(())
    } else {
        Err(format!(
            "bitnet-pipeline uses what only the shells may:\n{}",
            bad.join("\n")
        ))
    }
}

/// Clippy over `scope`, every target, warnings denied.
fn clippy(root: &Path, scope: &[&str]) -> XResult {
    run(cargo()
        .arg("clippy")
        .args(scope)
        .args(["--all-targets", "--", "-D", "warnings"])
        .current_dir(root))
}

fn serve_app(root: &Path, args: &[String]) -> XResult {
    let port = match args {
        [] => 8080,
        [flag, p] if flag == "--port" => p
            .parse()
            .map_err(|_| format!("--port: `{p}` is not a port number"))?,
        _ => return Err("usage: cargo xtask serve [--port N]".into()),
    };
    setup::setup(root, setup::Scope::WebBuild)?;
    build_web(root)?;
    let server = serve::Server::start(&root.join("dist"), port)?;
    eprintln!(
        "xtask: serving {} on http://127.0.0.1:{} (Ctrl-C to stop)",
        root.join("dist").display(),
        server.port
    );
    server.wait();
    Ok(())
}
