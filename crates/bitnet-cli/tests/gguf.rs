//! GGUF and transformers exports, and GGUF import: an F32 GGUF export of every fixture imports as
//! the same weights, logits and greedy tokens as the folder; files quantized by llama.cpp's gguf-py
//! (Q8_0, Q4_1; tools/make_gguf_fixtures.py) generate what their dequantized folders generate; a
//! packed model's TQ2_0/TQ1_0 export reads back as its codes and scales; hf-bitnet packs them as
//! transformers does.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use bitnet_core::gguf::import::to_hf_files;
use bitnet_core::gguf::{GgmlType, Gguf, gguf_name, permute_rows};
use bitnet_core::packed::PackedModel;
use bitnet_core::safetensors::{Dtype, SafeTensors, rounded_to};
use common::{bitnet, fixtures, json, tmp};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every tensor of a safetensors file, as f32.
fn tensors(bytes: &[u8]) -> BTreeMap<String, Vec<f32>> {
    let st = SafeTensors::parse("model.safetensors", bytes).unwrap();
    st.header
        .tensors
        .iter()
        .map(|t| (t.name.clone(), st.to_f32(t).unwrap()))
        .collect()
}

fn greedy(model: &Path) -> serde_json::Value {
    json(&[
        "generate",
        "--model",
        s(model),
        "--prompt",
        "The capital of France is",
        "--max-new-tokens",
        "8",
        "--json",
    ])["tokens"]
        .clone()
}

/// Logits of one batch (`bitnet grads` at λ = 0).
fn logits(model: &Path, dir: &Path, tag: &str) -> Vec<f32> {
    let tokens = dir.join("tokens.json");
    std::fs::write(&tokens, "[[5, 17, 42, 9, 3, 77]]").unwrap();
    let out = dir.join(format!("{tag}.grads.safetensors"));
    let (ok, _, err) = bitnet(&[
        "grads",
        s(model),
        "--tokens",
        s(&tokens),
        "--out",
        s(&out),
        "--overwrite",
    ]);
    assert!(ok, "{err}");
    tensors(&std::fs::read(out).unwrap())
        .remove("logits")
        .unwrap()
}

#[test]
fn f32_gguf_export_imports_as_the_same_model() {
    let dir = tmp("gguf-f32");
    for fixture in ["llama", "qwen2", "mistral"] {
        let src = fixtures().join(fixture);
        let out = dir.join(format!("{fixture}.gguf"));
        let v = json(&[
            "export",
            s(&src),
            "--format",
            "gguf-f32",
            "--out",
            s(&out),
            "--json",
        ]);
        let arch = if fixture == "qwen2" { "qwen2" } else { "llama" };
        assert_eq!(v["architecture"], arch, "{fixture}");
        let files = to_hf_files("x.gguf", &std::fs::read(&out).unwrap()).unwrap();
        let back = tensors(&files["model.safetensors"]);
        let orig = tensors(&std::fs::read(src.join("model.safetensors")).unwrap());
        assert_eq!(back, orig, "{fixture}: weights");
        assert_eq!(greedy(&out), greedy(&src), "{fixture}: greedy tokens");
        assert_eq!(
            logits(&out, &dir, "gguf"),
            logits(&src, &dir, "folder"),
            "{fixture}: logits"
        );
    }
}

