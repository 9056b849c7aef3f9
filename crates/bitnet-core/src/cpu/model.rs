//! CPU reference of a whole Llama-family model (llama, qwen2, mistral) with BitLinear projections:
//! the forward pass, the cross-entropy loss and the gradient of every parameter, assembled from the
//! kernel references of this module. It is what the GPU model must compute, and it is checked against
//! PyTorch/transformers in float64 (tests/fixtures/oracle, written by tools/make_oracle.py).
//!
//! Numerics (DESIGN.md §2): every projection (q, k, v, o, gate, up, down) uses
//! W_eff = W + λ·(Q(W) − W) and receives dL/dW = dL/dW_eff (straight-through); embeddings, norms,
//! biases and lm_head stay full precision unless `quantize_lm_head`. The optional post-attention
//! RMSNorm (eps 1e-6, its gain named [`post_attn_norm_name`]) normalises o_proj's output before the
//! residual add; the optional SubLN (BitNet b1.58's sub-layer norms, the config's eps, gains named
//! [`subln_names`]) normalises the inputs of o_proj and down_proj. The loss is the mean cross-entropy of logits[:, :-1] against tokens[:, 1:], over
//! the positions the mask keeps.

use std::collections::BTreeMap;

use super::attention::{AttnShape, attention_backward, attention_forward};
use super::embedding::{embedding_backward, embedding_forward};
pub use super::kl::TopK;
use super::kl::{kl_backward, kl_forward, kl_topk_backward, kl_topk_forward};
use super::matmul::{
    linear_backward_bias, linear_backward_input, linear_backward_weight, linear_forward,
};
use super::norm::{rmsnorm_backward, rmsnorm_forward};
use super::optim::act_quant8;
use super::rope::{rope, rope_tables_of};
use super::swiglu::{swiglu_backward, swiglu_forward};
use super::xent::{xent_backward, xent_forward};
use crate::config::ModelConfig;
use crate::quant::{Quantizer, blend};

/// The post-attention RMSNorm's epsilon (the seed's value).
pub const POST_ATTN_NORM_EPS: f32 = 1e-6;

/// The name of layer `l`'s post-attention RMSNorm gain (a parameter the base model does not have).
pub fn post_attn_norm_name(l: usize) -> String {
    format!("model.layers.{l}.post_attn_norm.weight")
}

/// Whether `name` is the gain of a norm a base model does not have (the post-attention norm's or
/// SubLN's): it starts at 1 unless given, and travels in the packed file beside the ternary weights.
pub fn is_extra_norm(name: &str) -> bool {
    name.ends_with("post_attn_norm.weight") || name.ends_with("_sub_norm.weight")
}

/// The length of the extra norm gain `name` in a model of `cfg` (None: not an extra norm).
pub fn extra_norm_width(cfg: &ModelConfig, name: &str) -> Option<usize> {
    if name.ends_with("post_attn_norm.weight") {
        Some(cfg.hidden_size)
    } else if name.ends_with("attn_sub_norm.weight") {
        Some(cfg.num_attention_heads * cfg.head_dim)
    } else if name.ends_with("ffn_sub_norm.weight") {
        Some(cfg.intermediate_size)
    } else {
        None
    }
}

/// Every extra norm gain of a model of `cfg` with the post-attention norm and/or SubLN, layer by
/// layer: (name, length).
pub fn extra_norms(cfg: &ModelConfig, post_attn_norm: bool, subln: bool) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for l in 0..cfg.num_hidden_layers {
        if post_attn_norm {
            out.push(post_attn_norm_name(l));
        }
        if subln {
            out.extend(subln_names(l));
        }
    }
    out.into_iter()
        .map(|n| {
            let width = extra_norm_width(cfg, &n).unwrap_or_default();
            (n, width)
        })
        .collect()
}

