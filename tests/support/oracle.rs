//! The PyTorch oracle (tests/fixtures/oracle, written by tools/make_oracle.py) and its acceptance
//! rule, shared by the CPU reference model's test (bitnet-core) and the GPU model's (bitnet-gpu):
//! loss within 1e-4 relative, logits within 1e-3 of the largest |logit|, every gradient within 1e-3
//! relative L2.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bitnet_core::model::{MemoryFiles, Model};
use bitnet_core::quant::{Quantizer, ScaleMode};
use bitnet_core::safetensors::SafeTensors;

pub const MODELS: [&str; 3] = ["llama", "qwen2", "mistral"];

/// One oracle variant: its file name, the λ-blend, and whether the post-attention norm is on.
pub type Variant = (&'static str, Option<(Quantizer, f32)>, bool);

/// The variants, as tools/make_oracle.py names them.
pub fn variants() -> [Variant; 5] {
    let threshold = Quantizer::Threshold {
        ratio: 0.7,
        scale: ScaleMode::Optimal,
    };
    [
        ("lambda0", None, false),
        ("absmean-l0.5", Some((Quantizer::Absmean, 0.5)), false),
        ("absmean-l1", Some((Quantizer::Absmean, 1.0)), false),
        ("threshold-l1", Some((threshold, 1.0)), false),
        (
            "absmean-l0.5-postnorm",
            Some((Quantizer::Absmean, 0.5)),
            true,
        ),
    ]
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// Completes a future that never suspends (in-memory files).
pub fn block_on<T>(fut: impl std::future::Future<Output = T>) -> T {
    use std::task::{Context, Poll, Waker};
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("in-memory loading suspended"),
    }
}

/// A fixture model and every parameter as f32, by name.
pub fn load(name: &str) -> (Model, BTreeMap<String, Vec<f32>>) {
    let mut files = BTreeMap::new();
    for e in std::fs::read_dir(fixtures().join(name)).unwrap() {
        let p = e.unwrap().path();
        let file = p.file_name().unwrap().to_str().unwrap().to_string();
        files.insert(file, std::fs::read(&p).unwrap());
    }
    let files = MemoryFiles(files);
    let model = block_on(Model::open(&files)).unwrap();
    let params = block_on(model.all_f32(&files)).unwrap();
    (model, params)
}

/// The oracle's token batch.
pub fn tokens() -> Vec<Vec<u32>> {
    serde_json::from_slice(&std::fs::read(fixtures().join("oracle/tokens.json")).unwrap()).unwrap()
}

/// Relative L2 error ‖a − b‖ / ‖b‖.
pub fn rel_l2(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// Checks one model's loss, logits and gradients (`grad(name)`, `n_grads` of them) against
/// oracle/{model}/{variant}.safetensors.
pub fn check(
    model: &str,
    variant: &str,
    loss: f32,
    logits: &[f32],
    n_grads: usize,
    grad: &mut dyn FnMut(&str) -> Option<Vec<f32>>,
) {
    let tag = format!("{model} {variant}");
    let path = fixtures().join(format!("oracle/{model}/{variant}.safetensors"));
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
        ((loss - want_loss) / want_loss).abs() <= 1e-4,
        "{tag}: loss {loss} vs PyTorch {want_loss}"
    );
    let want_logits = get("logits");
    let max_logit = want_logits.iter().fold(0f32, |m, x| m.max(x.abs()));
    let max_err = logits
        .iter()
        .zip(&want_logits)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        max_err <= 1e-3 * max_logit,
        "{tag}: logits differ by {max_err} (max |logit| {max_logit})"
    );
    let names: Vec<&str> = oracle
        .header
        .tensors
        .iter()
        .filter_map(|t| t.name.strip_prefix("grad."))
        .collect();
    assert_eq!(
        names.len(),
        n_grads,
        "{tag}: the gradient sets differ in size"
    );
    for name in names {
        let ours = grad(name).unwrap_or_else(|| panic!("{tag}: no gradient for {name}"));
        let err = rel_l2(&ours, &get(&format!("grad.{name}")));
        assert!(
            err <= 1e-3,
            "{tag}: gradient of {name} off by {err:.2e} (relative L2)"
        );
    }
}
