//! The model on the GPU: forward, loss and backward of a Llama/Qwen2/Mistral config assembled from
//! the kernels, one buffer per parameter of the parameter table. The numerics are those of the CPU
//! reference `bitnet_core::cpu::model` (BitLinear projections with λ-blend and straight-through
//! gradients, tied embeddings, q/k/v biases, the optional post-attention RMSNorm), and both are
//! checked against the PyTorch oracle in tests/fixtures/oracle.

// Op builders take their buffers one by one, in binding order.
#![allow(clippy::too_many_arguments)]

use std::collections::BTreeMap;

use bitnet_core::config::ModelConfig;
use bitnet_core::cpu::model::{POST_ATTN_NORM_EPS, post_attn_norm_name, subln_names};
use bitnet_core::cpu::norm::mean_rms;
use bitnet_core::params::{Role, param_table};
use bitnet_core::quant::{Quantizer, Ternary};

pub use crate::batch::Batch;
use crate::device::Gpu;
use crate::error::GpuError;
use crate::kernels::{Distill, TopKBuffers};
use crate::matmul::{BlendPath, GemmPlan, LinearGrads, LinearShape};
use crate::matvec::TernaryWeight;
use crate::ops::Op;
use crate::quantize::StatsBuffers;

/// How a model is trained: which quantizer its projections blend toward, and the seed's options.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelSetup {
    pub quantizer: Quantizer,
    pub post_attn_norm: bool,
    pub quantize_lm_head: bool,
    /// SubLN: a trained RMSNorm on the input of every o_proj and down_proj (BitNet b1.58's
    /// sub-layer norms); batches need its buffers ([`GpuModel::batch`]).
    #[serde(default)]
    pub subln: bool,
    /// W1.58A8: every projection's input rounded to 8 bits per token (absmax) before the product,
    /// straight-through in the backward (`--act-bits 8`); batches need its buffer.
    #[serde(default)]
    pub act8: bool,
}

/// Per layer, the mean RMS of the inputs of the norms a model may add ([`GpuModel::norm_input_rms`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NormInputRms {
    /// The post-attention norm's input.
    pub o_proj_output: Vec<f32>,
    /// SubLN's input of o_proj.
    pub attention_output: Vec<f32>,
    /// SubLN's input of down_proj.
    pub swiglu_output: Vec<f32>,
}

pub use bitnet_core::cpu::model::is_extra_norm;

/// The distillation term of a training pass: the teacher's distribution over the same batch, the
/// KL's temperature and weight, and the cross-entropy's weight beside it.
pub struct Teacher<'a> {
    pub probs: TeacherProbs<'a>,
    pub kd: Distill,
    pub ce_weight: f32,
}

