//! Text generation on the GPU: a prefill over a batch of prompts of different lengths, then one
//! decode step per new token with a KV cache, sampling on the CPU from the logits of each sequence's
//! last position (`bitnet_core::sample`). A pass of at most [`MATVEC_ROWS`] rows (a decode step of
//! a small batch) runs its linear layers through the matrix–vector kernels, others through the
//! GEMM. Ternary projections (a packed file, or a folder ternarized on load) stay packed on the GPU
//! at 2 bits per weight: decode steps read the codes directly, a prefill unpacks one projection at
//! a time into a scratch buffer for the GEMM (shaders/matvec.wgsl). A BF16 model's embedding and
//! lm_head stay bf16 (F16 ones are widened to f32: see matvec.wgsl).
//!
//! Prompts are right-padded to the longest: causal attention keeps every real position blind to
//! the padding after it, the logits come from each prompt's own last position, and each sequence's
//! first decoded token overwrites the cache row of its first padding position.

// Op builders take their buffers one by one.
#![allow(clippy::too_many_arguments)]

use std::collections::BTreeMap;

use bitnet_core::config::ModelConfig;
use bitnet_core::cpu::model::{POST_ATTN_NORM_EPS, extra_norms, post_attn_norm_name, subln_names};
use bitnet_core::cpu::rope::rope_tables_of;
use bitnet_core::params::param_table;
use bitnet_core::quant::Ternary;
use bitnet_core::safetensors::Dtype;
use bitnet_core::sample::{SampleRng, Sampling, sample};

use crate::decode::{DecodeShape, MAX_CACHE};
use crate::device::Gpu;
use crate::error::GpuError;
use crate::matmul::{GemmPlan, LinearShape};
use crate::matvec::{Bf16Weight, MATVEC_ROWS, TernaryWeight};
use crate::model::quantized;
use crate::ops::Op;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Prompt i samples from `SampleRng::stream(seed, first_stream + i)` (self-generation numbers
    /// its attempts so that each one's draw is the same whatever the batch size).
    pub seed: u64,
    pub first_stream: u64,
    /// A sequence ends after emitting one of these (kept in its tokens).
    pub eos: Vec<u32>,
    /// Keep the logits each token was chosen from (tests; B·V floats per step).
    pub keep_logits: bool,
}

/// The result of [`Generator::generate`], per prompt in order.
#[derive(Debug, Clone, Default)]
pub struct Generation {
    /// The new tokens (the end-of-sequence token included when one was emitted).
    pub tokens: Vec<Vec<u32>>,
    /// Whether each sequence ended with an end-of-sequence token (else: the token budget).
    pub ended: Vec<bool>,
    /// With `keep_logits`: the logits of every chosen token, per prompt and step.
    pub logits: Vec<Vec<Vec<f32>>>,
    pub prefill_tokens: usize,
    pub prefill_ms: f64,
    /// Tokens produced by decode steps (every token after each prompt's first), and their time.
    pub decode_tokens: usize,
    pub decode_ms: f64,
}

/// The weights of a model on the GPU, ready to generate.
pub struct Generator {
    pub cfg: ModelConfig,
    /// Every full-precision parameter's buffer and PyTorch shape.
    weights: BTreeMap<String, (wgpu::Buffer, Vec<usize>)>,
    /// The ternary projections, packed.
    ternary: BTreeMap<String, TernaryWeight>,
    /// The embedding and lm_head of a BF16 model, kept bf16.
    bf16: BTreeMap<String, Bf16Weight>,
    /// One unpacked projection at a time, for passes of more than [`MATVEC_ROWS`] rows.
    unpacked: Option<wgpu::Buffer>,
    /// Whether passes of at most [`MATVEC_ROWS`] rows use the matrix–vector kernel for
    /// full-precision weights (else the GEMM; benchmarks compare the two).
    pub matvec: bool,
    post_attn_norm: bool,
    /// SubLN gains on o_proj's and down_proj's inputs.
    subln: bool,
    /// W1.58A8: every projection's input rounded to 8 bits per token (a model trained with
    /// `--act-bits 8`; the packed file says so).
    pub act8: bool,
    plan: GemmPlan,
}

