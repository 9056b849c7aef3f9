//! The CPU reference model against PyTorch/transformers in float64 (tests/fixtures/oracle, written
//! by tools/make_oracle.py): logits, loss and every parameter's gradient of each fixture model, plain,
//! λ-blended with absmean and threshold codes, and with the post-attention RMSNorm.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bitnet_core::cpu::model::{
    ModelOptions, loss_and_grads, next_token_targets, post_attn_norm_name,
};
use bitnet_core::model::{MemoryFiles, Model};
use bitnet_core::quant::{Quantizer, ScaleMode};
use bitnet_core::safetensors::SafeTensors;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

fn block_on<T>(fut: impl std::future::Future<Output = T>) -> T {
    use std::task::{Context, Poll, Waker};
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("in-memory loading suspended"),
    }
}

/// Every parameter of a fixture model as f32, by name.
fn load(name: &str) -> (Model, BTreeMap<String, Vec<f32>>) {
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(fixtures().join(name)).unwrap() {
        let p = e.unwrap().path();
        let file = p.file_name().unwrap().to_str().unwrap().to_string();
        files.insert(file, std::fs::read(&p).unwrap());
    }
    let files = MemoryFiles(files);
    let model = block_on(Model::open(&files)).unwrap();
    let params = model
        .tensors
        .iter()
        .map(|t| {
            let v = block_on(model.tensor_f32(&files, t)).unwrap();
            (t.spec.name.clone(), v)
        })
        .collect();
    (model, params)
}

/// Relative L2 error ‖a − b‖ / ‖b‖.
fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

#[test]
fn cpu_model_matches_pytorch_float64() {
    let tokens: Vec<Vec<u32>> =
        serde_json::from_slice(&std::fs::read(fixtures().join("oracle/tokens.json")).unwrap())
            .unwrap();
    let targets = next_token_targets(&tokens, None);
    let threshold = Quantizer::Threshold {
        ratio: 0.7,
        scale: ScaleMode::Optimal,
    };
    let variants = [
        ("lambda0", None, false),
        ("absmean-l0.5", Some((Quantizer::Absmean, 0.5)), false),
        ("absmean-l1", Some((Quantizer::Absmean, 1.0)), false),
        ("threshold-l1", Some((threshold, 1.0)), false),
        (
            "absmean-l0.5-postnorm",
            Some((Quantizer::Absmean, 0.5)),
            true,
        ),
    ];
    for model_name in ["llama", "qwen2", "mistral"] {
        let (model, mut params) = load(model_name);
        let cfg = &model.config;
        for (variant, blend, post_attn_norm) in variants {
            let tag = format!("{model_name} {variant}");
            if post_attn_norm {
                for l in 0..cfg.num_hidden_layers {
                    params.insert(post_attn_norm_name(l), vec![1.0; cfg.hidden_size]);
                }
            }
            let opts = ModelOptions {
                blend,
                post_attn_norm,
                quantize_lm_head: false,
            };
            let out = loss_and_grads(cfg, &params, &tokens, &targets, &opts);
            let path = fixtures().join(format!("oracle/{model_name}/{variant}.safetensors"));
            let bytes = std::fs::read(&path).unwrap();
            let oracle = SafeTensors::parse(path.to_str().unwrap(), &bytes).unwrap();
            let get = |name: &str| {
                let info = oracle
                    .get(name)
                    .unwrap_or_else(|| panic!("{tag}: oracle has no {name}"));
                oracle.to_f32(info).unwrap()
            };
            let want_loss = get("loss")[0];
            assert!(
                ((out.loss - want_loss) / want_loss).abs() <= 1e-4,
                "{tag}: loss {} vs PyTorch {want_loss}",
                out.loss
            );
            let want_logits = get("logits");
            let max_logit = want_logits.iter().fold(0f32, |m, x| m.max(x.abs()));
            let max_err = out
                .logits
                .iter()
                .zip(&want_logits)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                max_err <= 1e-3 * max_logit,
                "{tag}: logits differ by {max_err} (max |logit| {max_logit})"
            );
            let oracle_grads: Vec<&str> = oracle
                .header
                .tensors
                .iter()
                .filter_map(|t| t.name.strip_prefix("grad."))
                .collect();
            assert_eq!(
                oracle_grads.len(),
                out.grads.len(),
                "{tag}: gradient sets differ: ours {:?}",
                out.grads.keys().collect::<Vec<_>>()
            );
            for name in oracle_grads {
                let ours = out
                    .grads
                    .get(name)
                    .unwrap_or_else(|| panic!("{tag}: no gradient for {name}"));
                let err = rel_l2(ours, &get(&format!("grad.{name}")));
                assert!(
                    err <= 1e-3,
                    "{tag}: gradient of {name} off by {err:.2e} (relative L2)"
                );
            }
            if post_attn_norm {
                for l in 0..cfg.num_hidden_layers {
                    params.remove(&post_attn_norm_name(l));
                }
            }
        }
    }
}
