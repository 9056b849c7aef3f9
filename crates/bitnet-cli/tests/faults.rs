//! Faults: `pack`, `unpack` and `train` (its checkpoints and its `hf/` export) killed with SIGKILL at
//! many moments, and a full disk. Afterwards no partial file sits under a final name (every output
//! is either the earlier file, intact, or the whole new one), every input is intact, and a killed
//! run resumes to the same result as an uninterrupted one.
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bitnet_core::safetensors::{OwnedTensor, SafeTensors, serialize};
use common::{bitnet, dataset, fixtures, snapshot, tmp, train_args};

/// A Llama model of about 6 M parameters (24 MB of f32), so that packing it takes long enough to
/// be killed in the middle; the llama fixture's tokenizer.
fn larger_model(dir: &Path) {
    let (h, inter, layers, vocab, kv) = (256usize, 1024usize, 4usize, 4096usize, 128usize);
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": h,
        "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": 8,
        "num_key_value_heads": 4, "vocab_size": vocab, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "max_position_embeddings": 256, "tie_word_embeddings": false,
        "hidden_act": "silu", "torch_dtype": "float32"
    });
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(
        fixtures().join("llama/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = |shape: Vec<usize>, name: String| {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
            })
            .collect();
        OwnedTensor::f32(name, shape, &values)
    };
    let mut t = vec![
        random(vec![vocab, h], "model.embed_tokens.weight".into()),
        random(vec![vocab, h], "lm_head.weight".into()),
        OwnedTensor::f32("model.norm.weight", vec![h], &vec![1.0; h]),
    ];
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        for (name, shape) in [
            ("self_attn.q_proj", vec![h, h]),
            ("self_attn.k_proj", vec![kv, h]),
            ("self_attn.v_proj", vec![kv, h]),
            ("self_attn.o_proj", vec![h, h]),
            ("mlp.gate_proj", vec![inter, h]),
            ("mlp.up_proj", vec![inter, h]),
            ("mlp.down_proj", vec![h, inter]),
        ] {
            t.push(random(shape, format!("{p}.{name}.weight")));
        }
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            t.push(OwnedTensor::f32(
                format!("{p}.{norm}.weight"),
                vec![h],
                &vec![1.0; h],
            ));
        }
    }
    std::fs::write(
        dir.join("model.safetensors"),
        serialize(t, &BTreeMap::new()),
    )
    .unwrap();
}

/// Runs `args` to the end and returns how long it took.
fn timed(args: &[&str]) -> Duration {
    let t0 = Instant::now();
    let (ok, _, err) = bitnet(args);
    assert!(ok, "bitnet {args:?}: {err}");
    t0.elapsed()
}

/// Starts `args`, kills it (SIGKILL) after `after`; true when the kill found it still running.
fn kill_after(args: &[&str], after: Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bitnet"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    running
}

/// The moments to kill a command that takes `full`: spread over the run, denser at its end (where
/// the outputs are written).
fn moments(full: Duration) -> Vec<Duration> {
    [0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98]
        .iter()
        .map(|f| full.mul_f64(*f))
        .collect()
}

/// Every file of `dir` is as in `earlier` or as in `finished` (no other content under a final
/// name); files only in neither may be temporary (`.partial`) ones.
fn whole_or_earlier(
    dir: &Path,
    earlier: &BTreeMap<String, Vec<u8>>,
    finished: &BTreeMap<String, Vec<u8>>,
    when: &str,
) {
    for (name, bytes) in snapshot(dir) {
        if name.ends_with(".partial") {
            continue;
        }
        let ok = earlier.get(&name) == Some(&bytes) || finished.get(&name) == Some(&bytes);
        assert!(
            ok,
            "{when}: {name} is neither the earlier file nor the finished one"
        );
    }
}