/// Working buffers of one generate call: activations for B·T rows (the prefill; decode steps use
/// the first B), the KV caches and the logits.
struct Work {
    b: u32,
    t: u32,
    cap: u32,
    ids: wgpu::Buffer,
    pos: wgpu::Buffer,
    cos: wgpu::Buffer,
    sin: wgpu::Buffer,
    x: wgpu::Buffer,
    n1: wgpu::Buffer,
    rstd: wgpu::Buffer,
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    qr: wgpu::Buffer,
    kr: wgpu::Buffer,
    att: wgpu::Buffer,
    astats: wgpu::Buffer,
    o: wgpu::Buffer,
    on: wgpu::Buffer,
    gate: wgpu::Buffer,
    up: wgpu::Buffer,
    hact: wgpu::Buffer,
    scores: wgpu::Buffer,
    kc: Vec<wgpu::Buffer>,
    vc: Vec<wgpu::Buffer>,
    last: wgpu::Buffer,
    logits: wgpu::Buffer,
    /// W1.58A8: a projection's input rounded to 8 bits.
    act_q: Option<wgpu::Buffer>,
}

/// Which attention a pass runs: causal over the B·T prompt rows, or one new row per sequence
/// against the cache.
#[derive(Clone, Copy, PartialEq)]
enum Pass {
    Prefill,
    Decode,
}

impl Generator {
    /// Uploads the model: the tensors of `ternary` (codes and scale, by name) packed, every other
    /// tensor of the parameter table from `weights` (f32, by name; a ternary tensor's f32 values
    /// there are not uploaded) — the embedding and lm_head as bf16 when `dtypes` says the model
    /// stores them so (their values round-trip exactly), everything else f32. The post-attention
    /// norm and SubLN gains of a model trained with them are used when present.
    pub fn new(
        gpu: &Gpu,
        cfg: &ModelConfig,
        weights: &BTreeMap<String, Vec<f32>>,
        ternary: &BTreeMap<String, Ternary>,
        dtypes: &BTreeMap<String, Dtype>,
    ) -> Result<Generator, GpuError> {
        let mut bufs = BTreeMap::new();
        let mut packed = BTreeMap::new();
        let mut bf16 = BTreeMap::new();
        let post_attn_norm = weights.contains_key(&post_attn_norm_name(0));
        let subln = weights.contains_key(&subln_names(0)[0]);
        let mut names: Vec<(String, Vec<usize>)> = param_table(cfg)
            .into_iter()
            .map(|s| (s.name, s.shape))
            .collect();
        names.extend(
            extra_norms(cfg, post_attn_norm, subln)
                .into_iter()
                .map(|(n, width)| (n, vec![width])),
        );
        let bad = |message: String| GpuError::Device {
            what: "generator".into(),
            message,
        };
        for (name, shape) in names {
            let numel: usize = shape.iter().product();
            if let Some(t) = ternary.get(&name) {
                let [out, inp] = shape[..] else {
                    return Err(bad(format!(
                        "tensor {name} of shape {shape:?} is not a matrix"
                    )));
                };
                packed.insert(name.clone(), gpu.upload_ternary(&name, t, out, inp)?);
                continue;
            }
            let values = weights
                .get(&name)
                .ok_or_else(|| bad(format!("tensor {name} is missing")))?;
            if values.len() != numel {
                return Err(bad(format!(
                    "tensor {name} has {} values, expected {numel}",
                    values.len()
                )));
            }
            let embedding_or_head = name == "model.embed_tokens.weight" || name == "lm_head.weight";
            if embedding_or_head && dtypes.get(&name) == Some(&Dtype::BF16) {
                bf16.insert(
                    name.clone(),
                    gpu.upload_bf16(&name, values, shape[0], shape[1])?,
                );
                continue;
            }
            let buf = gpu.upload_f32(&name, values)?;
            bufs.insert(name, (buf, shape));
        }
        let unpacked = match ternary.values().map(|t| t.codes.len()).max() {
            Some(n) => Some(gpu.storage("unpacked projection", 4 * n as u64)?),
            None => None,
        };
        Ok(Generator {
            cfg: cfg.clone(),
            weights: bufs,
            ternary: packed,
            bf16,
            unpacked,
            matvec: true,
            post_attn_norm,
            subln,
            act8: false,
            plan: gpu.gemm_plan(),
        })
    }