/// The names of layer `l`'s SubLN gains (BitNet b1.58's sub-layer norms, named as transformers'
/// BitNet model names them): the RMSNorm on o_proj's input and the one on down_proj's input.
pub fn subln_names(l: usize) -> [String; 2] {
    [
        format!("model.layers.{l}.self_attn.attn_sub_norm.weight"),
        format!("model.layers.{l}.mlp.ffn_sub_norm.weight"),
    ]
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ModelOptions {
    /// λ-blend the projections toward their ternary values with this quantizer.
    pub blend: Option<(Quantizer, f32)>,
    /// Insert the trained post-attention RMSNorm after every o_proj.
    pub post_attn_norm: bool,
    /// SubLN: a trained RMSNorm (the config's eps) on the input of every o_proj and down_proj.
    pub subln: bool,
    /// Blend lm_head too (seed parity).
    pub quantize_lm_head: bool,
    /// W1.58A8: every projection's input rounded to 8 bits per token (absmax, [`act_quant8`]) in
    /// the forward pass; straight-through in the backward (the weight gradient sees the rounded
    /// input, the input gradient passes unchanged).
    pub act8: bool,
}

pub struct Output {
    /// (B·T, V)
    pub logits: Vec<f32>,
    pub loss: f32,
    /// dL/dθ for every parameter, by Hugging Face name (a tied lm_head's gradient is in the
    /// embedding's).
    pub grads: BTreeMap<String, Vec<f32>>,
    /// Every layer's o_proj output (B·T, hidden): the post-attention norm's input.
    pub o_out: Vec<Vec<f32>>,
    /// Every layer's attention output (B·T, heads·head_dim) and SwiGLU output (B·T,
    /// intermediate): SubLN's inputs.
    pub att: Vec<Vec<f32>>,
    pub h_act: Vec<Vec<f32>>,
}

/// Loss targets for next-token prediction: tokens[b][t + 1] at (b, t), masked (−1) at each
/// sequence's last position and wherever `keep` (same shape as `tokens`) says the target is not
/// trained on.
pub fn next_token_targets(tokens: &[Vec<u32>], keep: Option<&[Vec<bool>]>) -> Vec<i32> {
    let mut targets = Vec::new();
    for (b, seq) in tokens.iter().enumerate() {
        for t in 0..seq.len() {
            let kept = t + 1 < seq.len() && keep.is_none_or(|k| k[b][t + 1]);
            targets.push(if kept { seq[t + 1] as i32 } else { -1 });
        }
    }
    targets
}

/// A projection's weight as the product sees it.
fn effective(w: &[f32], blend_with: Option<(Quantizer, f32)>) -> Vec<f32> {
    match blend_with {
        Some((q, lambda)) => blend(w, &q.quantize(w), lambda),
        None => w.to_vec(),
    }
}

struct Linear<'a> {
    name: String,
    w_eff: Vec<f32>,
    bias: Option<&'a [f32]>,
    inp: usize,
    out: usize,
}

struct LayerCache<'a> {
    x_in: Vec<f32>,
    rstd1: Vec<f32>,
    n1: Vec<f32>,
    q: Linear<'a>,
    k: Linear<'a>,
    v: Linear<'a>,
    o: Linear<'a>,
    gate: Linear<'a>,
    up: Linear<'a>,
    down: Linear<'a>,
    qr: Vec<f32>,
    kr: Vec<f32>,
    vv: Vec<f32>,
    att: Vec<f32>,
    lse: Vec<f32>,
    /// o_proj's input: `att`, or its SubLN (with its rstd).
    att_n: Vec<f32>,
    rstd_att: Vec<f32>,
    o_out: Vec<f32>,
    rstd_post: Vec<f32>,
    x_mid: Vec<f32>,
    rstd2: Vec<f32>,
    n2: Vec<f32>,
    g_act: Vec<f32>,
    u_act: Vec<f32>,
    h_act: Vec<f32>,
    /// down_proj's input: `h_act`, or its SubLN (with its rstd).
    h_n: Vec<f32>,
    rstd_h: Vec<f32>,
}

/// What is minimized: `ce_weight` · cross-entropy + `kd`'s weight · KL(p_teacher ‖ p_student) at
/// its temperature, both means over the unmasked positions.
#[derive(Debug, Clone, Copy)]
pub struct Objective<'a> {
    pub ce_weight: f32,
    pub kd: Option<Distillation<'a>>,
}

/// Distillation from a teacher at the same positions.
#[derive(Debug, Clone, Copy)]
pub struct Distillation<'a> {
    pub teacher: TeacherProbs<'a>,
    pub temperature: f32,
    pub weight: f32,
}