#[test]
fn pack_and_unpack_killed_at_any_moment_leave_whole_files() {
    let dir = tmp("faults-pack");
    let model = dir.join("model");
    larger_model(&model);
    let inputs = snapshot(&model);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let packed = out.join("m.bitnet.safetensors");
    let (m, p) = (model.to_str().unwrap(), packed.to_str().unwrap());
    let pack = ["pack", m, "--out", p, "--cpu", "--overwrite"];

    // An earlier packed file (of another packing) that every kill must leave whole or replace whole.
    assert!(bitnet(&["pack", m, "--out", p, "--cpu", "--packing", "trit5"]).0);
    let earlier = snapshot(&out);
    let full = timed(&pack);
    let finished = snapshot(&out);
    assert_ne!(earlier, finished);
    let mut interrupted = 0;
    for at in moments(full) {
        std::fs::write(&packed, &earlier["m.bitnet.safetensors"]).unwrap();
        interrupted += kill_after(&pack, at) as usize;
        whole_or_earlier(
            &out,
            &earlier,
            &finished,
            &format!("pack killed after {at:?}"),
        );
        assert_eq!(
            snapshot(&model),
            inputs,
            "pack killed after {at:?} changed its input"
        );
    }
    assert!(
        interrupted >= 3,
        "only {interrupted} kills found pack running"
    );

    // unpack over an earlier unpacked folder.
    let folder = dir.join("unpacked");
    let unpack = [
        "unpack",
        p,
        "--out",
        folder.to_str().unwrap(),
        "--overwrite",
    ];
    std::fs::create_dir_all(&folder).unwrap();
    for f in ["model.safetensors", "config.json", "tokenizer.json"] {
        std::fs::write(folder.join(f), format!("the earlier {f}")).unwrap();
    }
    let earlier = snapshot(&folder);
    let packed_bytes = std::fs::read(&packed).unwrap();
    let full = timed(&unpack);
    let finished = snapshot(&folder);
    let mut interrupted = 0;
    for at in moments(full) {
        for (f, bytes) in &earlier {
            std::fs::write(folder.join(f), bytes).unwrap();
        }
        interrupted += kill_after(&unpack, at) as usize;
        whole_or_earlier(
            &folder,
            &earlier,
            &finished,
            &format!("unpack killed after {at:?}"),
        );
        assert_eq!(std::fs::read(&packed).unwrap(), packed_bytes);
    }
    assert!(
        interrupted >= 3,
        "only {interrupted} kills found unpack running"
    );
}

/// A training run killed at moments through its last steps, its checkpoints, its packing and its
/// `hf/` export: every file under a final name is whole, and `--resume` ends with exactly the
/// outputs of an uninterrupted run.
#[test]
fn train_killed_while_exporting_resumes_to_the_same_outputs() {
    let dir = tmp("faults-train");
    let data = dataset(&dir);
    let model = fixtures().join("llama");
    let reference = dir.join("reference");
    let mut args = train_args(
        data.to_str().unwrap(),
        reference.to_str().unwrap(),
        model.to_str().unwrap(),
        "4",
    );
    args.extend(["--save-steps", "2"]);
    let full = timed(&args);
    let finished = snapshot(&reference);
    assert!(
        finished.contains_key("hf/model.safetensors"),
        "{:?}",
        finished.keys()
    );
    let run = dir.join("run");
    let out_at = args
        .iter()
        .position(|a| *a == reference.to_str().unwrap())
        .unwrap();
    let mut interrupted = 0;
    for (i, at) in moments(full).into_iter().enumerate() {
        let _ = std::fs::remove_dir_all(&run);
        let mut killed = args.clone();
        killed[out_at] = run.to_str().unwrap();
        interrupted += kill_after(&killed, at) as usize;
        let when = format!("train killed after {at:?}");
        // Whole files only: each is the uninterrupted run's (metrics.jsonl, which holds timings,
        // grows by whole JSON lines).
        for (name, bytes) in snapshot(&run) {
            if name.ends_with(".partial") {
                continue;
            }
            if name == "metrics.jsonl" {
                let text = String::from_utf8(bytes).unwrap();
                assert!(text.is_empty() || text.ends_with('\n'), "{when}: {text}");
                for line in text.lines() {
                    serde_json::from_str::<serde_json::Value>(line)
                        .unwrap_or_else(|e| panic!("{when}: metrics line {line}: {e}"));
                }
            } else if name == "training_manifest.json" {
                // It names its own folder: whole JSON is what can be checked.
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .unwrap_or_else(|e| panic!("{when}: the manifest: {e}"));
            } else {
                assert!(
                    finished.get(&name) == Some(&bytes),
                    "{when}: {name} differs from the finished run's"
                );
            }
        }
        // Every other moment: resume (unless the kill came after the manifest, the last file a
        // run writes) and end where the uninterrupted run did.
        if i % 2 == 1 {
            if !run.join("training_manifest.json").exists() {
                let mut resume = killed.clone();
                resume.push("--resume");
                let (ok, _, err) = bitnet(&resume);
                assert!(ok, "{when}: the resume failed: {err}");
            }
            let mut got = snapshot(&run);
            got.retain(|k, _| !k.ends_with(".partial"));
            for file in [
                "model.bitnet.safetensors",
                "hf/model.safetensors",
                "hf/config.json",
            ] {
                assert!(
                    got.get(file) == finished.get(file),
                    "{when}: the resumed run's {file} differs from the uninterrupted run's"
                );
            }
        }
    }
    assert!(
        interrupted >= 4,
        "only {interrupted} kills found train running"
    );
}

