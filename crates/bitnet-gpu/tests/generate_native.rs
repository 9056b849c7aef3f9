//! Generation with the KV cache against transformers' `generate(do_sample=False)` in float64
//! (tests/fixtures/generate, written by tools/make_generate_oracle.py): the three prompts of each
//! fixture model run as ONE batch of different lengths; every greedy token must equal the oracle's,
//! and the logits each token was chosen from (the prefill's last position first) must match within
//! 1e-3·max|logit|. Fails, never skips, without an adapter.
#![cfg(not(target_arch = "wasm32"))]

#[path = "../../../tests/support/oracle.rs"]
#[allow(dead_code)]
mod oracle;

use bitnet_core::sample::Sampling;
use bitnet_core::tokenizer::Tokenizer;
use bitnet_gpu::Gpu;
use bitnet_gpu::generate::{GenerateOptions, Generator};

#[derive(serde::Deserialize)]
struct Prompt {
    text: String,
    ids: Vec<u32>,
    new_ids: Vec<u32>,
    step_logits: Vec<Vec<f64>>,
}

#[derive(serde::Deserialize)]
struct Fixture {
    max_new_tokens: usize,
    eos_token_id: Vec<u32>,
    prompts: Vec<Prompt>,
}

fn fixture(name: &str) -> Fixture {
    let path = oracle::fixtures().join(format!("generate/{name}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn greedy(max_new_tokens: usize, eos: Vec<u32>) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens,
        sampling: Sampling::Greedy,
        seed: 0,
        first_stream: 0,
        eos,
        keep_logits: true,
    }
}

#[test]
fn greedy_generation_matches_transformers_token_for_token() {
    let gpu = pollster::block_on(Gpu::new())
        .expect("a GPU adapter is required for this test (install mesa-vulkan-drivers)");
    for name in oracle::MODELS {
        let (model, params) = oracle::load(name);
        let fx = fixture(name);
        let tok = Tokenizer::from_bytes("tokenizer.json", model.tokenizer_json.as_ref().unwrap())
            .unwrap();
        for p in &fx.prompts {
            assert_eq!(
                tok.encode(&p.text, true).unwrap(),
                p.ids,
                "{name}: {:?}",
                p.text
            );
        }
        let gen_ = Generator::new(
            &gpu,
            &model.config,
            &params,
            &Default::default(),
            &Default::default(),
        )
        .unwrap();
        let prompts: Vec<Vec<u32>> = fx.prompts.iter().map(|p| p.ids.clone()).collect();
        let lens: std::collections::BTreeSet<usize> = prompts.iter().map(Vec::len).collect();
        assert_eq!(lens.len(), 3, "the batch mixes three prompt lengths");
        let opts = greedy(fx.max_new_tokens, fx.eos_token_id.clone());
        let mut seen = 0;
        let out = pollster::block_on(
            gen_.generate(&gpu, &prompts, &opts, &|| 0.0, &mut |_, _| seen += 1),
        )
        .unwrap();
        for (i, p) in fx.prompts.iter().enumerate() {
            assert_eq!(out.tokens[i], p.new_ids, "{name}: prompt {i} {:?}", p.text);
            for (step, (got, want)) in out.logits[i].iter().zip(&p.step_logits).enumerate() {
                let max = want.iter().fold(0f64, |m, x| m.max(x.abs()));
                let worst = got
                    .iter()
                    .zip(want)
                    .map(|(g, w)| (*g as f64 - w).abs())
                    .fold(0f64, f64::max);
                assert!(
                    worst <= 1e-3 * max,
                    "{name}: prompt {i} step {step}: logits differ by {worst:e} (max |logit| {max})"
                );
            }
        }
        assert_eq!(seen, out.tokens.iter().map(Vec::len).sum::<usize>());
        assert_eq!(
            out.prefill_tokens,
            prompts.iter().map(Vec::len).sum::<usize>()
        );
    }
}

/// Sequences that end at different steps: with the oracle's token of prompt 0 at step 3 as the
/// end-of-sequence id, every prompt stops right after its first occurrence (kept), the others
/// continue unchanged, and a budget of 5 cuts every sequence.
#[test]
fn sequences_of_a_batch_end_at_their_own_eos_or_budget() {
    let gpu = pollster::block_on(Gpu::new())
        .expect("a GPU adapter is required for this test (install mesa-vulkan-drivers)");
    let (model, params) = oracle::load("mistral");
    let fx = fixture("mistral");
    let gen_ = Generator::new(
        &gpu,
        &model.config,
        &params,
        &Default::default(),
        &Default::default(),
    )
    .unwrap();
    let prompts: Vec<Vec<u32>> = fx.prompts.iter().map(|p| p.ids.clone()).collect();
    let eos = fx.prompts[0].new_ids[3];
    let out = pollster::block_on(gen_.generate(
        &gpu,
        &prompts,
        &greedy(fx.max_new_tokens, vec![eos]),
        &|| 0.0,
        &mut |_, _| {},
    ))
    .unwrap();
    for (i, p) in fx.prompts.iter().enumerate() {
        let want: Vec<u32> = match p.new_ids.iter().position(|&t| t == eos) {
            Some(at) => p.new_ids[..=at].to_vec(),
            None => p.new_ids.clone(),
        };
        assert_eq!(out.tokens[i], want, "prompt {i}");
        assert_eq!(out.ended[i], want.last() == Some(&eos));
    }
    assert!(out.ended[0] && out.tokens[0].len() == 4);
    let short = pollster::block_on(gen_.generate(
        &gpu,
        &prompts,
        &greedy(5, vec![]),
        &|| 0.0,
        &mut |_, _| {},
    ))
    .unwrap();
    for (i, p) in fx.prompts.iter().enumerate() {
        assert_eq!(short.tokens[i], p.new_ids[..5], "prompt {i}");
        assert!(!short.ended[i]);
    }
}

/// Every greedy step's logits of `gen_` from the llama fixture's first prompt equal the CPU
/// reference model's (itself checked against PyTorch) under `opts` at the last position of the
/// sequence so far, within `tol`·max|logit|: the KV-cache path computes what training does.
fn greedy_matches_the_cpu_reference(
    gpu: &Gpu,
    gen_: &Generator,
    params: &std::collections::BTreeMap<String, Vec<f32>>,
    opts: &bitnet_core::cpu::model::ModelOptions,
    tol: f32,
) {
    use bitnet_core::cpu::model::{loss_and_grads, next_token_targets};
    let cfg = &gen_.cfg;
    let prompt = fixture("llama").prompts[0].ids.clone();
    let out = pollster::block_on(gen_.generate(
        gpu,
        std::slice::from_ref(&prompt),
        &greedy(4, vec![]),
        &|| 0.0,
        &mut |_, _| {},
    ))
    .unwrap();
    let vocab = cfg.vocab_size;
    for (step, got) in out.logits[0].iter().enumerate() {
        let mut seq = prompt.clone();
        seq.extend(&out.tokens[0][..step]);
        let tokens = vec![seq];
        let targets = next_token_targets(&tokens, None);
        let want = loss_and_grads(cfg, params, &tokens, &targets, opts).logits;
        let last = &want[want.len() - vocab..];
        let max = last.iter().fold(0f32, |m, x| m.max(x.abs()));
        let worst = got
            .iter()
            .zip(last)
            .map(|(g, w)| (g - w).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= tol * max,
            "step {step}: logits differ by {worst:e} (max |logit| {max})"
        );
    }
}

/// A model with SubLN gains (the oracle's, on the llama fixture) generates as the CPU reference
/// computes it: the KV-cache path applies the sub-layer norms as training does.
#[test]
fn greedy_generation_of_a_subln_model_matches_the_cpu_reference() {
    use bitnet_core::cpu::model::ModelOptions;
    let gpu = pollster::block_on(Gpu::new())
        .expect("a GPU adapter is required for this test (install mesa-vulkan-drivers)");
    let (model, mut params) = oracle::load("llama");
    let cfg = &model.config;
    let variant = oracle::variants().into_iter().find(|v| v.subln).unwrap();
    params.extend(oracle::extra_params("llama", &variant, cfg));
    let gen_ =
        Generator::new(&gpu, cfg, &params, &Default::default(), &Default::default()).unwrap();
    let opts = ModelOptions {
        subln: true,
        ..ModelOptions::default()
    };
    greedy_matches_the_cpu_reference(&gpu, &gen_, &params, &opts, 1e-3);
}

/// A W1.58A8 model (the llama fixture ternarized, its projections packed on the GPU) generates as
/// the CPU reference computes it with every projection's input rounded to 8 bits per token.
#[test]
fn greedy_generation_of_a_w158a8_model_matches_the_cpu_reference() {
    use bitnet_core::cpu::model::ModelOptions;
    use bitnet_core::params::param_table;
    use bitnet_core::quant::Quantizer;
    let gpu = pollster::block_on(Gpu::new())
        .expect("a GPU adapter is required for this test (install mesa-vulkan-drivers)");
    let (model, params) = oracle::load("llama");
    let cfg = &model.config;
    let codes = param_table(cfg)
        .into_iter()
        .filter(|p| p.is_ternary(false))
        .map(|p| {
            (
                p.name.clone(),
                Quantizer::Absmean.quantize(&params[&p.name]),
            )
        })
        .collect();
    let mut gen_ = Generator::new(&gpu, cfg, &params, &codes, &Default::default()).unwrap();
    gen_.act8 = true;
    let opts = ModelOptions {
        blend: Some((Quantizer::Absmean, 1.0)),
        act8: true,
        ..ModelOptions::default()
    };
    // (Without the rounding the logits differ by 1.3e-3·max|logit|.)
    greedy_matches_the_cpu_reference(&gpu, &gen_, &params, &opts, 1e-4);
}

/// The ternary model (every projection ternarized, absmean) generated two ways — its projections
/// packed at 2 bits per weight through the packed-weight kernel, and as f32 γ·q through the GEMM
/// and the matrix–vector kernel — gives the same greedy tokens on every fixture, with logits within
/// 1e-4·max|logit|, and the packed projections take 1/16 of their f32 bytes.
#[test]
fn packed_ternary_generation_matches_the_f32_ternary_model() {
    use bitnet_core::params::param_table;
    use bitnet_core::quant::Quantizer;
    let gpu = pollster::block_on(Gpu::new())
        .expect("a GPU adapter is required for this test (install mesa-vulkan-drivers)");
    for name in oracle::MODELS {
        let (model, mut params) = oracle::load(name);
        let cfg = &model.config;
        let mut codes = std::collections::BTreeMap::new();
        let mut projection_bytes = 0u64;
        for spec in param_table(cfg) {
            if spec.is_ternary(false) {
                let t = Quantizer::Absmean.quantize(&params[&spec.name]);
                params.insert(spec.name.clone(), t.dequantize());
                projection_bytes += 4 * t.codes.len() as u64;
                codes.insert(spec.name, t);
            }
        }
        let plain =
            Generator::new(&gpu, cfg, &params, &Default::default(), &Default::default()).unwrap();
        let packed = Generator::new(&gpu, cfg, &params, &codes, &Default::default()).unwrap();
        // 2 bits per weight, rows padded to 64 weights (these rows are 64 or 128 long: no padding).
        assert_eq!(packed.packed_bytes() * 16, projection_bytes, "{name}");
        assert!(packed.weight_bytes() < plain.weight_bytes(), "{name}");
        same_greedy(&gpu, name, &packed, &plain, 1e-4);
    }
}

/// A BF16 model's embedding and lm_head kept bf16 on the GPU give the tokens and logits of the same
/// values widened to f32, with half their bytes.
#[test]
fn a_bf16_embedding_generates_like_its_f32_widening() {
    use bitnet_core::safetensors::Dtype;
    let gpu = pollster::block_on(Gpu::new())
        .expect("a GPU adapter is required for this test (install mesa-vulkan-drivers)");
    let (model, params) = oracle::load("llama-bf16");
    let cfg = &model.config;
    let dtypes = model
        .tensors
        .iter()
        .map(|l| (l.spec.name.clone(), l.info.dtype))
        .collect();
    let (no_codes, no_dtypes) = (Default::default(), Default::default());
    let wide = Generator::new(&gpu, cfg, &params, &no_codes, &no_dtypes).unwrap();
    let narrow = Generator::new(&gpu, cfg, &params, &no_codes, &dtypes).unwrap();
    // The embedding and the (untied) lm_head: 2 bytes a value instead of 4.
    assert!(!cfg.tie_word_embeddings);
    let f32_bytes: u64 = ["model.embed_tokens.weight", "lm_head.weight"]
        .iter()
        .map(|n| 4 * params[*n].len() as u64)
        .sum();
    assert_eq!(wide.weight_bytes() - narrow.weight_bytes(), f32_bytes / 2);
    assert_eq!(dtypes["model.embed_tokens.weight"], Dtype::BF16);
    same_greedy(&gpu, "llama", &narrow, &wide, 1e-5);
}

/// `got` and `want` generate the same 8 greedy tokens from fixture `name`'s prompts (one batch),
/// every step's logits within `tol`·max|logit|.
fn same_greedy(gpu: &Gpu, name: &str, got: &Generator, want: &Generator, tol: f32) {
    let prompts: Vec<Vec<u32>> = fixture(name)
        .prompts
        .iter()
        .map(|p| p.ids.clone())
        .collect();
    let run = |g: &Generator| {
        pollster::block_on(g.generate(gpu, &prompts, &greedy(8, vec![]), &|| 0.0, &mut |_, _| {}))
            .unwrap()
    };
    let (got, want) = (run(got), run(want));
    assert_eq!(got.tokens, want.tokens, "{name}");
    for (g, w) in got
        .logits
        .iter()
        .flatten()
        .zip(want.logits.iter().flatten())
    {
        let max = w.iter().fold(0f32, |m, x| m.max(x.abs()));
        let worst = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst <= tol * max,
            "{name}: logits differ by {worst:e} (max {max})"
        );
    }
}
