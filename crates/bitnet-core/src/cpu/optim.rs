//! CPU reference of shaders/optim.wgsl: global gradient norm with clipping, and AdamW (PyTorch's
//! formula: decoupled weight decay, bias-corrected moments).

/// √(Σ g²) over all gradients, and the clip coefficient min(1, max_norm / (norm + 1e-6)).
pub fn grad_norm(grads: &[&[f32]], max_norm: f32) -> (f32, f32) {
    let ss: f64 = grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|&x| (x as f64).powi(2))
        .sum();
    let norm = ss.sqrt() as f32;
    (norm, (max_norm / (norm + 1e-6)).min(1.0))
}

#[derive(Debug, Clone, Copy)]
pub struct AdamW {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl AdamW {
    /// One step (1-based `step`) on p with gradient g·clip; updates m and v.
    pub fn step(
        &self,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        step: u32,
        clip: f32,
    ) {
        let bc1 = 1.0 - (self.beta1 as f64).powi(step as i32);
        let bc2 = 1.0 - (self.beta2 as f64).powi(step as i32);
        for i in 0..p.len() {
            let gi = g[i] as f64 * clip as f64;
            let mi = self.beta1 as f64 * m[i] as f64 + (1.0 - self.beta1 as f64) * gi;
            let vi = self.beta2 as f64 * v[i] as f64 + (1.0 - self.beta2 as f64) * gi * gi;
            m[i] = mi as f32;
            v[i] = vi as f32;
            let mut pi = p[i] as f64 * (1.0 - self.lr as f64 * self.weight_decay as f64);
            pi -= self.lr as f64 * (mi / bc1) / ((vi / bc2).sqrt() + self.eps as f64);
            p[i] = pi as f32;
        }
    }
}

/// W1.58A8 activation quantization: per row (token) absmax to [−128, 127] and back.
pub fn act_quant8(x: &[f32], c: usize) -> Vec<f32> {
    x.chunks(c)
        .flat_map(|row| {
            let amax = row.iter().fold(0f32, |a, &b| a.max(b.abs())).max(1e-5);
            let s = 127.0 / amax;
            row.iter()
                .map(move |&v| (v * s).round_ties_even().clamp(-128.0, 127.0) / s)
                .collect::<Vec<_>>()
        })
        .collect()
}
