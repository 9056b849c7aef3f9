//! The kernels against their CPU references, one training pass of a fixture model against the
//! PyTorch oracle and greedy generation against transformers, in a real browser (headless
//! Chromium's WebGPU). Fails when the browser has no WebGPU adapter.
#![cfg(target_arch = "wasm32")]

use bitnet_gpu::Gpu;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
async fn quantize_kernel_matches_cpu_reference_in_browser() {
    let gpu = match Gpu::new().await {
        Ok(g) => g,
        Err(e) => panic!("WebGPU is required for this test: {e}"),
    };
    let backend = format!("{:?}", gpu.info.backend);
    assert_eq!(
        backend, "BrowserWebGpu",
        "the test must run on the browser's WebGPU, not {backend}"
    );
    match bitnet_gpu::selftest::quantize_against_cpu(&gpu).await {
        Ok(lines) => lines.iter().for_each(|l| console_log!("{l}")),
        Err(e) => panic!("{e}"),
    }
}

/// The whole kernel suite (every WGSL file) on the browser's WebGPU adapter.
#[wasm_bindgen_test]
async fn every_kernel_matches_its_cpu_reference_in_browser() {
    let gpu = match Gpu::new().await {
        Ok(g) => g,
        Err(e) => panic!("WebGPU is required for this test: {e}"),
    };
    let checks = bitnet_gpu::selftest::run_all(&gpu).await;
    let failed: Vec<_> = checks.iter().filter(|c| !c.passed).collect();
    console_log!("{} kernel checks on {}", checks.len(), gpu.info.name);
    assert!(checks.len() > 50, "only {} checks ran", checks.len());
    assert!(
        failed.is_empty(),
        "{} kernels failed: {failed:#?}",
        failed.len()
    );
}

/// One forward and backward pass of the llama fixture at λ = 0.5 in the browser, plain and with
/// SubLN, gives the loss that the native build and PyTorch (float64) give, within 1e-4 relative;
/// the extra norms' calibration pass runs there too.
#[wasm_bindgen_test]
async fn one_training_pass_gives_the_native_loss_in_browser() {
    use std::collections::BTreeMap;

    use bitnet_core::cpu::model::next_token_targets;
    use bitnet_core::model::{MemoryFiles, Model};
    use bitnet_core::quant::Quantizer;
    use bitnet_core::safetensors::SafeTensors;
    use bitnet_gpu::model::{GpuModel, ModelSetup};

    let gpu = match Gpu::new().await {
        Ok(g) => g,
        Err(e) => panic!("WebGPU is required for this test: {e}"),
    };
    let fixture = |name: &str, bytes: &[u8]| (name.to_string(), bytes.to_vec());
    let files = MemoryFiles(BTreeMap::from([
        fixture(
            "config.json",
            include_bytes!("../../../tests/fixtures/llama/config.json"),
        ),
        fixture(
            "model.safetensors",
            include_bytes!("../../../tests/fixtures/llama/model.safetensors"),
        ),
    ]));
    let model = Model::open(&files).await.unwrap();
    let weights = model.all_f32(&files).await.unwrap();
    let tokens: Vec<Vec<u32>> =
        serde_json::from_slice(include_bytes!("../../../tests/fixtures/oracle/tokens.json"))
            .unwrap();
    let targets = next_token_targets(&tokens, None);
    let variants: [(&str, &[u8], bool); 2] = [
        (
            "absmean-l0.5",
            include_bytes!("../../../tests/fixtures/oracle/llama/absmean-l0.5.safetensors"),
            false,
        ),
        (
            "absmean-l0.5-subln",
            include_bytes!("../../../tests/fixtures/oracle/llama/absmean-l0.5-subln.safetensors"),
            true,
        ),
    ];
    for (variant, oracle_bytes, subln) in variants {
        let oracle = SafeTensors::parse(variant, oracle_bytes).unwrap();
        let want = oracle.to_f32(oracle.get("loss").unwrap()).unwrap()[0];
        // SubLN's gains as the oracle drew them.
        let mut weights = weights.clone();
        for t in &oracle.header.tensors {
            if let Some(name) = t.name.strip_prefix("param.") {
                weights.insert(name.to_string(), oracle.to_f32(t).unwrap());
            }
        }
        let setup = ModelSetup {
            quantizer: Quantizer::Absmean,
            post_attn_norm: false,
            quantize_lm_head: false,
            subln,
            act8: false,
        };
        let m = GpuModel::new(&gpu, &model.config, &weights, setup).unwrap();
        let batch = m.batch(&gpu, &tokens, &targets).unwrap();
        gpu.submit(&m.forward_backward(&gpu, &batch, Some(0.5)).unwrap());
        let n = tokens.len() * tokens[0].len();
        let loss: f32 = gpu
            .read_f32("loss", &batch.loss, n)
            .await
            .unwrap()
            .iter()
            .sum();
        console_log!("{variant}: loss {loss} in the browser, {want} in PyTorch");
        assert!(
            ((loss - want) / want).abs() <= 1e-4,
            "{variant}: browser loss {loss} vs PyTorch {want}"
        );
        // The gradients reached the parameters too (SubLN's gains included).
        for name in [
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.1.mlp.ffn_sub_norm.weight",
        ] {
            let Some(g) = m.grad(name) else {
                assert!(!subln, "{variant}: no {name}");
                continue;
            };
            let d = gpu.read_f32(name, g, m.numel(name)).await.unwrap();
            assert!(
                d.iter().any(|x| *x != 0.0),
                "{variant}: no gradient reached {name}"
            );
        }
        // The calibration pass reads the norms' inputs back in the browser too.
        let rows: Vec<usize> = (0..n).collect();
        let rms = m.norm_input_rms(&gpu, &batch, &rows).await.unwrap();
        assert!(
            rms.o_proj_output
                .iter()
                .chain(&rms.swiglu_output)
                .all(|r| r.is_finite() && *r > 0.0),
            "{variant}: {rms:?}"
        );
    }
}