/// What the teacher gives per position: its logits (rows, vocab), or its top K tokens.
#[derive(Clone, Copy)]
pub enum TeacherProbs<'a> {
    Logits(&'a wgpu::Buffer),
    TopK(TopKBuffers<'a>),
}

struct Param {
    buf: wgpu::Buffer,
    grad: wgpu::Buffer,
    shape: Vec<usize>,
    numel: usize,
    /// Quantizer statistics of a ternary weight, and the ops that recompute them from the weight.
    stats: Option<(StatsBuffers, Vec<Op>)>,
    /// The weight packed at 2 bits (an inference model's ternary projection, see
    /// [`GpuModel::pack_projections`]); `buf` is then not read.
    packed: Option<TernaryWeight>,
}

pub struct GpuModel {
    pub cfg: ModelConfig,
    pub setup: ModelSetup,
    /// Parameter names in table order (the post-attention norm gains after each layer's).
    pub names: Vec<String>,
    params: BTreeMap<String, Param>,
    plan: GemmPlan,
    /// The λ-blended weights of one projection at a time, when the plan blends through scratch.
    scratch: Option<wgpu::Buffer>,
    /// Whether gradient buffers exist (false: [`GpuModel::for_inference`]).
    trainable: bool,
}

impl GpuModel {
    /// Uploads `weights` (every tensor of the parameter table, f32, by name). The post-attention
    /// norm gains start at 1 when the setup asks for them and `weights` has none.
    pub fn new(
        gpu: &Gpu,
        cfg: &ModelConfig,
        weights: &BTreeMap<String, Vec<f32>>,
        setup: ModelSetup,
    ) -> Result<GpuModel, GpuError> {
        Self::build(gpu, cfg, weights, setup, true)
    }

    /// The model for evaluation only: no gradient buffers are allocated, and
    /// [`GpuModel::forward_backward`] refuses to run.
    pub fn for_inference(
        gpu: &Gpu,
        cfg: &ModelConfig,
        weights: &BTreeMap<String, Vec<f32>>,
        setup: ModelSetup,
    ) -> Result<GpuModel, GpuError> {
        Self::build(gpu, cfg, weights, setup, false)
    }

    fn build(
        gpu: &Gpu,
        cfg: &ModelConfig,
        weights: &BTreeMap<String, Vec<f32>>,
        setup: ModelSetup,
        trainable: bool,
    ) -> Result<GpuModel, GpuError> {
        let plan = gpu.gemm_plan();
        // An inference model's gradient slots all name one small unused buffer.
        let no_grad = (!trainable).then(|| gpu.dummy_rw[0].clone());
        let mut specs: Vec<(String, Vec<usize>, bool)> = Vec::new();
        for spec in param_table(cfg) {
            let ternary = spec.is_ternary(setup.quantize_lm_head)
                || (setup.quantize_lm_head
                    && cfg.tie_word_embeddings
                    && spec.role == Role::Embedding);
            specs.push((spec.name.clone(), spec.shape.clone(), ternary));
            if spec.name.ends_with("post_attention_layernorm.weight") {
                let l = layer_of(&spec.name);
                if setup.post_attn_norm {
                    specs.push((post_attn_norm_name(l), vec![cfg.hidden_size], false));
                }
                if setup.subln {
                    let [att, ffn] = subln_names(l);
                    let q = cfg.num_attention_heads * cfg.head_dim;
                    specs.push((att, vec![q], false));
                    specs.push((ffn, vec![cfg.intermediate_size], false));
                }
            }
        }
        let mut params = BTreeMap::new();
        let mut names = Vec::new();
        let mut largest = 0;
        for (name, shape, ternary) in specs {
            let numel = shape.iter().product();
            let ones;
            let values = match weights.get(&name) {
                Some(v) => v.as_slice(),
                None if is_extra_norm(&name) => {
                    ones = vec![1f32; numel];
                    &ones
                }
                None => {
                    return Err(GpuError::Device {
                        what: "model".into(),
                        message: format!("tensor {name} is missing"),
                    });
                }
            };
            if values.len() != numel {
                return Err(GpuError::Device {
                    what: "model".into(),
                    message: format!(
                        "tensor {name} has {} values, expected {numel}",
                        values.len()
                    ),
                });
            }
            let buf = gpu.upload_f32(&name, values)?;
            let grad = match &no_grad {
                Some(b) => b.clone(),
                None => gpu.storage(&format!("grad {name}"), 4 * numel as u64)?,
            };
            let stats = if ternary {
                largest = largest.max(numel);
                Some(gpu.weight_stats(&buf, numel as u64, &setup.quantizer)?)
            } else {
                None
            };
            params.insert(
                name.clone(),
                Param {
                    buf,
                    grad,
                    shape,
                    numel,
                    stats,
                    packed: None,
                },
            );
            names.push(name);
        }
        let scratch = match plan.blend {
            BlendPath::Scratch if largest > 0 => {
                Some(gpu.storage("blend scratch", 4 * largest as u64)?)
            }
            _ => None,
        };
        Ok(GpuModel {
            cfg: cfg.clone(),
            setup,
            names,
            params,
            plan,
            scratch,
            trainable,
        })
    }

    /// Runs the projections of `codes` (codes and scale by name) from their packed codes at 2 bits
    /// per weight, and frees their f32 buffers: an inference model of a ternary model, whose
    /// passes then take no λ. Refused for a trainable model.
    pub fn pack_projections(
        &mut self,
        gpu: &Gpu,
        codes: &BTreeMap<String, Ternary>,
    ) -> Result<(), GpuError> {
        let refuse = |message: String| GpuError::Device {
            what: "model".into(),
            message,
        };
        if self.trainable {
            return Err(refuse("a trainable model keeps its f32 weights".into()));
        }
        for (name, t) in codes {
            let p = self
                .params
                .get_mut(name)
                .ok_or_else(|| refuse(format!("the model has no tensor {name}")))?;
            let [out, inp] = p.shape[..] else {
                return Err(refuse(format!("tensor {name} is not a matrix")));
            };
            p.packed = Some(gpu.upload_ternary(name, t, out, inp)?);
            p.buf = gpu.dummy_rw[0].clone();
        }
        // Passes of many rows unpack one projection at a time (the blend's scratch buffer is free:
        // a packed model takes no λ).
        if let Some(largest) = codes.values().map(|t| t.codes.len()).max() {
            self.scratch = Some(gpu.storage("unpacked projection", 4 * largest as u64)?);
        }
        Ok(())
    }

    fn param(&self, name: &str) -> &Param {
        &self.params[name]
    }

    /// The parameter buffer of `name`.
    pub fn buffer(&self, name: &str) -> Option<&wgpu::Buffer> {
        self.params.get(name).map(|p| &p.buf)
    }

    /// The gradient buffer of `name` (accumulated by every backward pass until cleared); None for
    /// a model built for inference.
    pub fn grad(&self, name: &str) -> Option<&wgpu::Buffer> {
        self.params
            .get(name)
            .filter(|_| self.trainable)
            .map(|p| &p.grad)
    }

    pub fn numel(&self, name: &str) -> usize {
        self.params.get(name).map_or(0, |p| p.numel)
    }

    /// The PyTorch shape of `name` (empty when there is no such parameter).
    pub fn shape(&self, name: &str) -> Vec<usize> {
        self.params
            .get(name)
            .map_or(Vec::new(), |p| p.shape.clone())
    }

    /// A batch with the buffers this model's passes need (SubLN's when it has them).
    pub fn batch(
        &self,
        gpu: &Gpu,
        tokens: &[Vec<u32>],
        targets: &[i32],
    ) -> Result<Batch, GpuError> {
        Batch::alloc(
            gpu,
            &self.cfg,
            tokens,
            targets,
            self.setup.subln,
            self.setup.act8,
        )
    }

    /// After a forward pass over `batch`: per layer, the mean RMS over the rows `rows` (its real
    /// tokens) of the inputs of the norms a model may add — o_proj's output (the post-attention
    /// norm's), the attention output and the SwiGLU output (SubLN's) — the calibrated start of
    /// their gains.
    pub async fn norm_input_rms(
        &self,
        gpu: &Gpu,
        batch: &Batch,
        rows: &[usize],
    ) -> Result<NormInputRms, GpuError> {
        let cfg = &self.cfg;
        let (h, q, inter) = (
            cfg.hidden_size,
            cfg.num_attention_heads * cfg.head_dim,
            cfg.intermediate_size,
        );
        let n = (batch.b * batch.t) as usize;
        let mut out = NormInputRms::default();
        for la in &batch.acts.layers {
            let o = gpu.read_f32("o_proj output", &la.o_out, n * h).await?;
            out.o_proj_output.push(mean_rms(&o, h, rows));
            let att = gpu.read_f32("attention output", &la.att, n * q).await?;
            out.attention_output.push(mean_rms(&att, q, rows));
            let act = gpu.read_f32("SwiGLU output", &la.hact, n * inter).await?;
            out.swiglu_output.push(mean_rms(&act, inter, rows));
        }
        Ok(out)
    }

    /// Ops that zero every gradient (the start of an optimizer step).
    pub fn zero_grads(&self) -> Vec<Op> {
        self.params
            .values()
            .map(|p| Op::Clear(p.grad.clone()))
            .collect()
    }

    /// Ops of one forward and backward pass over `batch` at blend factor `lambda` (None: the
    /// projections as they are). Gradients accumulate into the gradient buffers; the loss per row
    /// (already divided by `batch.loss_divisor`) is in `batch.loss`.
    pub fn forward_backward(
        &self,
        gpu: &Gpu,
        batch: &Batch,
        lambda: Option<f32>,
    ) -> Result<Vec<Op>, GpuError> {
        if !self.trainable {
            return Err(GpuError::Device {
                what: "model".into(),
                message: "a model built for inference has no gradients to compute".into(),
            });
        }
        self.pass(gpu, batch, lambda, true, None)
    }

    /// [`GpuModel::forward_backward`] of `ce_weight` · cross-entropy + the distillation term of
    /// `teacher` (its logits or its top K over the same batch); `batch.loss` then holds the whole
    /// objective's rows only when `ce_weight` is 0 — else the cross-entropy's, and
    /// `batch.kd_loss` the KL's.
    pub fn forward_backward_distilled(
        &self,
        gpu: &Gpu,
        batch: &Batch,
        lambda: Option<f32>,
        teacher: &Teacher<'_>,
    ) -> Result<Vec<Op>, GpuError> {
        if !self.trainable {
            return Err(GpuError::Device {
                what: "model".into(),
                message: "a model built for inference has no gradients to compute".into(),
            });
        }
        self.pass(gpu, batch, lambda, true, Some(teacher))
    }

    /// Ops of the forward pass only: the loss per row in `batch.loss`, the logits in
    /// `batch.logits()` (evaluation; no gradient is touched).
    pub fn forward_loss(
        &self,
        gpu: &Gpu,
        batch: &Batch,
        lambda: Option<f32>,
    ) -> Result<Vec<Op>, GpuError> {
        if lambda.is_some() && self.params.values().any(|p| p.packed.is_some()) {
            return Err(GpuError::Device {
                what: "model".into(),
                message: "packed projections are already ternary: a pass over them takes no λ"
                    .into(),
            });
        }
        self.pass(gpu, batch, lambda, false, None)
    }

    fn pass(
        &self,
        gpu: &Gpu,
        batch: &Batch,
        lambda: Option<f32>,
        backward: bool,
        teacher: Option<&Teacher<'_>>,
    ) -> Result<Vec<Op>, GpuError> {
        let cfg = &self.cfg;
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
        let (b, t, n) = (batch.b, batch.t, batch.b * batch.t);
        let eps = cfg.rms_norm_eps as f32;
        let blend = lambda.map(|l| (self.setup.quantizer, l));
        let scratch = self.scratch.as_ref();
        let attn_shape = [b, t, hq, hkv, d];
        // RoPE (or, backward, its transpose) over `heads` heads of x (B, T, heads, D).
        let rope = |backward: bool, heads: u32, x: &wgpu::Buffer, out: &wgpu::Buffer| {
            gpu.rope(
                backward,
                [b, t, heads, d],
                0,
                x,
                &batch.cos,
                &batch.sin,
                out,
            )
        };
        let mut ops = Vec::new();
        // The quantizer statistics of every ternary weight, from its current values.
        for p in self.params.values() {
            if let (Some((_, stat_ops)), Some(_)) = (&p.stats, lambda) {
                ops.extend(stat_ops.iter().cloned());
            }
        }
        let w = |name: &str| &self.param(name).buf;
        let stats = |name: &str| self.param(name).stats.as_ref().map(|s| &s.0.stats);
        let bias = |name: &str, has: bool| has.then(|| w(&format!("{name}.bias")));
        let a = &batch.acts;
        // W1.58A8: a projection's input rounded to 8 bits per token, into the batch's buffer for
        // it (again for each projection, forward and backward: the weight gradient sees it too).
        let act_q = match (self.setup.act8, &a.act_q) {
            (false, _) => None,
            (true, Some(q)) => Some(q),
            (true, None) => {
                return Err(GpuError::Input(
                    "a W1.58A8 model needs a batch with its buffer (GpuModel::batch)".into(),
                ));
            }
        };
        let linear = |ops: &mut Vec<Op>,
                      name: &str,
                      has_bias: bool,
                      inp: u32,
                      out: u32,
                      x: &wgpu::Buffer,
                      y: &wgpu::Buffer| {
            let shape = LinearShape { rows: n, inp, out };
            let wn = format!("{name}.weight");
            if let (Some(t), Some(scratch)) = (&self.param(&wn).packed, scratch) {
                ops.extend(gpu.ternary_linear(
                    self.plan,
                    n,
                    x,
                    t,
                    bias(name, has_bias),
                    scratch,
                    y,
                ));
                return;
            }
            ops.extend(gpu.linear_forward(
                self.plan,
                shape,
                blend,
                x,
                w(&wn),
                bias(name, has_bias),
                stats(&wn),
                scratch,
                y,
            ));
        };

        // Forward.
        ops.push(gpu.embedding_forward(
            n,
            h,
            vocab,
            w("model.embed_tokens.weight"),
            &batch.ids,
            &a.x[0],
        ));
        for (l, la) in a.layers.iter().enumerate() {
            let pre = format!("model.layers.{l}");
            let g_in = w(&format!("{pre}.input_layernorm.weight"));
            ops.push(gpu.rmsnorm_forward(n, h, eps, &a.x[l], g_in, &la.rstd1, &la.n1));
            // W1.58A8: each projection input rounded once, for every projection that reads it.
            let n1 = quantized(gpu, &mut ops, act_q, n, h, &la.n1);
            let att = format!("{pre}.self_attn");
            linear(
                &mut ops,
                &format!("{att}.q_proj"),
                cfg.qkv_bias,
                h,
                hq * d,
                n1,
                &la.q,
            );
            linear(
                &mut ops,
                &format!("{att}.k_proj"),
                cfg.qkv_bias,
                h,
                hkv * d,
                n1,
                &la.k,
            );
            linear(
                &mut ops,
                &format!("{att}.v_proj"),
                cfg.qkv_bias,
                h,
                hkv * d,
                n1,
                &la.v,
            );
            ops.push(rope(false, hq, &la.q, &la.qr));
            ops.push(rope(false, hkv, &la.k, &la.kr));
            ops.extend(
                gpu.attention_forward(attn_shape, &la.qr, &la.kr, &la.v, &la.att, &la.astats)?,
            );
            let [g_att, g_ffn] = subln_names(l);
            let sub = match (&la.sub, self.setup.subln) {
                (Some(s), true) => Some(s),
                (None, true) => {
                    return Err(GpuError::Input(
                        "a SubLN model needs a batch with SubLN buffers (GpuModel::batch)".into(),
                    ));
                }
                _ => None,
            };
            let o_in = match sub {
                Some(s) => {
                    ops.push(gpu.rmsnorm_forward(
                        n,
                        hq * d,
                        eps,
                        &la.att,
                        w(&g_att),
                        &s.rstd_att,
                        &s.att_n,
                    ));
                    &s.att_n
                }
                None => &la.att,
            };
            let o_in = quantized(gpu, &mut ops, act_q, n, hq * d, o_in);
            linear(
                &mut ops,
                &format!("{att}.o_proj"),
                cfg.o_bias,
                hq * d,
                h,
                o_in,
                &la.o_out,
            );
            let attn_out = if self.setup.post_attn_norm {
                let g = w(&post_attn_norm_name(l));
                ops.push(gpu.rmsnorm_forward(
                    n,
                    h,
                    POST_ATTN_NORM_EPS,
                    &la.o_out,
                    g,
                    &la.rstd_post,
                    &la.o_normed,
                ));
                &la.o_normed
            } else {
                &la.o_out
            };
            ops.push(gpu.add(n * h, &a.x[l], attn_out, &la.x_mid));
            let g_post = w(&format!("{pre}.post_attention_layernorm.weight"));
            ops.push(gpu.rmsnorm_forward(n, h, eps, &la.x_mid, g_post, &la.rstd2, &la.n2));
            let n2 = quantized(gpu, &mut ops, act_q, n, h, &la.n2);
            let mlp = format!("{pre}.mlp");
            linear(
                &mut ops,
                &format!("{mlp}.gate_proj"),
                cfg.mlp_bias,
                h,
                inter,
                n2,
                &la.gate,
            );
            linear(
                &mut ops,
                &format!("{mlp}.up_proj"),
                cfg.mlp_bias,
                h,
                inter,
                n2,
                &la.up,
            );
            ops.push(gpu.swiglu_forward(n * inter, &la.gate, &la.up, &la.hact));
            let down_in = match sub {
                Some(s) => {
                    ops.push(gpu.rmsnorm_forward(
                        n,
                        inter,
                        eps,
                        &la.hact,
                        w(&g_ffn),
                        &s.rstd_h,
                        &s.h_n,
                    ));
                    &s.h_n
                }
                None => &la.hact,
            };
            let down_in = quantized(gpu, &mut ops, act_q, n, inter, down_in);
            linear(
                &mut ops,
                &format!("{mlp}.down_proj"),
                cfg.mlp_bias,
                inter,
                h,
                down_in,
                &a.tmp_h,
            );
            ops.push(gpu.add(n * h, &la.x_mid, &a.tmp_h, &a.x[l + 1]));
        }
        let last = &a.x[cfg.num_hidden_layers];
        let g_final = w("model.norm.weight");
        ops.push(gpu.rmsnorm_forward(n, h, eps, last, g_final, &a.rstdf, &a.nf));
        let lm_name = if cfg.tie_word_embeddings {
            "model.embed_tokens.weight"
        } else {
            "lm_head.weight"
        };
        let lm_blend = if self.setup.quantize_lm_head {
            blend
        } else {
            None
        };
        let lm_shape = LinearShape {
            rows: n,
            inp: h,
            out: vocab,
        };
        let lm = self.param(lm_name);
        let lm_stats = stats(lm_name);
        match (&lm.packed, scratch) {
            (Some(t), Some(scratch)) => {
                ops.extend(gpu.ternary_linear(self.plan, n, &a.nf, t, None, scratch, &a.logits))
            }
            _ => ops.extend(gpu.linear_forward(
                self.plan, lm_shape, lm_blend, &a.nf, &lm.buf, None, lm_stats, scratch, &a.logits,
            )),
        }
        let nv = batch.loss_divisor;
        // The cross-entropy's weight folds into its divisor; distillation alone has none.
        let ce = match teacher {
            None => Some(nv as f32),
            Some(t) if t.ce_weight > 0.0 => Some(nv as f32 / t.ce_weight),
            Some(_) => None,
        };
        let tgt = &batch.targets;
        if let Some(div) = ce {
            ops.push(gpu.xent_forward(n, vocab, div, &a.logits, tgt, &a.lse, &batch.loss));
        }
        if let Some(t) = teacher {
            let kd_loss = if ce.is_some() {
                &batch.kd_loss
            } else {
                &batch.loss
            };
            let (s, st) = (&a.logits, &a.kd_stats);
            ops.push(match t.probs {
                TeacherProbs::Logits(tl) => {
                    gpu.kl_forward(n, vocab, nv, t.kd, s, tl, tgt, st, kd_loss)
                }
                TeacherProbs::TopK(top) => {
                    gpu.kl_topk_forward(n, vocab, nv, t.kd, s, top, tgt, st, kd_loss)
                }
            });
        }
        if !backward {
            return Ok(ops);
        }

        // Backward: a.dx carries dL/d(residual stream) from the top down.
        if let Some(div) = ce {
            ops.push(gpu.xent_backward(n, vocab, div, &a.logits, tgt, &a.lse, &a.dlogits));
        }
        if let Some(t) = teacher {
            let (s, st, d) = (&a.logits, &a.kd_stats, &a.dlogits);
            let acc = ce.is_some();
            match t.probs {
                TeacherProbs::Logits(tl) => {
                    ops.push(gpu.kl_backward(n, vocab, nv, t.kd, acc, s, tl, tgt, st, d))
                }
                TeacherProbs::TopK(top) => {
                    ops.extend(gpu.kl_topk_backward(n, vocab, nv, t.kd, acc, s, top, tgt, st, d))
                }
            }
        }
        let grads = LinearGrads {
            dx: &a.dn,
            dw: &lm.grad,
            db: None,
        };
        ops.extend(gpu.linear_backward(
            self.plan, lm_shape, lm_blend, &a.nf, &lm.buf, lm_stats, scratch, &a.dlogits, grads,
        ));
        let gg = &self.param("model.norm.weight").grad;
        ops.extend(gpu.rmsnorm_backward(n, h, last, g_final, &a.dn, &a.rstdf, &a.dx, gg));
        let linear_back = |ops: &mut Vec<Op>,
                           name: &str,
                           has_bias: bool,
                           inp: u32,
                           out: u32,
                           x: &wgpu::Buffer,
                           dy: &wgpu::Buffer,
                           dx: &wgpu::Buffer| {
            let wn = format!("{name}.weight");
            let p = self.param(&wn);
            let db = has_bias.then(|| &self.param(&format!("{name}.bias")).grad);
            let grads = LinearGrads {
                dx,
                dw: &p.grad,
                db,
            };
            let shape = LinearShape { rows: n, inp, out };
            ops.extend(gpu.linear_backward(
                self.plan,
                shape,
                blend,
                x,
                &p.buf,
                stats(&wn),
                scratch,
                dy,
                grads,
            ));
        };
        for (l, la) in a.layers.iter().enumerate().rev() {
            let pre = format!("model.layers.{l}");
            // MLP block (with SubLN, d(down's input) goes through dgate, free until SwiGLU's
            // backward, to dh).
            let mlp = format!("{pre}.mlp");
            let [g_att, g_ffn] = subln_names(l);
            let sub = la.sub.as_ref().filter(|_| self.setup.subln);
            let (down_in, d_down_in) = match sub {
                Some(s) => (&s.h_n, &a.dgate),
                None => (&la.hact, &a.dh),
            };
            // (The projections' inputs rounded again, as the forward saw them: straight-through.)
            let down_in = quantized(gpu, &mut ops, act_q, n, inter, down_in);
            linear_back(
                &mut ops,
                &format!("{mlp}.down_proj"),
                cfg.mlp_bias,
                inter,
                h,
                down_in,
                &a.dx,
                d_down_in,
            );
            if let Some(s) = sub {
                let g = self.param(&g_ffn);
                ops.extend(gpu.rmsnorm_backward(
                    n, inter, &la.hact, &g.buf, &a.dgate, &s.rstd_h, &a.dh, &g.grad,
                ));
            }
            ops.push(gpu.swiglu_backward(n * inter, &la.gate, &la.up, &a.dh, &a.dgate, &a.dup));
            let n2 = quantized(gpu, &mut ops, act_q, n, h, &la.n2);
            linear_back(
                &mut ops,
                &format!("{mlp}.gate_proj"),
                cfg.mlp_bias,
                h,
                inter,
                n2,
                &a.dgate,
                &a.dn,
            );
            linear_back(
                &mut ops,
                &format!("{mlp}.up_proj"),
                cfg.mlp_bias,
                h,
                inter,
                n2,
                &a.dup,
                &a.tmp_h,
            );
            ops.push(gpu.accumulate(n * h, &a.tmp_h, &a.dn));
            let gp = format!("{pre}.post_attention_layernorm.weight");
            ops.extend(gpu.rmsnorm_backward(
                n,
                h,
                &la.x_mid,
                w(&gp),
                &a.dn,
                &la.rstd2,
                &a.tmp_h,
                &self.param(&gp).grad,
            ));
            ops.push(gpu.accumulate(n * h, &a.tmp_h, &a.dx));
            // Attention block.
            let d_attn_out = if self.setup.post_attn_norm {
                let gn = post_attn_norm_name(l);
                let g = self.param(&gn);
                ops.extend(gpu.rmsnorm_backward(
                    n,
                    h,
                    &la.o_out,
                    &g.buf,
                    &a.dx,
                    &la.rstd_post,
                    &a.d_o,
                    &g.grad,
                ));
                &a.d_o
            } else {
                &a.dx
            };
            let att = format!("{pre}.self_attn");
            // With SubLN, d(o_proj's input) goes through dqr, free until attention's backward.
            let (o_in, d_o_in) = match sub {
                Some(s) => (&s.att_n, &a.dqr),
                None => (&la.att, &a.datt),
            };
            let o_in = quantized(gpu, &mut ops, act_q, n, hq * d, o_in);
            linear_back(
                &mut ops,
                &format!("{att}.o_proj"),
                cfg.o_bias,
                hq * d,
                h,
                o_in,
                d_attn_out,
                d_o_in,
            );
            if let Some(s) = sub {
                let g = self.param(&g_att);
                ops.extend(gpu.rmsnorm_backward(
                    n,
                    hq * d,
                    &la.att,
                    &g.buf,
                    &a.dqr,
                    &s.rstd_att,
                    &a.datt,
                    &g.grad,
                ));
            }
            ops.extend(gpu.attention_backward(
                attn_shape, &la.qr, &la.kr, &la.v, &la.att, &la.astats, &a.datt, &a.dqr, &a.dkv,
            )?);
            let kv_bytes = 4 * (n * hkv * d) as u64;
            ops.push(Op::Copy {
                src: a.dkv.clone(),
                src_offset: 0,
                dst: a.dkr.clone(),
                dst_offset: 0,
                bytes: kv_bytes,
            });
            ops.push(Op::Copy {
                src: a.dkv.clone(),
                src_offset: kv_bytes,
                dst: a.dv.clone(),
                dst_offset: 0,
                bytes: kv_bytes,
            });
            ops.push(rope(true, hq, &a.dqr, &a.dq));
            ops.push(rope(true, hkv, &a.dkr, &a.dk));
            let n1 = quantized(gpu, &mut ops, act_q, n, h, &la.n1);
            linear_back(
                &mut ops,
                &format!("{att}.q_proj"),
                cfg.qkv_bias,
                h,
                hq * d,
                n1,
                &a.dq,
                &a.dn,
            );
            linear_back(
                &mut ops,
                &format!("{att}.k_proj"),
                cfg.qkv_bias,
                h,
                hkv * d,
                n1,
                &a.dk,
                &a.tmp_h,
            );
            ops.push(gpu.accumulate(n * h, &a.tmp_h, &a.dn));
            linear_back(
                &mut ops,
                &format!("{att}.v_proj"),
                cfg.qkv_bias,
                h,
                hkv * d,
                n1,
                &a.dv,
                &a.tmp_h,
            );
            ops.push(gpu.accumulate(n * h, &a.tmp_h, &a.dn));
            let gi = format!("{pre}.input_layernorm.weight");
            ops.extend(gpu.rmsnorm_backward(
                n,
                h,
                &a.x[l],
                w(&gi),
                &a.dn,
                &la.rstd1,
                &a.tmp_h,
                &self.param(&gi).grad,
            ));
            ops.push(gpu.accumulate(n * h, &a.tmp_h, &a.dx));
        }
        let embed = &self.param("model.embed_tokens.weight").grad;
        ops.push(gpu.embedding_backward(n, h, vocab, &batch.ids, &a.dx, embed));
        Ok(ops)
    }
}

/// `x` (rows of `inp`) rounded to 8 bits per row into `act_q` when there is one (W1.58A8), else
/// `x` itself: the input a projection multiplies.
pub(crate) fn quantized<'b>(
    gpu: &Gpu,
    ops: &mut Vec<Op>,
    act_q: Option<&'b wgpu::Buffer>,
    rows: u32,
    inp: u32,
    x: &'b wgpu::Buffer,
) -> &'b wgpu::Buffer {
    match act_q {
        Some(q) => {
            ops.push(gpu.act_quant8(rows * inp, inp, x, q));
            q
        }
        None => x,
    }
}

/// The layer index in `model.layers.{l}.…`.
fn layer_of(name: &str) -> usize {
    name.split('.')
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