/// What the teacher gives: its logits (B·T, V), or its top-K probabilities per position.
#[derive(Debug, Clone, Copy)]
pub enum TeacherProbs<'a> {
    Logits(&'a [f32]),
    TopK(&'a TopK),
}

impl Objective<'_> {
    /// Cross-entropy alone (the seed's).
    pub const CE: Objective<'static> = Objective {
        ce_weight: 1.0,
        kd: None,
    };
}

/// Forward, loss and every gradient for a batch of equal-length token sequences (cross-entropy).
/// `params` holds every tensor of [`crate::params::param_table`] (and the post-attention norm gains
/// when that option is on) as f32, by name; a missing tensor panics (the caller loaded the model).
pub fn loss_and_grads(
    cfg: &ModelConfig,
    params: &BTreeMap<String, Vec<f32>>,
    tokens: &[Vec<u32>],
    targets: &[i32],
    opts: &ModelOptions,
) -> Output {
    loss_and_grads_of(cfg, params, tokens, targets, opts, &Objective::CE)
}

/// [`loss_and_grads`] for any [`Objective`].
pub fn loss_and_grads_of(
    cfg: &ModelConfig,
    params: &BTreeMap<String, Vec<f32>>,
    tokens: &[Vec<u32>],
    targets: &[i32],
    opts: &ModelOptions,
    objective: &Objective<'_>,
) -> Output {
    let p = |name: &str| -> &[f32] {
        params
            .get(name)
            .unwrap_or_else(|| panic!("parameter {name} missing"))
    };
    let (bsz, t) = (tokens.len(), tokens.first().map_or(0, Vec::len));
    let n = bsz * t;
    let (h, inter, vocab) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let (hq, hkv, d) = (
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim,
    );
    let eps = cfg.rms_norm_eps as f32;
    let shape = AttnShape {
        b: bsz,
        t,
        hq,
        hkv,
        d,
    };
    let (cos, sin) = rope_tables_of(t, &cfg.rope());
    let ids: Vec<u32> = tokens.iter().flatten().copied().collect();
    let linear = |name: String, inp: usize, out: usize, has_bias: bool| {
        let w = p(&format!("{name}.weight"));
        Linear {
            w_eff: effective(w, opts.blend),
            bias: has_bias.then(|| p(&format!("{name}.bias"))),
            name,
            inp,
            out,
        }
    };
    let apply = |l: &Linear, x: &[f32]| linear_forward(x, &l.w_eff, l.bias, n, l.inp, l.out);
    // A projection's input as the product sees it (and its weight gradient: straight-through).
    let act = |x: Vec<f32>, c: usize| if opts.act8 { act_quant8(&x, c) } else { x };

    // Forward.
    let mut x = embedding_forward(p("model.embed_tokens.weight"), &ids, h);
    let mut caches = Vec::with_capacity(cfg.num_hidden_layers);
    for l in 0..cfg.num_hidden_layers {
        let pre = format!("model.layers.{l}");
        let x_in = x.clone();
        let (n1, rstd1) = rmsnorm_forward(&x, p(&format!("{pre}.input_layernorm.weight")), eps, h);
        let n1 = act(n1, h);
        let q = linear(format!("{pre}.self_attn.q_proj"), h, hq * d, cfg.qkv_bias);
        let k = linear(format!("{pre}.self_attn.k_proj"), h, hkv * d, cfg.qkv_bias);
        let v = linear(format!("{pre}.self_attn.v_proj"), h, hkv * d, cfg.qkv_bias);
        let o = linear(format!("{pre}.self_attn.o_proj"), hq * d, h, cfg.o_bias);
        let qr = rope(&apply(&q, &n1), &cos, &sin, bsz, t, hq, d, 0, false);
        let kr = rope(&apply(&k, &n1), &cos, &sin, bsz, t, hkv, d, 0, false);
        let vv = apply(&v, &n1);
        let (att, lse) = attention_forward(&shape, &qr, &kr, &vv);
        let [g_att, g_ffn] = subln_names(l);
        let sub = |x: &[f32], g: &str, c: usize| {
            if opts.subln {
                rmsnorm_forward(x, p(g), eps, c)
            } else {
                (x.to_vec(), Vec::new())
            }
        };
        let (att_n, rstd_att) = sub(&att, &g_att, hq * d);
        let att_n = act(att_n, hq * d);
        let o_out = apply(&o, &att_n);
        let (attn_out, rstd_post) = if opts.post_attn_norm {
            rmsnorm_forward(&o_out, p(&post_attn_norm_name(l)), POST_ATTN_NORM_EPS, h)
        } else {
            (o_out.clone(), Vec::new())
        };
        x.iter_mut().zip(&attn_out).for_each(|(a, b)| *a += b);
        let x_mid = x.clone();
        let g_post = p(&format!("{pre}.post_attention_layernorm.weight"));
        let (n2, rstd2) = rmsnorm_forward(&x, g_post, eps, h);
        let n2 = act(n2, h);
        let gate = linear(format!("{pre}.mlp.gate_proj"), h, inter, cfg.mlp_bias);
        let up = linear(format!("{pre}.mlp.up_proj"), h, inter, cfg.mlp_bias);
        let down = linear(format!("{pre}.mlp.down_proj"), inter, h, cfg.mlp_bias);
        let (g_act, u_act) = (apply(&gate, &n2), apply(&up, &n2));
        let h_act = swiglu_forward(&g_act, &u_act);
        let (h_n, rstd_h) = sub(&h_act, &g_ffn, inter);
        let h_n = act(h_n, inter);
        let mlp_out = apply(&down, &h_n);
        x.iter_mut().zip(&mlp_out).for_each(|(a, b)| *a += b);
        caches.push(LayerCache {
            x_in,
            rstd1,
            n1,
            q,
            k,
            v,
            o,
            gate,
            up,
            down,
            qr,
            kr,
            vv,
            att,
            lse,
            att_n,
            rstd_att,
            o_out,
            rstd_post,
            x_mid,
            rstd2,
            n2,
            g_act,
            u_act,
            h_act,
            h_n,
            rstd_h,
        });
    }
    let g_final = p("model.norm.weight");
    let (nf, rstdf) = rmsnorm_forward(&x, g_final, eps, h);
    let lm_name = if cfg.tie_word_embeddings {
        "model.embed_tokens.weight"
    } else {
        "lm_head.weight"
    };
    let lm_blend = if opts.quantize_lm_head {
        opts.blend
    } else {
        None
    };
    let lm_w = effective(p(lm_name), lm_blend);
    let logits = linear_forward(&nf, &lm_w, None, n, h, vocab);
    let (ce, lse) = xent_forward(&logits, targets, vocab);
    let w_ce = objective.ce_weight;
    let mut loss = w_ce * ce;
    if let Some(kd) = &objective.kd {
        let (t, w) = (kd.temperature, kd.weight);
        loss += match kd.teacher {
            TeacherProbs::Logits(l) => kl_forward(&logits, l, targets, vocab, t, w),
            TeacherProbs::TopK(k) => kl_topk_forward(&logits, k, targets, vocab, t, w),
        };
    }

    // Backward.
    let mut grads: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    let mut add = |name: String, g: Vec<f32>| match grads.get_mut(&name) {
        Some(acc) => acc.iter_mut().zip(&g).for_each(|(a, b)| *a += b),
        None => {
            grads.insert(name, g);
        }
    };
    let mut dlogits = xent_backward(&logits, targets, &lse, vocab);
    dlogits.iter_mut().for_each(|d| *d *= w_ce);
    if let Some(kd) = &objective.kd {
        let (t, w) = (kd.temperature, kd.weight);
        let dkd = match kd.teacher {
            TeacherProbs::Logits(l) => kl_backward(&logits, l, targets, vocab, t, w),
            TeacherProbs::TopK(k) => kl_topk_backward(&logits, k, targets, vocab, t, w),
        };
        dlogits.iter_mut().zip(&dkd).for_each(|(d, k)| *d += k);
    }
    add(
        lm_name.into(),
        linear_backward_weight(&dlogits, &nf, n, h, vocab),
    );
    let dnf = linear_backward_input(&dlogits, &lm_w, n, h, vocab);
    let (mut dx, dg) = rmsnorm_backward(&x, g_final, &rstdf, &dnf, h);
    add("model.norm.weight".into(), dg);
    // Gradients of a linear layer's weight and bias; returns its input gradient.
    let mut linear_back = |l: &Linear, x_in: &[f32], dy: &[f32]| {
        add(
            format!("{}.weight", l.name),
            linear_backward_weight(dy, x_in, n, l.inp, l.out),
        );
        if l.bias.is_some() {
            add(
                format!("{}.bias", l.name),
                linear_backward_bias(dy, n, l.out),
            );
        }
        linear_backward_input(dy, &l.w_eff, n, l.inp, l.out)
    };
    let mut norm_grads = Vec::new();
    for (l, c) in caches.iter().enumerate().rev() {
        let pre = format!("model.layers.{l}");
        // MLP block: x_out = x_mid + down([subln](swiglu(gate(n2), up(n2)))), n2 = norm(x_mid).
        let [g_att, g_ffn] = subln_names(l);
        let dh_n = linear_back(&c.down, &c.h_n, &dx);
        let dh = if opts.subln {
            let (dh, dg) = rmsnorm_backward(&c.h_act, p(&g_ffn), &c.rstd_h, &dh_n, inter);
            norm_grads.push((g_ffn, dg));
            dh
        } else {
            dh_n
        };
        let (dgate, dup) = swiglu_backward(&c.g_act, &c.u_act, &dh);
        let mut dn2 = linear_back(&c.gate, &c.n2, &dgate);
        let dn2_up = linear_back(&c.up, &c.n2, &dup);
        dn2.iter_mut().zip(&dn2_up).for_each(|(a, b)| *a += b);
        let g_post = p(&format!("{pre}.post_attention_layernorm.weight"));
        let (dx_norm, dg_post) = rmsnorm_backward(&c.x_mid, g_post, &c.rstd2, &dn2, h);
        norm_grads.push((format!("{pre}.post_attention_layernorm.weight"), dg_post));
        dx.iter_mut().zip(&dx_norm).for_each(|(a, b)| *a += b);
        // Attention block: x_mid = x_in + [post-norm](o(attention(rope(q), rope(k), v))).
        let do_out = if opts.post_attn_norm {
            let g = p(&post_attn_norm_name(l));
            let (d_o, dg) = rmsnorm_backward(&c.o_out, g, &c.rstd_post, &dx, h);
            norm_grads.push((post_attn_norm_name(l), dg));
            d_o
        } else {
            dx.clone()
        };
        let datt_n = linear_back(&c.o, &c.att_n, &do_out);
        let datt = if opts.subln {
            let (datt, dg) = rmsnorm_backward(&c.att, p(&g_att), &c.rstd_att, &datt_n, hq * d);
            norm_grads.push((g_att, dg));
            datt
        } else {
            datt_n
        };
        let (dqr, dkr, dv) = attention_backward(&shape, &c.qr, &c.kr, &c.vv, &c.att, &c.lse, &datt);
        let dq = rope(&dqr, &cos, &sin, bsz, t, hq, d, 0, true);
        let dk = rope(&dkr, &cos, &sin, bsz, t, hkv, d, 0, true);
        let mut dn1 = linear_back(&c.q, &c.n1, &dq);
        for (lin, dy) in [(&c.k, &dk), (&c.v, &dv)] {
            let part = linear_back(lin, &c.n1, dy);
            dn1.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
        }
        let g_in = p(&format!("{pre}.input_layernorm.weight"));
        let (dx_norm, dg_in) = rmsnorm_backward(&c.x_in, g_in, &c.rstd1, &dn1, h);
        norm_grads.push((format!("{pre}.input_layernorm.weight"), dg_in));
        dx.iter_mut().zip(&dx_norm).for_each(|(a, b)| *a += b);
    }
    let mut dembed = vec![0f32; vocab * h];
    embedding_backward(&mut dembed, &ids, &dx, h);
    add("model.embed_tokens.weight".into(), dembed);
    for (name, g) in norm_grads {
        add(name, g);
    }
    Output {
        logits,
        loss,
        grads,
        o_out: caches.iter().map(|c| c.o_out.clone()).collect(),
        att: caches.iter().map(|c| c.att.clone()).collect(),
        h_act: caches.into_iter().map(|c| c.h_act).collect(),
    }
}
