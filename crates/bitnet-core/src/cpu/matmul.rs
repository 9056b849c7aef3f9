//! CPU reference of shaders/matmul.wgsl: the general product C (M, N) = A'(M, K)·B'(K, N) and the
//! linear layer built from it (forward, input gradient, weight gradient, bias gradient).

/// Operand layout flags, as in the shader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// A is stored (K, M).
    pub trans_a: bool,
    /// B is stored (N, K).
    pub trans_b: bool,
}

/// C = A'·B' with f64 accumulation.
pub fn gemm(g: &Gemm, a: &[f32], b: &[f32]) -> Vec<f32> {
    let mut c = vec![0f32; g.m * g.n];
    for i in 0..g.m {
        for j in 0..g.n {
            let mut acc = 0f64;
            for q in 0..g.k {
                let av = if g.trans_a {
                    a[q * g.m + i]
                } else {
                    a[i * g.k + q]
                };
                let bv = if g.trans_b {
                    b[j * g.k + q]
                } else {
                    b[q * g.n + j]
                };
                acc += av as f64 * bv as f64;
            }
            c[i * g.n + j] = acc as f32;
        }
    }
    c
}

/// y (rows, out) = scale · x (rows, in) · qᵀ + b for a ternary W = scale·q stored in the GPU
/// layout (`pack::gpu_words`): the reference of the packed-weight kernels, which read the codes
/// and apply the scale once per output.
pub fn ternary_linear_forward(
    x: &[f32],
    words: &[u32],
    scale: f32,
    bias: Option<&[f32]>,
    rows: usize,
    inp: usize,
    out: usize,
) -> Vec<f32> {
    let mut y = vec![0f32; rows * out];
    for r in 0..rows {
        for j in 0..out {
            let acc: f64 = (0..inp)
                .map(|k| x[r * inp + k] as f64 * crate::pack::gpu_code(words, inp, j, k) as f64)
                .sum();
            y[r * out + j] = (scale as f64 * acc) as f32 + bias.map_or(0.0, |b| b[j]);
        }
    }
    y
}

/// y (rows, out) = x (rows, in) · Wᵀ + b, with W (out, in).
pub fn linear_forward(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    rows: usize,
    inp: usize,
    out: usize,
) -> Vec<f32> {
    let mut y = gemm(
        &Gemm {
            m: rows,
            n: out,
            k: inp,
            trans_a: false,
            trans_b: true,
        },
        x,
        w,
    );
    if let Some(b) = bias {
        for r in 0..rows {
            for j in 0..out {
                y[r * out + j] += b[j];
            }
        }
    }
    y
}

/// dX (rows, in) = dY (rows, out) · W (out, in).
pub fn linear_backward_input(
    dy: &[f32],
    w: &[f32],
    rows: usize,
    inp: usize,
    out: usize,
) -> Vec<f32> {
    gemm(
        &Gemm {
            m: rows,
            n: inp,
            k: out,
            trans_a: false,
            trans_b: false,
        },
        dy,
        w,
    )
}

/// dW (out, in) = dYᵀ · X.
pub fn linear_backward_weight(
    dy: &[f32],
    x: &[f32],
    rows: usize,
    inp: usize,
    out: usize,
) -> Vec<f32> {
    gemm(
        &Gemm {
            m: out,
            n: inp,
            k: rows,
            trans_a: true,
            trans_b: false,
        },
        dy,
        x,
    )
}

/// db (out,) = Σ_rows dY.
pub fn linear_backward_bias(dy: &[f32], rows: usize, out: usize) -> Vec<f32> {
    (0..out)
        .map(|j| (0..rows).map(|r| dy[r * out + j] as f64).sum::<f64>() as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finite differences (f64) of L = Σ y·g for a random upstream gradient g.
    #[test]
    fn backward_matches_finite_differences() {
        let (rows, inp, out) = (3, 4, 5);
        let f = |i: usize| ((i * 7919 % 97) as f32 / 97.0) - 0.5;
        let x: Vec<f32> = (0..rows * inp).map(f).collect();
        let w: Vec<f32> = (0..out * inp).map(|i| f(i + 11)).collect();
        let b: Vec<f32> = (0..out).map(|i| f(i + 31)).collect();
        let g: Vec<f32> = (0..rows * out).map(|i| f(i + 53)).collect();
        let loss = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
            linear_forward(x, w, Some(b), rows, inp, out)
                .iter()
                .zip(&g)
                .map(|(y, g)| *y as f64 * *g as f64)
                .sum()
        };
        let eps = 1e-2f32;
        let fd = |v: &[f32], i: usize, eval: &dyn Fn(&[f32]) -> f64| {
            let (mut p, mut m) = (v.to_vec(), v.to_vec());
            p[i] += eps;
            m[i] -= eps;
            ((eval(&p) - eval(&m)) / (2.0 * eps as f64)) as f32
        };
        let dx = linear_backward_input(&g, &w, rows, inp, out);
        let dw = linear_backward_weight(&g, &x, rows, inp, out);
        let db = linear_backward_bias(&g, rows, out);
        for i in 0..x.len() {
            assert!(
                (dx[i] - fd(&x, i, &|v| loss(v, &w, &b))).abs() < 1e-3,
                "dx[{i}]"
            );
        }
        for i in 0..w.len() {
            assert!(
                (dw[i] - fd(&w, i, &|v| loss(&x, v, &b))).abs() < 1e-3,
                "dw[{i}]"
            );
        }
        for i in 0..b.len() {
            assert!(
                (db[i] - fd(&b, i, &|v| loss(&x, &w, v))).abs() < 1e-3,
                "db[{i}]"
            );
        }
    }
}