/// A tmpfs of `size` at `dir`, unmounted when dropped; None (with the reason printed) where this
/// machine does not let the test mount one.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs(dir.to_path_buf())),
            Ok(o) => {
                println!(
                    "SKIPPED the full-disk test: mounting a tmpfs failed here ({}); it needs root or CAP_SYS_ADMIN",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                println!("SKIPPED the full-disk test: cannot run mount ({e})");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A disk that fills up: pack, unpack and a training checkpoint fail with a message naming the
/// file and the cause; no partial file is left under a final name, earlier files stay intact.
#[test]
fn a_full_disk_fails_cleanly() {
    let dir = tmp("faults-disk");
    let Some(_disk) = Tmpfs::mount(&dir.join("disk"), "600k") else {
        return;
    };
    let disk = dir.join("disk");
    let llama = fixtures().join("llama");
    std::fs::write(disk.join("earlier.txt"), "kept").unwrap();
    // Fill the disk but 100 KiB: the packed file (about 180 KiB) cannot fit.
    std::fs::write(disk.join("filler"), vec![0u8; 500 * 1024]).unwrap();
    let before = snapshot(&disk);
    let out = disk.join("p.safetensors");
    let (ok, _, err) = bitnet(&[
        "pack",
        llama.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok, "pack onto a full disk must fail");
    assert!(
        err.contains("p.safetensors") && err.contains("No space left"),
        "{err}"
    );
    assert_eq!(
        snapshot(&disk),
        before,
        "a failed pack left files behind or changed them"
    );

    // unpack over an earlier folder on the full disk: the earlier files stay.
    std::fs::remove_file(disk.join("filler")).unwrap();
    let packed = dir.join("p.safetensors");
    assert!(
        bitnet(&[
            "pack",
            llama.to_str().unwrap(),
            "--out",
            packed.to_str().unwrap()
        ])
        .0
    );
    let folder = disk.join("unpacked");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("model.safetensors"), "the earlier weights").unwrap();
    std::fs::write(disk.join("filler"), vec![0u8; 300 * 1024]).unwrap();
    let before = snapshot(&disk);
    let (ok, _, err) = bitnet(&[
        "unpack",
        packed.to_str().unwrap(),
        "--out",
        folder.to_str().unwrap(),
        "--overwrite",
    ]);
    assert!(!ok, "unpack onto a full disk must fail");
    assert!(err.contains("No space left"), "{err}");
    for (name, bytes) in snapshot(&disk) {
        if let Some(old) = before.get(&name) {
            // A file the failed unpack did not reach may have been replaced whole; the weights
            // (which could not fit) are the earlier ones.
            if name.ends_with("model.safetensors") {
                assert_eq!(&bytes, old, "the earlier weights changed");
            }
        } else {
            assert!(
                name.ends_with("config.json") || name.ends_with("tokenizer.json"),
                "a failed unpack left {name}"
            );
        }
    }

    // A training run whose second checkpoint does not fit: it stops naming the file, and the
    // first checkpoint is whole (the same bytes as an uninterrupted run's).
    std::fs::remove_file(disk.join("filler")).unwrap();
    std::fs::remove_dir_all(&folder).unwrap();
    let data = dataset(&dir);
    let reference = dir.join("reference");
    let mut args = train_args(
        data.to_str().unwrap(),
        reference.to_str().unwrap(),
        llama.to_str().unwrap(),
        "2",
    );
    args.extend(["--save-steps", "1"]);
    assert!(bitnet(&args).0);
    let first = std::fs::read(reference.join("checkpoint-1.safetensors")).unwrap();
    // A second disk with room for one checkpoint and a half.
    let Some(_small) = Tmpfs::mount(
        &dir.join("small"),
        &format!("{}k", first.len() * 3 / 2 / 1024),
    ) else {
        return;
    };
    let run = dir.join("small/run");
    let at = args
        .iter()
        .position(|a| *a == reference.to_str().unwrap())
        .unwrap();
    args[at] = run.to_str().unwrap();
    let (ok, _, err) = bitnet(&args);
    assert!(!ok, "a run whose checkpoint cannot be written must fail");
    assert!(err.contains("No space left"), "{err}");
    let kept = std::fs::read(run.join("checkpoint-1.safetensors"));
    assert_eq!(kept.ok().as_ref(), Some(&first), "{err}");
    SafeTensors::parse("checkpoint-1", &first).unwrap();
}