#[test]
fn gguf_py_quantized_files_generate_like_their_dequantized_folders() {
    for q in ["q8_0", "q4_1"] {
        let file = fixtures().join(format!("gguf/llama-{q}.gguf"));
        let folder = fixtures().join(format!("gguf/llama-{q}"));
        let files = to_hf_files("x.gguf", &std::fs::read(&file).unwrap()).unwrap();
        let back = tensors(&files["model.safetensors"]);
        let want = tensors(&std::fs::read(folder.join("model.safetensors")).unwrap());
        assert_eq!(
            back.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        for (n, v) in &want {
            let close = back[n]
                .iter()
                .zip(v)
                .all(|(a, b)| (a - b).abs() <= 1e-6 * b.abs().max(1.0));
            assert!(close, "{q}: {n}");
        }
        let tokens = greedy(&file);
        assert_eq!(tokens, greedy(&folder), "{q}");
        assert_eq!(tokens.as_array().unwrap().len(), 8);
        // The rebuilt tokenizer (tokenizer.ggml.*, no tokenizer.json) encodes as the original.
        let (ok, out, err) = bitnet(&["inspect", s(&file)]);
        assert!(ok && out.contains("297"), "{out}{err}");
    }
}

#[test]
fn packed_exports_keep_codes_and_scales() {
    let dir = tmp("gguf-tq");
    let packed = dir.join("model.bitnet.safetensors");
    let (ok, _, err) = bitnet(&["pack", s(&fixtures().join("llama")), "--out", s(&packed)]);
    assert!(ok, "{err}");
    let bytes = std::fs::read(&packed).unwrap();
    let p = PackedModel::parse("packed", &bytes).unwrap();
    for (format, ty) in [
        ("gguf-tq2_0", GgmlType::TQ2_0),
        ("gguf-tq1_0", GgmlType::TQ1_0),
    ] {
        let out = dir.join(format!("{format}.gguf"));
        let v = json(&[
            "export",
            s(&packed),
            "--format",
            format,
            "--out",
            s(&out),
            "--json",
        ]);
        // Rows of 64 and 128 values: every projection falls back to F16, as llama.cpp's converter.
        assert_eq!(
            v["f16_fallback"].as_array().unwrap().len(),
            p.shapes.len(),
            "{v}"
        );
        let b = std::fs::read(&out).unwrap();
        let g = Gguf::parse("out.gguf", &b).unwrap();
        assert_eq!(
            g.get("general.file_type").and_then(|v| v.as_u64()),
            Some(if ty == GgmlType::TQ1_0 { 36 } else { 37 })
        );
        for (name, shape) in &p.shapes {
            let t = p.ternary(name).unwrap();
            let d = rounded_to(&[t.scale], Dtype::F16)[0];
            let info = g.tensor(&gguf_name(name).unwrap()).unwrap();
            let mut codes: Vec<f32> = g.to_f32(info).unwrap().iter().map(|v| v / d).collect();
            let heads = [("q_proj", 4), ("k_proj", 2)]
                .into_iter()
                .find(|(k, _)| name.contains(k));
            if let Some((_, h)) = heads {
                codes = permute_rows(&codes, shape[0], h, true).unwrap();
            }
            let want: Vec<f32> = t.codes.iter().map(|&q| f32::from(q)).collect();
            assert_eq!(codes, want, "{name}");
        }
        // The export generates what the packed file generates.
        assert_eq!(greedy(&out), greedy(&packed), "{format}");
    }

    let hf = dir.join("hf-bitnet");
    let v = json(&[
        "export",
        s(&packed),
        "--format",
        "hf-bitnet",
        "--out",
        s(&hf),
        "--json",
    ]);
    assert!(v["notes"][0].as_str().unwrap().contains("8 bits"), "{v}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["quantization_config"]["quant_method"], "bitnet");
    assert_eq!(config["quantization_config"]["linear_class"], "bitlinear");
    let st_bytes = std::fs::read(hf.join("model.safetensors")).unwrap();
    let st = SafeTensors::parse("model.safetensors", &st_bytes).unwrap();
    for (name, shape) in &p.shapes {
        let t = p.ternary(name).unwrap();
        let w = st.get(name).unwrap();
        let (out, inp) = (shape[0], shape[1]);
        assert_eq!(w.shape, vec![out / 4, inp], "{name}");
        let packed_rows = st.bytes(w);
        for i in 0..out {
            for c in 0..inp {
                let byte = packed_rows[(i % (out / 4)) * inp + c];
                let q = ((byte >> (2 * (i / (out / 4)))) & 3) as i8 - 1;
                assert_eq!(q, t.codes[i * inp + c], "{name} ({i}, {c})");
            }
        }
        let scale = st
            .to_f32(st.get(&name.replace(".weight", ".weight_scale")).unwrap())
            .unwrap();
        assert_eq!(scale, vec![1.0 / t.scale], "{name}: weight_scale is 1/γ");
    }
}

#[test]
fn bad_gguf_files_are_named() {
    let dir = tmp("gguf-bad");
    let bad = dir.join("broken.gguf");
    let good = std::fs::read(fixtures().join("gguf/llama-q8_0.gguf")).unwrap();
    std::fs::write(&bad, &good[..good.len() / 2]).unwrap();
    let (ok, _, err) = bitnet(&["inspect", s(&bad)]);
    assert!(
        !ok && err.contains("broken.gguf") && err.contains("truncated"),
        "{err}"
    );
    let (ok, _, err) = bitnet(&[
        "export",
        s(&fixtures().join("llama")),
        "--format",
        "gguf-tq2_0",
        "--out",
        s(&dir.join("x.gguf")),
    ]);
    assert!(!ok && err.contains("bitnet pack"), "{err}");
}

/// A training run with `--act-bits 8` writes a W1.58A8 packed file (metadata `activation_bits`),
/// which generation runs with the rounding (other tokens than the same weights without it would
/// give are possible, so only determinism and the marker are checked here; the GPU rounding itself
/// is checked against the CPU reference and PyTorch in bitnet-gpu's tests), and whose hf-bitnet
/// export computes what transformers' BitLinear computes.
#[test]
fn a_w158a8_run_is_marked_and_exported_as_such() {
    let dir = tmp("gguf-a8");
    let data = common::dataset(&dir);
    let out = dir.join("run");
    let llama = fixtures().join("llama");
    let mut args = common::train_args(s(&data), s(&out), s(&llama), "2");
    args.extend(["--act-bits", "8"]);
    let (ok, _, err) = bitnet(&args);
    assert!(ok, "{err}");
    let packed = out.join("model.bitnet.safetensors");
    let bytes = std::fs::read(&packed).unwrap();
    let p = PackedModel::parse("packed", &bytes).unwrap();
    assert!(p.act8);
    assert_eq!(p.st.header.metadata["activation_bits"], "8");
    // Repacking keeps the marker.
    assert!(
        PackedModel::parse("trit5", &p.repack(bitnet_core::Packing::Trit5).unwrap())
            .unwrap()
            .act8
    );
    assert_eq!(greedy(&packed), greedy(&packed));
    let v = json(&[
        "export",
        s(&out),
        "--format",
        "hf-bitnet",
        "--out",
        s(&dir.join("hfb")),
        "--json",
    ]);
    assert!(
        v["notes"][0].as_str().unwrap().starts_with("W1.58A8"),
        "{v}"
    );
    let v = json(&[
        "export",
        s(&out),
        "--format",
        "hf",
        "--out",
        s(&dir.join("hf")),
        "--json",
    ]);
    assert!(
        v["notes"].to_string().contains("without that rounding"),
        "{v}"
    );
    let (ok, _, err) = bitnet(&[&args[..], &["--quantize-lm-head", "--overwrite"]].concat());
    assert!(
        !ok && err.contains("--act-bits 8") && err.contains("--quantize-lm-head"),
        "{err}"
    );
}
