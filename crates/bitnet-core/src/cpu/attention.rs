//! CPU reference of shaders/attention.wgsl: causal self-attention with grouped-query heads.
//! q (B, T, Hq, D); k, v (B, T, Hkv, D); Hkv divides Hq; query head h reads kv head h / (Hq/Hkv);
//! scale 1/√D; out (B, T, Hq, D) and the log-sum-exp of every query row (B, Hq, T) for backward.

#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    pub b: usize,
    pub t: usize,
    pub hq: usize,
    pub hkv: usize,
    pub d: usize,
}

impl AttnShape {
    fn qi(&self, b: usize, t: usize, h: usize) -> usize {
        ((b * self.t + t) * self.hq + h) * self.d
    }
    fn ki(&self, b: usize, t: usize, h: usize) -> usize {
        ((b * self.t + t) * self.hkv + h) * self.d
    }
    fn scale(&self) -> f64 {
        1.0 / (self.d as f64).sqrt()
    }
    fn dot(&self, a: &[f32], ia: usize, b: &[f32], ib: usize) -> f64 {
        (0..self.d)
            .map(|x| a[ia + x] as f64 * b[ib + x] as f64)
            .sum()
    }
}

/// Returns (out, lse).
pub fn attention_forward(s: &AttnShape, q: &[f32], k: &[f32], v: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let g = s.hq / s.hkv;
    let mut out = vec![0f32; q.len()];
    let mut lse = vec![0f32; s.b * s.hq * s.t];
    for b in 0..s.b {
        for h in 0..s.hq {
            for i in 0..s.t {
                let qi = s.qi(b, i, h);
                let scores: Vec<f64> = (0..=i)
                    .map(|j| s.dot(q, qi, k, s.ki(b, j, h / g)) * s.scale())
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = scores.iter().map(|x| (x - m).exp()).sum();
                lse[(b * s.hq + h) * s.t + i] = (m + z.ln()) as f32;
                for x in 0..s.d {
                    let acc: f64 = (0..=i)
                        .map(|j| (scores[j] - m).exp() / z * v[s.ki(b, j, h / g) + x] as f64)
                        .sum();
                    out[qi + x] = acc as f32;
                }
            }
        }
    }
    (out, lse)
}

/// Returns (dq, dk, dv) for upstream dout.
pub fn attention_backward(
    s: &AttnShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    lse: &[f32],
    dout: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let g = s.hq / s.hkv;
    let mut dq = vec![0f64; q.len()];
    let mut dk = vec![0f64; k.len()];
    let mut dv = vec![0f64; v.len()];
    for b in 0..s.b {
        for h in 0..s.hq {
            let hk = h / g;
            for i in 0..s.t {
                let qi = s.qi(b, i, h);
                let l = lse[(b * s.hq + h) * s.t + i] as f64;
                let dsum = s.dot(dout, qi, out, qi);
                for j in 0..=i {
                    let kj = s.ki(b, j, hk);
                    let p = (s.dot(q, qi, k, kj) * s.scale() - l).exp();
                    let dp = s.dot(dout, qi, v, kj);
                    let ds = p * (dp - dsum) * s.scale();
                    for x in 0..s.d {
                        dq[qi + x] += ds * k[kj + x] as f64;
                        dk[kj + x] += ds * q[qi + x] as f64;
                        dv[kj + x] += p * dout[qi + x] as f64;
                    }
                }
            }
        }
    }
    let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
    (f(dq), f(dk), f(dv))
}