    /// Bytes of the model's weights on the GPU (packed ternary projections at 2 bits per weight
    /// plus row padding to 64 weights, and the f32 scratch of one unpacked projection for passes
    /// of many rows; a BF16 model's embedding and lm_head 2 bytes each; everything else f32).
    pub fn weight_bytes(&self) -> u64 {
        let f32s: u64 = self.weights.values().map(|(b, _)| b.size()).sum();
        let bf16: u64 = self.bf16.values().map(|t| t.buf.size()).sum();
        f32s + bf16 + self.packed_bytes() + self.unpacked.as_ref().map_or(0, |b| b.size())
    }

    /// Bytes of the packed ternary projections on the GPU.
    pub fn packed_bytes(&self) -> u64 {
        self.ternary.values().map(|t| t.words.size()).sum()
    }

    fn w(&self, name: &str) -> &wgpu::Buffer {
        &self.weights[name].0
    }

    fn work(&self, gpu: &Gpu, b: u32, t: u32, cap: u32) -> Result<Work, GpuError> {
        let cfg = &self.cfg;
        let rows = (b * t) as usize;
        let (h, inter, vocab) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let qd = cfg.num_attention_heads * cfg.head_dim;
        let kvd = cfg.num_key_value_heads * cfg.head_dim;
        let f = |name: &str, len: usize| gpu.storage(name, 4 * len as u64);
        let cache = (b * cap) as usize * kvd;
        let (cos, sin) = rope_tables_of(cap as usize, &cfg.rope());
        let layers = cfg.num_hidden_layers;
        Ok(Work {
            b,
            t,
            cap,
            ids: f("token ids", rows)?,
            pos: f("positions", b as usize)?,
            cos: gpu.upload_f32("rope cos", &cos)?,
            sin: gpu.upload_f32("rope sin", &sin)?,
            x: f("residual", rows * h)?,
            n1: f("normed", rows * h)?,
            rstd: f("rstd", rows)?,
            q: f("q", rows * qd)?,
            k: f("k", rows * kvd)?,
            v: f("v", rows * kvd)?,
            qr: f("q rope", rows * qd)?,
            kr: f("k rope", rows * kvd)?,
            att: f("attention", rows * qd)?,
            astats: f("attention stats", 2 * rows * cfg.num_attention_heads)?,
            o: f("o_proj out", rows * h)?,
            on: f("o normed", rows * h)?,
            gate: f("gate", rows * inter)?,
            up: f("up", rows * inter)?,
            hact: f("swiglu", rows * inter)?,
            scores: f(
                "attention scores",
                (b * cap) as usize * cfg.num_attention_heads,
            )?,
            kc: (0..layers)
                .map(|_| f("key cache", cache))
                .collect::<Result<_, _>>()?,
            vc: (0..layers)
                .map(|_| f("value cache", cache))
                .collect::<Result<_, _>>()?,
            last: f("last positions", b as usize * h)?,
            logits: f("logits", b as usize * vocab)?,
            act_q: match self.act8 {
                true => Some(f("8-bit activations", rows * h.max(qd).max(inter))?),
                false => None,
            },
        })
    }