/// Greedy generation with the KV cache in the browser: the llama fixture's three oracle prompts, in
/// one batch of different lengths, give transformers' tokens (tests/fixtures/generate).
#[wasm_bindgen_test]
async fn greedy_generation_gives_the_transformers_tokens_in_browser() {
    use std::collections::BTreeMap;

    use bitnet_core::model::{MemoryFiles, Model};
    use bitnet_core::sample::Sampling;
    use bitnet_gpu::generate::{GenerateOptions, Generator};

    let gpu = match Gpu::new().await {
        Ok(g) => g,
        Err(e) => panic!("WebGPU is required for this test: {e}"),
    };
    let files = MemoryFiles(BTreeMap::from([
        (
            "config.json".to_string(),
            include_bytes!("../../../tests/fixtures/llama/config.json").to_vec(),
        ),
        (
            "model.safetensors".to_string(),
            include_bytes!("../../../tests/fixtures/llama/model.safetensors").to_vec(),
        ),
    ]));
    let model = Model::open(&files).await.unwrap();
    let weights = model.all_f32(&files).await.unwrap();
    let fx: serde_json::Value = serde_json::from_slice(include_bytes!(
        "../../../tests/fixtures/generate/llama.json"
    ))
    .unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let prompts: Vec<Vec<u32>> = fx["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| ids(&p["ids"]))
        .collect();
    let g = Generator::new(
        &gpu,
        &model.config,
        &weights,
        &Default::default(),
        &Default::default(),
    )
    .unwrap();
    let opts = GenerateOptions {
        max_new_tokens: fx["max_new_tokens"].as_u64().unwrap() as usize,
        sampling: Sampling::Greedy,
        seed: 0,
        first_stream: 0,
        eos: ids(&fx["eos_token_id"]),
        keep_logits: false,
    };
    let out = g
        .generate(&gpu, &prompts, &opts, &|| 0.0, &mut |_, _| {})
        .await
        .unwrap();
    for (i, p) in fx["prompts"].as_array().unwrap().iter().enumerate() {
        assert_eq!(out.tokens[i], ids(&p["new_ids"]), "prompt {i}");
    }
    console_log!("{} prompts generated as transformers does", prompts.len());
}
