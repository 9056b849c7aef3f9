//! CPU reference of shaders/xent.wgsl: mean cross-entropy of logits (T, V) against targets, where a
//! negative target is masked out (like PyTorch's ignore_index).

/// Returns (mean loss over unmasked rows, logsumexp per row).
pub fn xent_forward(logits: &[f32], targets: &[i32], v: usize) -> (f32, Vec<f32>) {
    let n_valid = targets.iter().filter(|&&t| t >= 0).count().max(1);
    let mut loss = 0f64;
    let mut lse = Vec::with_capacity(targets.len());
    for (r, &t) in targets.iter().enumerate() {
        let row = &logits[r * v..(r + 1) * v];
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
        let s: f64 = row.iter().map(|&x| (x as f64 - m).exp()).sum();
        let l = m + s.ln();
        lse.push(l as f32);
        if t >= 0 {
            loss += l - row[t as usize] as f64;
        }
    }
    ((loss / n_valid as f64) as f32, lse)
}

/// dlogits (T, V) = (softmax − onehot(target)) / n_valid on unmasked rows, 0 on masked rows.
pub fn xent_backward(logits: &[f32], targets: &[i32], lse: &[f32], v: usize) -> Vec<f32> {
    let n_valid = targets.iter().filter(|&&t| t >= 0).count().max(1) as f64;
    let mut d = vec![0f32; logits.len()];
    for (r, &t) in targets.iter().enumerate() {
        if t < 0 {
            continue;
        }
        for j in 0..v {
            let p = (logits[r * v + j] as f64 - lse[r] as f64).exp();
            let onehot = if j == t as usize { 1.0 } else { 0.0 };
            d[r * v + j] = ((p - onehot) / n_valid) as f32;
        }
    }
    d
}
