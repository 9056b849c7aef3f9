// Cross-entropy of logits (rows, V) against integer targets; a negative target masks its row out.
// Rows are independent, so a caller splits a large (T, V) logits matrix into row chunks that fit
// one binding (vocabularies of 152k and more); n_valid is the count of unmasked rows over all chunks.
//   forward   one workgroup per row: lse = max + log Σ exp(l − max); loss_row = (lse − l[target]) / n_valid
//   backward  one invocation per logit: (exp(l − lse) − [v = target]) / n_valid, 0 on masked rows
// The mean loss is the sum of loss_row over all rows. CPU reference: bitnet_core::cpu::xent.

struct Params {
    rows: u32,
    vocab: u32,
    n_valid: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;       // (rows, V)
@group(0) @binding(2) var<storage, read> targets: array<i32>;      // (rows,), < 0: masked
@group(0) @binding(3) var<storage, read_write> lse: array<f32>;    // (rows,)
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;   // (rows,) per-row share of the mean
@group(0) @binding(5) var<storage, read_write> dlogits: array<f32>; // (rows, V)

// WG, red and reduce(): reduce.wgsl, prepended.

@compute @workgroup_size(256)
fn forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = wid.x + wid.y * nwg.x;
    if (r >= p.rows) { return; }
    let o = r * p.vocab;
    var m = -3.402823e38;
    for (var j = lid.x; j < p.vocab; j = j + WG) {
        m = max(m, logits[o + j]);
    }
    let row_max = reduce(lid.x, m, true);
    var s = 0.0;
    for (var j = lid.x; j < p.vocab; j = j + WG) {
        s = s + exp(logits[o + j] - row_max);
    }
    let total = reduce(lid.x, s, false);
    if (lid.x == 0u) {
        let l = row_max + log(total);
        lse[r] = l;
        let t = targets[r];
        if (t >= 0 && u32(t) < p.vocab) {
            loss[r] = (l - logits[o + u32(t)]) / p.n_valid;
        } else {
            loss[r] = 0.0;
        }
    }
}

@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if (idx >= p.rows * p.vocab) { return; }
    let r = idx / p.vocab;
    let j = idx % p.vocab;
    let t = targets[r];
    if (t < 0) {
        dlogits[idx] = 0.0;
        return;
    }
    var g = exp(logits[idx] - lse[r]);
    if (u32(t) == j) {
        g = g - 1.0;
    }
    dlogits[idx] = g / p.n_valid;
}
