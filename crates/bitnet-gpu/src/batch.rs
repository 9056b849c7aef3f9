//! The buffers of one batch on the GPU: its token ids, targets and RoPE tables, and every
//! activation a forward and backward pass over it keeps (SubLN's only for SubLN models, the 8-bit
//! activations' only for W1.58A8 ones).

use bitnet_core::config::ModelConfig;
use bitnet_core::cpu::rope::rope_tables_of;

use crate::device::Gpu;
use crate::error::GpuError;

pub(crate) struct LayerActs {
    pub(crate) rstd1: wgpu::Buffer,
    pub(crate) n1: wgpu::Buffer,
    pub(crate) q: wgpu::Buffer,
    pub(crate) k: wgpu::Buffer,
    pub(crate) v: wgpu::Buffer,
    pub(crate) qr: wgpu::Buffer,
    pub(crate) kr: wgpu::Buffer,
    pub(crate) att: wgpu::Buffer,
    pub(crate) astats: wgpu::Buffer,
    pub(crate) o_out: wgpu::Buffer,
    pub(crate) rstd_post: wgpu::Buffer,
    pub(crate) o_normed: wgpu::Buffer,
    pub(crate) x_mid: wgpu::Buffer,
    pub(crate) rstd2: wgpu::Buffer,
    pub(crate) n2: wgpu::Buffer,
    pub(crate) gate: wgpu::Buffer,
    pub(crate) up: wgpu::Buffer,
    pub(crate) hact: wgpu::Buffer,
    /// SubLN's normed inputs of o_proj and down_proj and their 1/rms (batches for SubLN models).
    pub(crate) sub: Option<SubActs>,
}

pub(crate) struct SubActs {
    pub(crate) att_n: wgpu::Buffer,
    pub(crate) rstd_att: wgpu::Buffer,
    pub(crate) h_n: wgpu::Buffer,
    pub(crate) rstd_h: wgpu::Buffer,
}

/// Activations kept for the backward pass, and the backward's working buffers.
pub(crate) struct Acts {
    /// The residual stream entering each layer, and after the last.
    pub(crate) x: Vec<wgpu::Buffer>,
    pub(crate) layers: Vec<LayerActs>,
    pub(crate) rstdf: wgpu::Buffer,
    pub(crate) nf: wgpu::Buffer,
    pub(crate) logits: wgpu::Buffer,
    pub(crate) lse: wgpu::Buffer,
    pub(crate) kd_stats: wgpu::Buffer,
    pub(crate) dlogits: wgpu::Buffer,
    pub(crate) dx: wgpu::Buffer,
    pub(crate) dn: wgpu::Buffer,
    pub(crate) tmp_h: wgpu::Buffer,
    pub(crate) dh: wgpu::Buffer,
    pub(crate) dgate: wgpu::Buffer,
    pub(crate) dup: wgpu::Buffer,
    pub(crate) d_o: wgpu::Buffer,
    pub(crate) datt: wgpu::Buffer,
    pub(crate) dqr: wgpu::Buffer,
    pub(crate) dq: wgpu::Buffer,
    pub(crate) dkv: wgpu::Buffer,
    pub(crate) dkr: wgpu::Buffer,
    pub(crate) dk: wgpu::Buffer,
    pub(crate) dv: wgpu::Buffer,
    /// W1.58A8: a projection's input rounded to 8 bits, rows of the widest input (computed again
    /// for each projection, forward and backward).
    pub(crate) act_q: Option<wgpu::Buffer>,
}

/// One batch of equal-length token sequences on the GPU, with its targets, RoPE tables and every
/// buffer a forward and backward pass over it needs.
pub struct Batch {
    pub b: u32,
    pub t: u32,
    pub ids: wgpu::Buffer,
    pub targets: wgpu::Buffer,
    pub n_valid: u32,
    /// The loss (and so every gradient) is divided by this: `n_valid` for a batch on its own, the
    /// trained positions of every micro-batch of an optimizer step under gradient accumulation.
    pub loss_divisor: u32,
    pub(crate) cos: wgpu::Buffer,
    pub(crate) sin: wgpu::Buffer,
    /// Loss per row, each already divided by `loss_divisor`: their sum is the mean loss.
    pub loss: wgpu::Buffer,
    /// The distillation term's loss per row, when a pass has both it and the cross-entropy.
    pub kd_loss: wgpu::Buffer,
    pub(crate) acts: Acts,
}

impl Batch {
    /// `tokens` (B sequences of T ids) and `targets` (B·T, −1 where not trained on), for a model
    /// without SubLN (else [`crate::model::GpuModel::batch`]).
    pub fn new(
        gpu: &Gpu,
        cfg: &ModelConfig,
        tokens: &[Vec<u32>],
        targets: &[i32],
    ) -> Result<Batch, GpuError> {
        Self::alloc(gpu, cfg, tokens, targets, false, false)
    }

