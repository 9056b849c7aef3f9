//! CPU reference of shaders/swiglu.wgsl: h = silu(gate) · up, elementwise.

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

pub fn swiglu_forward(gate: &[f32], up: &[f32]) -> Vec<f32> {
    gate.iter()
        .zip(up)
        .map(|(&a, &u)| (a as f64 * sigmoid(a as f64) * u as f64) as f32)
        .collect()
}

/// Returns (dgate, dup).
pub fn swiglu_backward(gate: &[f32], up: &[f32], dh: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut dg = Vec::with_capacity(gate.len());
    let mut du = Vec::with_capacity(gate.len());
    for ((&a, &u), &d) in gate.iter().zip(up).zip(dh) {
        let (a, u, d) = (a as f64, u as f64, d as f64);
        let s = sigmoid(a);
        dg.push((d * u * s * (1.0 + a * (1.0 - s))) as f32);
        du.push((d * a * s) as f32);
    }
    (dg, du)
}
