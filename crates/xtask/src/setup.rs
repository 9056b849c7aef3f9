//! `cargo xtask setup`: installs, pinned and only when missing, everything the build and tests use
//! (DESIGN.md §5). Idempotent: a second run says what it found and installs nothing.

use std::path::Path;
use std::process::Command;

use crate::{TRUNK_VERSION, WASM_TARGET, XResult, cargo, run, tool_path};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Debian packages: lavapipe (software Vulkan) for native GPU tests, Chromium and its driver for the
/// browser tests, Node.js for wasm-opt and Playwright.
const APT_PACKAGES: [&str; 4] = [
    "mesa-vulkan-drivers",
    "libvulkan1",
    "chromium",
    "chromium-driver",
];
const WASM_OPT_VERSION: &str = "version 132";

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Everything `cargo xtask test` needs.
    All,
    /// What building the web app needs (for `serve`).
    WebBuild,
}

pub fn setup(root: &Path, scope: Scope) -> XResult {
    eprintln!("xtask: setup — checking tools");
    let mut apt: Vec<&str> = Vec::new();
    if scope == Scope::All {
        apt.extend(APT_PACKAGES.iter().copied().filter(|p| !dpkg_installed(p)));
    }
    if output(Command::new("npm").arg("--version")).is_none() {
        apt.extend(["nodejs", "npm"]);
    }
    apt_install(&apt)?;

    let installed =
        output(Command::new("rustup").args(["target", "list", "--installed"])).unwrap_or_default();
    if installed.lines().any(|l| l.trim() == WASM_TARGET) {
        eprintln!("xtask: ok  rust target {WASM_TARGET}");
    } else {
        eprintln!("xtask: installing rust target {WASM_TARGET}");
        run(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
    }

    let path = tool_path(root);
    let trunk =
        output(Command::new("trunk").arg("--version").env("PATH", &path)).unwrap_or_default();
    if trunk.contains(TRUNK_VERSION) {
        eprintln!("xtask: ok  trunk {TRUNK_VERSION}");
    } else {
        eprintln!(
            "xtask: installing trunk {TRUNK_VERSION} (found: {})",
            trunk.trim()
        );
        run(cargo().args(["install", "trunk", "--version", TRUNK_VERSION, "--locked"]))?;
    }

    let wb = wasm_bindgen_version(root)?;
    let have = output(
        Command::new("wasm-bindgen")
            .arg("--version")
            .env("PATH", &path),
    )
    .unwrap_or_default();
    if have.split_whitespace().any(|w| w == wb) {
        eprintln!("xtask: ok  wasm-bindgen-cli {wb}");
    } else {
        // Without --locked: its own lockfile can pin crates that need a newer rustc.
        eprintln!(
            "xtask: installing wasm-bindgen-cli {wb} (Cargo.lock's wasm-bindgen; found: {})",
            have.trim()
        );
        run(cargo().args(["install", "wasm-bindgen-cli", "--version", &wb]))?;
    }

    let wasm_opt = output(Command::new(root.join("node_modules/.bin/wasm-opt")).arg("--version"))
        .unwrap_or_default();
    let playwright = root
        .join("node_modules/playwright-core/package.json")
        .is_file();
    if wasm_opt.contains(WASM_OPT_VERSION) && playwright {
        eprintln!("xtask: ok  npm packages (binaryen {WASM_OPT_VERSION}, playwright-core)");
    } else {
        eprintln!(
            "xtask: installing npm packages from package-lock.json (binaryen, playwright-core) into node_modules/"
        );
        run(Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(root))?;
    }
    Ok(())
}

/// The wasm-bindgen version that Cargo.lock pins; wasm-bindgen-cli must match it exactly.
fn wasm_bindgen_version(root: &Path) -> Result<String, String> {
    let lock =
        std::fs::read_to_string(root.join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l.trim() == "name = \"wasm-bindgen\""
            && let Some(v) = lines
                .next()
                .and_then(|v| v.trim().strip_prefix("version = \""))
        {
            return Ok(v.trim_end_matches('"').to_string());
        }
    }
    Err("Cargo.lock has no wasm-bindgen package".into())
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn dpkg_installed(pkg: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_some_and(|s| s.contains("install ok installed"))
}

fn apt_install(pkgs: &[&str]) -> XResult {
    if pkgs.is_empty() {
        eprintln!("xtask: ok  apt packages");
        return Ok(());
    }
    eprintln!("xtask: installing apt packages: {}", pkgs.join(" "));
    let root_user = output(Command::new("id").arg("-u")).is_some_and(|s| s.trim() == "0");
    let apt = |args: &[&str]| {
        let mut c = if root_user {
            Command::new("apt-get")
        } else {
            Command::new("sudo")
        };
        if !root_user {
            c.arg("apt-get");
        }
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run(&mut apt(&["update"]))?;
    let mut install = apt(&["install", "-y"]);
    install.args(pkgs);
    run(&mut install)
}