    pub(crate) fn alloc(
        gpu: &Gpu,
        cfg: &ModelConfig,
        tokens: &[Vec<u32>],
        targets: &[i32],
        subln: bool,
        act8: bool,
    ) -> Result<Batch, GpuError> {
        let b = tokens.len();
        let t = tokens.first().map_or(0, Vec::len);
        let bad = GpuError::Input;
        if b == 0 || t == 0 || tokens.iter().any(|s| s.len() != t) {
            return Err(bad(
                "a batch needs one or more token sequences of one equal, non-zero length".into(),
            ));
        }
        if targets.len() != b * t {
            return Err(bad(format!(
                "{} targets for {} tokens",
                targets.len(),
                b * t
            )));
        }
        if let Some(&id) = tokens
            .iter()
            .flatten()
            .find(|&&id| id as usize >= cfg.vocab_size)
        {
            return Err(bad(format!(
                "token id {id} is outside the model's vocabulary of {} ids",
                cfg.vocab_size
            )));
        }
        let n = b * t;
        let (h, inter, vocab) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let (qd, kvd) = (
            cfg.num_attention_heads * cfg.head_dim,
            cfg.num_key_value_heads * cfg.head_dim,
        );
        let f = |name: &str, len: usize| gpu.storage(name, 4 * len as u64);
        let ids: Vec<u32> = tokens.iter().flatten().copied().collect();
        let n_valid = targets.iter().filter(|&&x| x >= 0).count() as u32;
        let (cos, sin) = rope_tables_of(t, &cfg.rope());
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for _ in 0..cfg.num_hidden_layers {
            layers.push(LayerActs {
                rstd1: f("rstd1", n)?,
                n1: f("n1", n * h)?,
                q: f("q", n * qd)?,
                k: f("k", n * kvd)?,
                v: f("v", n * kvd)?,
                qr: f("q rope", n * qd)?,
                kr: f("k rope", n * kvd)?,
                att: f("attention", n * qd)?,
                astats: f("attention stats", 2 * n * cfg.num_attention_heads)?,
                o_out: f("o_proj out", n * h)?,
                rstd_post: f("rstd post-attn", n)?,
                o_normed: f("o normed", n * h)?,
                x_mid: f("x mid", n * h)?,
                rstd2: f("rstd2", n)?,
                n2: f("n2", n * h)?,
                gate: f("gate", n * inter)?,
                up: f("up", n * inter)?,
                hact: f("swiglu", n * inter)?,
                sub: if subln {
                    Some(SubActs {
                        att_n: f("attention subln", n * qd)?,
                        rstd_att: f("rstd attention subln", n)?,
                        h_n: f("swiglu subln", n * inter)?,
                        rstd_h: f("rstd swiglu subln", n)?,
                    })
                } else {
                    None
                },
            });
        }
        let acts = Acts {
            x: (0..=cfg.num_hidden_layers)
                .map(|_| f("residual", n * h))
                .collect::<Result<_, _>>()?,
            layers,
            rstdf: f("rstd final", n)?,
            nf: f("final norm", n * h)?,
            logits: f("logits", n * vocab)?,
            lse: f("lse", n)?,
            kd_stats: f("kd stats", 2 * n)?,
            dlogits: f("dlogits", n * vocab)?,
            dx: f("d residual", n * h)?,
            dn: f("d norm", n * h)?,
            tmp_h: f("tmp hidden", n * h)?,
            dh: f("d swiglu", n * inter)?,
            dgate: f("d gate", n * inter)?,
            dup: f("d up", n * inter)?,
            d_o: f("d o_proj", n * h)?,
            datt: f("d attention", n * qd)?,
            dqr: f("dq rope", n * qd)?,
            dq: f("dq", n * qd)?,
            dkv: f("dkv", 2 * n * kvd)?,
            dkr: f("dk rope", n * kvd)?,
            dk: f("dk", n * kvd)?,
            dv: f("dv", n * kvd)?,
            act_q: if act8 {
                Some(f("8-bit activations", n * h.max(qd).max(inter))?)
            } else {
                None
            },
        };
        Ok(Batch {
            b: b as u32,
            t: t as u32,
            ids: gpu.upload("token ids", bytemuck::cast_slice(&ids))?,
            targets: gpu.upload("targets", bytemuck::cast_slice(targets))?,
            n_valid,
            loss_divisor: n_valid.max(1),
            cos: gpu.upload_f32("rope cos", &cos)?,
            sin: gpu.upload_f32("rope sin", &sin)?,
            loss: f("loss", n)?,
            kd_loss: f("kd loss", n)?,
            acts,
        })
    }

    /// The logits (B·T, V) of the last forward pass.
    pub fn logits(&self) -> &wgpu::Buffer {
        &self.acts.logits
    }
}