    /// y (rows, out) = x·Wᵀ (+ b) of the projection `name`: packed, matrix–vector or GEMM.
    fn linear(
        &self,
        gpu: &Gpu,
        ops: &mut Vec<Op>,
        rows: u32,
        name: &str,
        has_bias: bool,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) {
        let wname = format!("{name}.weight");
        let bias = has_bias.then(|| self.w(&format!("{name}.bias")));
        if let (Some(t), Some(scratch)) = (self.ternary.get(&wname), &self.unpacked) {
            ops.extend(gpu.ternary_linear(self.plan, rows, x, t, bias, scratch, y));
            return;
        }
        if let Some(t) = self.bf16.get(&wname) {
            ops.push(gpu.matvec_bf16_op(rows, x, t, bias, y));
            return;
        }
        let (wt, shape) = &self.weights[&wname];
        let (out, inp) = (shape[0] as u32, shape[1] as u32);
        let shape = LinearShape { rows, inp, out };
        if self.matvec && rows <= MATVEC_ROWS {
            ops.push(gpu.matvec_op(shape, x, wt, bias, y));
            return;
        }
        ops.extend(gpu.linear_forward(self.plan, shape, None, x, wt, bias, None, None, y));
    }

    /// The ops of one pass: the prefill over all B·T rows, or a decode step over B rows. Both end
    /// with the logits of one row per sequence in `w.logits`.
    fn pass(&self, gpu: &Gpu, w: &Work, pass: Pass, lens: &[u32]) -> Result<Vec<Op>, GpuError> {
        let cfg = &self.cfg;
        let rows = match pass {
            Pass::Prefill => w.b * w.t,
            Pass::Decode => w.b,
        };
        let (h, inter, vocab) = (
            cfg.hidden_size as u32,
            cfg.intermediate_size as u32,
            cfg.vocab_size as u32,
        );
        let (hq, hkv, d) = (
            cfg.num_attention_heads as u32,
            cfg.num_key_value_heads as u32,
            cfg.head_dim as u32,
        );
        let kvd = (hkv * d) as u64;
        let eps = cfg.rms_norm_eps as f32;
        let dshape = DecodeShape {
            b: w.b,
            hq,
            hkv,
            d,
            cap: w.cap,
        };
        let act_q = w.act_q.as_ref();
        let embed = "model.embed_tokens.weight";
        let mut ops = vec![match self.bf16.get(embed) {
            Some(t) => gpu.embedding_forward_bf16(rows, h, vocab, t, &w.ids, &w.x),
            None => gpu.embedding_forward(rows, h, vocab, self.w(embed), &w.ids, &w.x),
        }];
        for l in 0..cfg.num_hidden_layers {
            let pre = format!("model.layers.{l}");
            let att = format!("{pre}.self_attn");
            let g_in = self.w(&format!("{pre}.input_layernorm.weight"));
            ops.push(gpu.rmsnorm_forward(rows, h, eps, &w.x, g_in, &w.rstd, &w.n1));
            // W1.58A8: each projection input rounded once, for every projection that reads it.
            let n1 = quantized(gpu, &mut ops, act_q, rows, h, &w.n1);
            for (p, y) in [("q_proj", &w.q), ("k_proj", &w.k), ("v_proj", &w.v)] {
                let name = format!("{att}.{p}");
                self.linear(gpu, &mut ops, rows, &name, cfg.qkv_bias, n1, y);
            }
            match pass {
                Pass::Prefill => {
                    let (b, t) = (w.b, w.t);
                    ops.push(gpu.rope(false, [b, t, hq, d], 0, &w.q, &w.cos, &w.sin, &w.qr));
                    ops.push(gpu.rope(false, [b, t, hkv, d], 0, &w.k, &w.cos, &w.sin, &w.kr));
                    ops.extend(gpu.attention_forward(
                        [b, t, hq, hkv, d],
                        &w.qr,
                        &w.kr,
                        &w.v,
                        &w.att,
                        &w.astats,
                    )?);
                    // The prompt rows of every sequence into its cache.
                    for s in 0..b as u64 {
                        for (src, dst) in [(&w.kr, &w.kc[l]), (&w.v, &w.vc[l])] {
                            ops.push(Op::Copy {
                                src: src.clone(),
                                src_offset: 4 * s * t as u64 * kvd,
                                dst: dst.clone(),
                                dst_offset: 4 * s * w.cap as u64 * kvd,
                                bytes: 4 * t as u64 * kvd,
                            });
                        }
                    }
                }
                Pass::Decode => {
                    ops.push(gpu.rope_at(dshape, hq, &w.q, &w.cos, &w.sin, &w.pos, &w.qr)?);
                    ops.push(gpu.rope_at(dshape, hkv, &w.k, &w.cos, &w.sin, &w.pos, &w.kr)?);
                    ops.extend(gpu.decode_attention(
                        dshape, w.cap, &w.qr, &w.kr, &w.v, &w.pos, &w.kc[l], &w.vc[l], &w.scores,
                        &w.att,
                    )?);
                }
            }
            // SubLN normalises o_proj's input into qr (free after attention) and down_proj's into
            // gate (free after SwiGLU).
            let [g_att, g_ffn] = subln_names(l);
            let o_in = if self.subln {
                let g = self.w(&g_att);
                ops.push(gpu.rmsnorm_forward(rows, hq * d, eps, &w.att, g, &w.rstd, &w.qr));
                &w.qr
            } else {
                &w.att
            };
            let o_name = format!("{att}.o_proj");
            let o_in = quantized(gpu, &mut ops, act_q, rows, hq * d, o_in);
            self.linear(gpu, &mut ops, rows, &o_name, cfg.o_bias, o_in, &w.o);
            if self.post_attn_norm {
                let g = self.w(&post_attn_norm_name(l));
                ops.push(gpu.rmsnorm_forward(rows, h, POST_ATTN_NORM_EPS, &w.o, g, &w.rstd, &w.on));
                ops.push(gpu.accumulate(rows * h, &w.on, &w.x));
            } else {
                ops.push(gpu.accumulate(rows * h, &w.o, &w.x));
            }
            let g_post = self.w(&format!("{pre}.post_attention_layernorm.weight"));
            ops.push(gpu.rmsnorm_forward(rows, h, eps, &w.x, g_post, &w.rstd, &w.n1));
            let n2 = quantized(gpu, &mut ops, act_q, rows, h, &w.n1);
            let mlp = format!("{pre}.mlp");
            let bias = cfg.mlp_bias;
            self.linear(
                gpu,
                &mut ops,
                rows,
                &format!("{mlp}.gate_proj"),
                bias,
                n2,
                &w.gate,
            );
            self.linear(
                gpu,
                &mut ops,
                rows,
                &format!("{mlp}.up_proj"),
                bias,
                n2,
                &w.up,
            );
            ops.push(gpu.swiglu_forward(rows * inter, &w.gate, &w.up, &w.hact));
            let down_in = if self.subln {
                let g = self.w(&g_ffn);
                ops.push(gpu.rmsnorm_forward(rows, inter, eps, &w.hact, g, &w.rstd, &w.gate));
                &w.gate
            } else {
                &w.hact
            };
            let down_in = quantized(gpu, &mut ops, act_q, rows, inter, down_in);
            self.linear(
                gpu,
                &mut ops,
                rows,
                &format!("{mlp}.down_proj"),
                bias,
                down_in,
                &w.o,
            );
            ops.push(gpu.accumulate(rows * h, &w.o, &w.x));
        }
        // One row per sequence: its last prompt position (prefill) or its new token (decode).
        let last = match pass {
            Pass::Prefill => {
                for (s, &len) in lens.iter().enumerate() {
                    let row = s as u64 * w.t as u64 + len as u64 - 1;
                    ops.push(Op::Copy {
                        src: w.x.clone(),
                        src_offset: 4 * row * h as u64,
                        dst: w.last.clone(),
                        dst_offset: 4 * s as u64 * h as u64,
                        bytes: 4 * h as u64,
                    });
                }
                &w.last
            }
            Pass::Decode => &w.x,
        };
        let g_final = self.w("model.norm.weight");
        ops.push(gpu.rmsnorm_forward(w.b, h, eps, last, g_final, &w.rstd, &w.n1));
        let lm = if cfg.tie_word_embeddings {
            "model.embed_tokens"
        } else {
            "lm_head"
        };
        self.linear(gpu, &mut ops, w.b, lm, false, &w.n1, &w.logits);
        Ok(ops)
    }

