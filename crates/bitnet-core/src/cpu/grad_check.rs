//! Finite-difference checks (central differences, f64 losses) of every backward reference against
//! its forward: L = Σ forward(x)·g for a fixed random upstream g, so dL/dx is the backward of g.

use super::attention::{AttnShape, attention_backward, attention_forward};
use super::embedding::{embedding_backward, embedding_forward};
use super::kl::{kl_backward, kl_forward};
use super::norm::{rmsnorm_backward, rmsnorm_forward};
use super::rope::{rope, rope_tables};
use super::swiglu::{swiglu_backward, swiglu_forward};
use super::xent::{xent_backward, xent_forward};

fn vals(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i + seed) * 7919 % 211) as f32 / 211.0 - 0.5) * 1.5)
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
}

/// Asserts analytic gradient `grad` of `loss` at `x`.
fn check(name: &str, x: &[f32], grad: &[f32], loss: &dyn Fn(&[f32]) -> f64) {
    let eps = 1e-3f32;
    for i in 0..x.len() {
        let (mut p, mut m) = (x.to_vec(), x.to_vec());
        p[i] += eps;
        m[i] -= eps;
        let fd = (loss(&p) - loss(&m)) / (2.0 * eps as f64);
        let a = grad[i] as f64;
        assert!(
            (a - fd).abs() <= 2e-3 + 1e-2 * fd.abs(),
            "{name}[{i}]: analytic {a}, finite difference {fd}"
        );
    }
}

#[test]
fn rmsnorm() {
    let c = 6;
    let x = vals(3 * c, 1);
    let g: Vec<f32> = vals(c, 2).iter().map(|v| 1.0 + v).collect();
    let up = vals(3 * c, 3);
    let (_, rstd) = rmsnorm_forward(&x, &g, 1e-5, c);
    let (dx, dg) = rmsnorm_backward(&x, &g, &rstd, &up, c);
    check("rmsnorm dx", &x, &dx, &|x| {
        dot(&rmsnorm_forward(x, &g, 1e-5, c).0, &up)
    });
    check("rmsnorm dg", &g, &dg, &|g| {
        dot(&rmsnorm_forward(&x, g, 1e-5, c).0, &up)
    });
}

#[test]
fn rope_backward_is_the_transpose() {
    let (b, t, h, d) = (1, 3, 2, 8);
    let (cos, sin) = rope_tables(10, d, 10000.0);
    let x = vals(b * t * h * d, 4);
    let up = vals(b * t * h * d, 5);
    let dx = rope(&up, &cos, &sin, b, t, h, d, 2, true);
    check("rope dx", &x, &dx, &|x| {
        dot(&rope(x, &cos, &sin, b, t, h, d, 2, false), &up)
    });
}

#[test]
fn swiglu() {
    let (a, u, up) = (vals(10, 6), vals(10, 7), vals(10, 8));
    let (da, du) = swiglu_backward(&a, &u, &up);
    check("swiglu dgate", &a, &da, &|a| {
        dot(&swiglu_forward(a, &u), &up)
    });
    check("swiglu dup", &u, &du, &|u| dot(&swiglu_forward(&a, u), &up));
}

#[test]
fn embedding() {
    let (v, c) = (5, 3);
    let table = vals(v * c, 9);
    let ids = [3u32, 1, 3, 0];
    let up = vals(ids.len() * c, 10);
    let mut de = vec![0f32; v * c];
    embedding_backward(&mut de, &ids, &up, c);
    check("embedding dE", &table, &de, &|t| {
        dot(&embedding_forward(t, &ids, c), &up)
    });
}

#[test]
fn cross_entropy_with_mask() {
    let v = 7;
    let logits = vals(4 * v, 11);
    let targets = [2, -1, 6, 0];
    let (_, lse) = xent_forward(&logits, &targets, v);
    let d = xent_backward(&logits, &targets, &lse, v);
    check("xent dlogits", &logits, &d, &|l| {
        xent_forward(l, &targets, v).0 as f64
    });
    assert!(
        d[v..2 * v].iter().all(|&x| x == 0.0),
        "masked row has no gradient"
    );
}

#[test]
fn attention_gqa() {
    let s = AttnShape {
        b: 1,
        t: 4,
        hq: 4,
        hkv: 2,
        d: 3,
    };
    let (q, k, v) = (
        vals(s.t * s.hq * s.d, 12),
        vals(s.t * s.hkv * s.d, 13),
        vals(s.t * s.hkv * s.d, 14),
    );
    let up = vals(q.len(), 15);
    let (out, lse) = attention_forward(&s, &q, &k, &v);
    let (dq, dk, dv) = attention_backward(&s, &q, &k, &v, &out, &lse, &up);
    check("attention dq", &q, &dq, &|q| {
        dot(&attention_forward(&s, q, &k, &v).0, &up)
    });
    check("attention dk", &k, &dk, &|k| {
        dot(&attention_forward(&s, &q, k, &v).0, &up)
    });
    check("attention dv", &v, &dv, &|v| {
        dot(&attention_forward(&s, &q, &k, v).0, &up)
    });
}

#[test]
fn kl_distillation() {
    let v = 5;
    let student = vals(3 * v, 4);
    let teacher = vals(3 * v, 9);
    let targets = [2, -100, 0];
    for temperature in [1.0f32, 2.5] {
        let d = kl_backward(&student, &teacher, &targets, v, temperature, 0.7);
        check("kl dstudent", &student, &d, &|s| {
            kl_forward(s, &teacher, &targets, v, temperature, 0.7) as f64
        });
    }
}
