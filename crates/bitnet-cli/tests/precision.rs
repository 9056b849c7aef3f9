//! Full-precision tensors at their own precision, and the ternary model packed on the GPU: a
//! packed file of a BF16 model keeps its embeddings BF16 (or `--fp-dtype`), a training run of it
//! exports them BF16, and generation from the packed file gives the folder `--ternary`'s tokens
//! with the projections at 2 bits per weight on the GPU.

mod common;

use std::path::Path;

use bitnet_core::packed::PackedModel;
use bitnet_core::safetensors::Dtype;
use common::{bitnet, dataset, fixtures, json, tmp, train_args};

/// The dtype of every stored tensor of the packed file at `path` that is not a ternary part.
fn plain_dtypes(path: &Path) -> Vec<(String, Dtype)> {
    let bytes = std::fs::read(path).unwrap();
    let p = PackedModel::parse("packed", &bytes).unwrap();
    p.st.header
        .tensors
        .iter()
        .filter(|t| !p.is_ternary_part(&t.name))
        .map(|t| (t.name.clone(), t.dtype))
        .collect()
}

fn greedy(model: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "generate",
        "--model",
        model,
        "--prompt",
        "The capital of France is",
        "--max-new-tokens",
        "6",
        "--json",
    ];
    args.extend(extra);
    json(&args)
}

#[test]
fn packed_bf16_model_keeps_bf16_embeddings_and_generates_like_the_folder_ternarized() {
    let dir = tmp("precision");
    let src = fixtures().join("llama-bf16");
    let packed = dir.join("model.bitnet.safetensors");
    let f32_packed = dir.join("f32.bitnet.safetensors");
    for (out, extra) in [(&packed, None), (&f32_packed, Some("f32"))] {
        let mut args = vec![
            "pack",
            src.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        if let Some(d) = extra {
            args.extend(["--fp-dtype", d]);
        }
        let (ok, _, err) = bitnet(&args);
        assert!(ok, "{err}");
    }
    let kept = plain_dtypes(&packed);
    assert!(kept.iter().any(|(n, _)| n == "model.embed_tokens.weight"));
    assert!(kept.iter().all(|(_, d)| *d == Dtype::BF16), "{kept:?}");
    let widened = plain_dtypes(&f32_packed);
    assert!(widened.iter().all(|(_, d)| *d == Dtype::F32), "{widened:?}");
    assert!(
        std::fs::metadata(&packed).unwrap().len() < std::fs::metadata(&f32_packed).unwrap().len()
    );

    let from_file = greedy(packed.to_str().unwrap(), &[]);
    let from_folder = greedy(src.to_str().unwrap(), &["--ternary"]);
    assert_eq!(from_file["tokens"], from_folder["tokens"]);
    assert_eq!(from_file["tokens"].as_array().unwrap().len(), 6);
    assert_eq!(from_file["ternary"], true);
    // The projections are packed on the GPU: the ternary model's weights take fewer bytes there
    // than the full-precision model's.
    let full = greedy(src.to_str().unwrap(), &[]);
    let (packed_bytes, full_bytes) = (
        from_file["gpu_weight_bytes"].as_u64().unwrap(),
        full["gpu_weight_bytes"].as_u64().unwrap(),
    );
    assert!(
        packed_bytes > 0 && packed_bytes < full_bytes,
        "{packed_bytes} vs {full_bytes}"
    );

    let (ok, _, err) = bitnet(&[
        "pack",
        src.to_str().unwrap(),
        "--out",
        dir.join("x").to_str().unwrap(),
        "--fp-dtype",
        "f8",
    ]);
    assert!(!ok && err.contains("f8") && err.contains("bf16"), "{err}");
}

/// A training run of the BF16 model exports its embeddings and norms BF16 (the base model's
/// dtype), or F16 with `--fp-dtype f16`.
#[test]
fn training_exports_full_precision_tensors_in_the_base_models_dtype() {
    let dir = tmp("precision-train");
    let data = dataset(&dir);
    let model = fixtures().join("llama-bf16");
    for (name, extra, want) in [
        ("bf16", None, Dtype::BF16),
        ("f16", Some("f16"), Dtype::F16),
    ] {
        let out = dir.join(name);
        let mut args = train_args(
            data.to_str().unwrap(),
            out.to_str().unwrap(),
            model.to_str().unwrap(),
            "2",
        );
        if let Some(d) = extra {
            args.extend(["--fp-dtype", d]);
        }
        let (ok, _, err) = bitnet(&args);
        assert!(ok, "{name}: {err}");
        let kept = plain_dtypes(&out.join("model.bitnet.safetensors"));
        assert!(kept.iter().any(|(n, _)| n == "model.embed_tokens.weight"));
        assert!(kept.iter().all(|(_, d)| *d == want), "{name}: {kept:?}");
    }
}