    /// Generates a continuation of every prompt (token ids), all in one batch. `now` is a clock in
    /// milliseconds; `on_token(prompt, token)` sees every new token as it is chosen.
    pub async fn generate(
        &self,
        gpu: &Gpu,
        prompts: &[Vec<u32>],
        opts: &GenerateOptions,
        now: &dyn Fn() -> f64,
        on_token: &mut dyn FnMut(usize, u32),
    ) -> Result<Generation, GpuError> {
        let bad = GpuError::Input;
        let vocab = self.cfg.vocab_size;
        if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
            return Err(bad("every prompt needs at least one token".into()));
        }
        if let Some(&id) = prompts.iter().flatten().find(|&&id| id as usize >= vocab) {
            return Err(bad(format!(
                "token id {id} is outside the model's vocabulary of {vocab} ids"
            )));
        }
        let b = prompts.len();
        let lens: Vec<u32> = prompts.iter().map(|p| p.len() as u32).collect();
        let t = *lens.iter().max().unwrap_or(&1);
        let cap = t as usize + opts.max_new_tokens;
        if cap > MAX_CACHE as usize {
            return Err(bad(format!(
                "the longest prompt ({t} tokens) plus {} new tokens passes the KV cache limit of {MAX_CACHE} positions",
                opts.max_new_tokens
            )));
        }
        let mut out = Generation {
            tokens: vec![Vec::new(); b],
            ended: vec![false; b],
            logits: vec![Vec::new(); b],
            prefill_tokens: lens.iter().map(|&l| l as usize).sum(),
            ..Default::default()
        };
        if opts.max_new_tokens == 0 {
            return Ok(out);
        }
        let w = self.work(gpu, b as u32, t, cap as u32)?;
        let mut rngs: Vec<SampleRng> = (0..b)
            .map(|i| SampleRng::stream(opts.seed, opts.first_stream + i as u64))
            .collect();

