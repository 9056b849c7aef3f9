//! One optimizer step on the GPU (DESIGN.md §2): the global gradient norm over every parameter and
//! its clip coefficient (both stay on the GPU), then AdamW with bias correction and decoupled weight
//! decay on every parameter of a [`GpuModel`]. The moments live in GPU buffers beside the weights.

use std::collections::BTreeMap;

use crate::device::Gpu;
use crate::error::GpuError;
use crate::kernels::AdamStep;
use crate::model::GpuModel;
use crate::ops::Op;

/// AdamW and clipping settings: the seed's Hugging Face Trainer defaults.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// Gradients are scaled so that their global L2 norm is at most this.
    pub max_grad_norm: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
        }
    }
}

pub struct Optimizer {
    pub config: AdamConfig,
    /// First and second moments per parameter, by name.
    moments: BTreeMap<String, (wgpu::Buffer, wgpu::Buffer)>,
    partials: wgpu::Buffer,
    /// Σg² per parameter, then the global norm and the clip coefficient.
    norm: wgpu::Buffer,
}

impl Optimizer {
    pub fn new(gpu: &Gpu, model: &GpuModel, config: AdamConfig) -> Result<Optimizer, GpuError> {
        let mut moments = BTreeMap::new();
        for name in &model.names {
            let bytes = 4 * model.numel(name) as u64;
            let m = gpu.storage(&format!("adam m {name}"), bytes)?;
            let v = gpu.storage(&format!("adam v {name}"), bytes)?;
            moments.insert(name.clone(), (m, v));
        }
        let (partials, norm) = gpu.norm_buffers(model.names.len() as u32)?;
        Ok(Optimizer {
            config,
            moments,
            partials,
            norm,
        })
    }

    /// The moment buffers of `name` (for checkpoints).
    pub fn moments(&self, name: &str) -> Option<&(wgpu::Buffer, wgpu::Buffer)> {
        self.moments.get(name)
    }

    /// The buffer whose element `n_params` is the last step's global gradient norm (before clipping).
    pub fn norm_buffer(&self) -> &wgpu::Buffer {
        &self.norm
    }

    /// Ops of optimizer step `step` (1-based) at learning rate `lr`, from the accumulated gradients.
    pub fn step_ops(&self, gpu: &Gpu, model: &GpuModel, step: u32, lr: f32) -> Vec<Op> {
        let mut ops = self.grad_norm_ops(gpu, model);
        ops.extend(self.update_ops(gpu, model, step, lr, &|_| false));
        ops
    }

    /// Ops computing the global gradient norm and the clip coefficient.
    pub fn grad_norm_ops(&self, gpu: &Gpu, model: &GpuModel) -> Vec<Op> {
        let slots = model.names.len() as u32;
        let mut ops = Vec::new();
        for (slot, name) in model.names.iter().enumerate() {
            let (Some(grad), n) = (model.grad(name), model.numel(name) as u32) else {
                continue;
            };
            ops.extend(gpu.grad_sumsq(n, slot as u32, slots, grad, &self.partials, &self.norm));
        }
        ops.push(gpu.clip_finish(slots, self.config.max_grad_norm, &self.norm));
        ops
    }

    /// The global gradient norm that [`Optimizer::grad_norm_ops`] computed.
    pub async fn read_grad_norm(&self, gpu: &Gpu, model: &GpuModel) -> Result<f32, GpuError> {
        let slots = model.names.len();
        Ok(gpu.read_f32("grad norm", &self.norm, slots + 1).await?[slots])
    }

    /// AdamW on every parameter but the `frozen` ones, with the clip coefficient of
    /// [`Optimizer::grad_norm_ops`].
    pub fn update_ops(
        &self,
        gpu: &Gpu,
        model: &GpuModel,
        step: u32,
        lr: f32,
        frozen: &dyn Fn(&str) -> bool,
    ) -> Vec<Op> {
        let slots = model.names.len() as u32;
        let c = &self.config;
        let s = AdamStep {
            lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
            step,
        };
        let mut ops = Vec::new();
        for name in model.names.iter().filter(|n| !frozen(n)) {
            let (Some(grad), Some(param), Some((m, v))) =
                (model.grad(name), model.buffer(name), self.moments.get(name))
            else {
                continue;
            };
            let n = model.numel(name) as u32;
            ops.push(gpu.adamw(n, &s, slots, true, grad, param, m, v, &self.norm));
        }
        ops
    }
}
