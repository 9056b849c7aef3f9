// Distillation: KL(p_teacher ‖ p_student) at temperature T, per row of student and teacher logits
// (rows, V); a negative target masks its row out (the same targets as the cross-entropy).
//   forward   one workgroup per row: lse_s = logsumexp(s/T), lse_t = logsumexp(t/T);
//             loss_row = weight · Σ_j p_t,j ((t_j/T − lse_t) − (s_j/T − lse_s)) / n_valid,
//             p_t,j = exp(t_j/T − lse_t); stats[2r] = lse_s, stats[2r+1] = lse_t
//   backward  one invocation per logit: weight · (exp(s_j/T − lse_s) − p_t,j) / (T · n_valid), written
//             (accumulate = 0) or added to what is there (accumulate = 1: the cross-entropy's share
//             is already in dlogits); masked rows get 0 or are left as they are.
// The mean KL is the sum of loss_row over all rows. CPU reference: bitnet_core::cpu::kl.

struct Params {
    rows: u32,
    vocab: u32,
    n_valid: f32,
    inv_temp: f32,
    weight: f32,
    accumulate: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> student: array<f32>;      // (rows, V)
@group(0) @binding(2) var<storage, read> teacher: array<f32>;      // (rows, V)
@group(0) @binding(3) var<storage, read> targets: array<i32>;      // (rows,), < 0: masked
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;  // (rows, 2): lse_s, lse_t
@group(0) @binding(5) var<storage, read_write> loss: array<f32>;   // (rows,) per-row share of the mean
@group(0) @binding(6) var<storage, read_write> dlogits: array<f32>; // (rows, V)

// WG, red and reduce(): reduce.wgsl, prepended.

@compute @workgroup_size(256)
fn forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = wid.x + wid.y * nwg.x;
    if (r >= p.rows) { return; }
    let o = r * p.vocab;
    var ms = -3.402823e38;
    var mt = -3.402823e38;
    for (var j = lid.x; j < p.vocab; j = j + WG) {
        ms = max(ms, student[o + j] * p.inv_temp);
        mt = max(mt, teacher[o + j] * p.inv_temp);
    }
    let max_s = reduce(lid.x, ms, true);
    let max_t = reduce(lid.x, mt, true);
    var ss = 0.0;
    var st = 0.0;
    for (var j = lid.x; j < p.vocab; j = j + WG) {
        ss = ss + exp(student[o + j] * p.inv_temp - max_s);
        st = st + exp(teacher[o + j] * p.inv_temp - max_t);
    }
    let lse_s = max_s + log(reduce(lid.x, ss, false));
    let lse_t = max_t + log(reduce(lid.x, st, false));
    var kl = 0.0;
    for (var j = lid.x; j < p.vocab; j = j + WG) {
        let log_t = teacher[o + j] * p.inv_temp - lse_t;
        let log_s = student[o + j] * p.inv_temp - lse_s;
        kl = kl + exp(log_t) * (log_t - log_s);
    }
    let total = reduce(lid.x, kl, false);
    if (lid.x == 0u) {
        stats[2u * r] = lse_s;
        stats[2u * r + 1u] = lse_t;
        if (targets[r] >= 0) {
            loss[r] = p.weight * total / p.n_valid;
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
    var g = 0.0;
    if (targets[r] >= 0) {
        let ps = exp(student[idx] * p.inv_temp - stats[2u * r]);
        let pt = exp(teacher[idx] * p.inv_temp - stats[2u * r + 1u]);
        g = p.weight * (ps - pt) * p.inv_temp / p.n_valid;
    }
    if (p.accumulate == 1u) {
        dlogits[idx] = dlogits[idx] + g;
    } else {
        dlogits[idx] = g;
    }
}
