//! CPU reference of shaders/embedding.wgsl: row gather and its scatter-add gradient.

/// y (T, C) = E[ids[t], :]. Ids must be < V (checked by the caller).
pub fn embedding_forward(table: &[f32], ids: &[u32], c: usize) -> Vec<f32> {
    ids.iter()
        .flat_map(|&i| table[i as usize * c..(i as usize + 1) * c].iter().copied())
        .collect()
}

/// dE (V, C) += Σ_{t: ids[t] = v} dy[t, :], summed in token order.
pub fn embedding_backward(de: &mut [f32], ids: &[u32], dy: &[f32], c: usize) {
    for (t, &i) in ids.iter().enumerate() {
        for k in 0..c {
            de[i as usize * c + k] += dy[t * c + k];
        }
    }
}
