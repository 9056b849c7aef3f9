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

/// Attention over a KV cache (shaders/decode.wgsl): one query per sequence, q (B, Hq, D); caches
/// kc, vc (B, cap, Hkv, D) holding rows 0..=pos[b] of sequence b. Returns out (B, Hq, D): the
/// softmax over keys 0..=pos[b] of scale·q·k, times v. Equals row pos[b] of [`attention_forward`]
/// over the same keys.
#[allow(clippy::too_many_arguments)]
pub fn decode_attention(
    hq: usize,
    hkv: usize,
    d: usize,
    cap: usize,
    q: &[f32],
    kc: &[f32],
    vc: &[f32],
    pos: &[u32],
) -> Vec<f32> {
    let g = hq / hkv;
    let scale = 1.0 / (d as f64).sqrt();
    let mut out = vec![0f32; pos.len() * hq * d];
    for (b, &p) in pos.iter().enumerate() {
        let n = p as usize + 1;
        for h in 0..hq {
            let qo = (b * hq + h) * d;
            let row = |j: usize| ((b * cap + j) * hkv + h / g) * d;
            let scores: Vec<f64> = (0..n)
                .map(|j| {
                    (0..d)
                        .map(|x| q[qo + x] as f64 * kc[row(j) + x] as f64)
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
            for x in 0..d {
                let acc: f64 = (0..n)
                    .map(|j| (scores[j] - m).exp() / z * vc[row(j) + x] as f64)
                    .sum();
                out[qo + x] = acc as f32;
            }
        }
    }
    out
}

/// Rotates x (B, H, D), row b at its own position pos[b] (decode.wgsl `rope_at`).
pub fn rope_at(x: &[f32], cos: &[f32], sin: &[f32], h: usize, d: usize, pos: &[u32]) -> Vec<f32> {
    let mut y = Vec::with_capacity(x.len());
    for (b, &p) in pos.iter().enumerate() {
        let row = &x[b * h * d..(b + 1) * h * d];
        y.extend(super::rope::rope(
            row, cos, sin, 1, 1, h, d, p as usize, false,
        ));
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cached single-query attention at position p is row p of full causal attention.
    #[test]
    fn decode_attention_is_the_last_row_of_causal_attention() {
        let s = AttnShape {
            b: 2,
            t: 5,
            hq: 4,
            hkv: 2,
            d: 4,
        };
        let val = |i: usize| ((i * 37 % 23) as f32 - 11.0) / 7.0;
        let q: Vec<f32> = (0..s.b * s.t * s.hq * s.d).map(val).collect();
        let k: Vec<f32> = (0..s.b * s.t * s.hkv * s.d).map(|i| val(i + 5)).collect();
        let v: Vec<f32> = (0..s.b * s.t * s.hkv * s.d).map(|i| val(i + 9)).collect();
        let (full, _) = attention_forward(&s, &q, &k, &v);
        // Sequence 0 at position 4, sequence 1 at position 2 (its cache rows 3, 4 ignored).
        let pos = [4u32, 2];
        let qrow: Vec<f32> = pos
            .iter()
            .enumerate()
            .flat_map(|(b, &p)| {
                q[s.qi(b, p as usize, 0)..s.qi(b, p as usize, 0) + s.hq * s.d].to_vec()
            })
            .collect();
        let got = decode_attention(s.hq, s.hkv, s.d, s.t, &qrow, &k, &v, &pos);
        for (b, &p) in pos.iter().enumerate() {
            let o = s.qi(b, p as usize, 0);
            for i in 0..s.hq * s.d {
                assert!((got[b * s.hq * s.d + i] - full[o + i]).abs() < 1e-6);
            }
        }
    }
}