        // Both passes are built (their pipelines compiled) before the clock starts.
        let prefill = self.pass(gpu, &w, Pass::Prefill, &lens)?;
        let decode = self.pass(gpu, &w, Pass::Decode, &lens)?;
        let start = now();
        let mut ids: Vec<u32> = Vec::with_capacity(b * t as usize);
        for p in prompts {
            ids.extend_from_slice(p);
            ids.resize(ids.len() + (t as usize - p.len()), 0);
        }
        gpu.queue
            .write_buffer(&w.ids, 0, bytemuck::cast_slice(&ids));
        gpu.submit(&prefill);
        let mut step = 0;
        loop {
            let logits = gpu.read_f32("logits", &w.logits, b * vocab).await?;
            if step == 0 {
                out.prefill_ms = now() - start;
            }
            let mut next = Vec::with_capacity(b);
            for s in 0..b {
                let row = &logits[s * vocab..(s + 1) * vocab];
                let tok = if out.ended[s] {
                    0
                } else {
                    let tok = sample(row, &opts.sampling, &mut rngs[s]);
                    out.tokens[s].push(tok);
                    if opts.keep_logits {
                        out.logits[s].push(row.to_vec());
                    }
                    on_token(s, tok);
                    out.ended[s] = opts.eos.contains(&tok);
                    if step > 0 {
                        out.decode_tokens += 1;
                    }
                    tok
                };
                next.push(tok);
            }
            step += 1;
            if step >= opts.max_new_tokens || out.ended.iter().all(|&e| e) {
                break;
            }
            let pos: Vec<u32> = lens.iter().map(|&l| l + step as u32 - 1).collect();
            gpu.queue
                .write_buffer(&w.ids, 0, bytemuck::cast_slice(&next));
            gpu.queue
                .write_buffer(&w.pos, 0, bytemuck::cast_slice(&pos));
            gpu.submit(&decode);
        }
        out.decode_ms = now() - start - out.prefill_ms;
        Ok(out)
    }
}
