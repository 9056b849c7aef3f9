// Distillation from a teacher's top K tokens: KL(q ‖ p_student) at temperature T per row, q the
// teacher's K probabilities p_k (at temperature 1, from topk.wgsl or a soft-label sidecar)
// renormalized at T: ln q_k = ln(p_k)/T − lse_q, lse_q = logsumexp_k(ln(p_k)/T); a p_k of 0
// counts for nothing. Rows with a negative target are masked, as in kl.wgsl.
//   forward   one workgroup per row: lse_s = logsumexp(s/T) over the vocabulary;
//             loss_row = weight · Σ_k q_k (ln q_k − (s_id_k/T − lse_s)) / n_valid;
//             stats[2r] = lse_s, stats[2r+1] = lse_q
//   backward  one invocation per logit: weight · exp(s_j/T − lse_s) / (T · n_valid), written
//             (accumulate = 0) or added (accumulate = 1) — the dense half of (p_s − q)
//   scatter   one invocation per (row, k), after backward: −weight · q_k / (T · n_valid) added at
//             id_k (a row's ids are distinct, so no two invocations touch one logit)
// CPU reference: bitnet_core::cpu::kl::{kl_topk_forward, kl_topk_backward}.

struct Params {
    rows: u32,
    vocab: u32,
    k: u32,
    accumulate: u32,
    n_valid: f32,
    inv_temp: f32,
    weight: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> student: array<f32>;      // (rows, V)
@group(0) @binding(2) var<storage, read> ids: array<u32>;          // (rows, K)
@group(0) @binding(3) var<storage, read> probs: array<f32>;        // (rows, K)
@group(0) @binding(4) var<storage, read> targets: array<i32>;      // (rows,), < 0: masked
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;  // (rows, 2): lse_s, lse_q
@group(0) @binding(6) var<storage, read_write> loss: array<f32>;   // (rows,)
@group(0) @binding(7) var<storage, read_write> dlogits: array<f32>; // (rows, V)

// WG, red and reduce(): reduce.wgsl, prepended.

const LOWEST: f32 = -3.402823e38;

// ln(p)/T, or LOWEST for p = 0.
fn log_t(prob: f32) -> f32 {
    if (prob > 0.0) { return log(prob) * p.inv_temp; }
    return LOWEST;
}

@compute @workgroup_size(256)
fn forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = wid.x + wid.y * nwg.x;
    if (r >= p.rows) { return; }
    let o = r * p.vocab;
    let ok = r * p.k;
    var ms = LOWEST;
    for (var j = lid.x; j < p.vocab; j = j + WG) {
        ms = max(ms, student[o + j] * p.inv_temp);
    }
    var mq = LOWEST;
    for (var i = lid.x; i < p.k; i = i + WG) {
        mq = max(mq, log_t(probs[ok + i]));
    }
    let max_s = reduce(lid.x, ms, true);
    let max_q = reduce(lid.x, mq, true);
    var ss = 0.0;
    for (var j = lid.x; j < p.vocab; j = j + WG) {
        ss = ss + exp(student[o + j] * p.inv_temp - max_s);
    }
    var sq = 0.0;
    for (var i = lid.x; i < p.k; i = i + WG) {
        if (probs[ok + i] > 0.0) { sq = sq + exp(log_t(probs[ok + i]) - max_q); }
    }
    let lse_s = max_s + log(reduce(lid.x, ss, false));
    let lse_q = max_q + log(reduce(lid.x, sq, false));
    var kl = 0.0;
    for (var i = lid.x; i < p.k; i = i + WG) {
        if (probs[ok + i] > 0.0) {
            let lq = log_t(probs[ok + i]) - lse_q;
            let ls = student[o + ids[ok + i]] * p.inv_temp - lse_s;
            kl = kl + exp(lq) * (lq - ls);
        }
    }
    let total = reduce(lid.x, kl, false);
    if (lid.x == 0u) {
        stats[2u * r] = lse_s;
        stats[2u * r + 1u] = lse_q;
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
        g = p.weight * exp(student[idx] * p.inv_temp - stats[2u * r]) * p.inv_temp / p.n_valid;
    }
    if (p.accumulate == 1u) {
        dlogits[idx] = dlogits[idx] + g;
    } else {
        dlogits[idx] = g;
    }
}

@compute @workgroup_size(256)
fn scatter(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if (idx >= p.rows * p.k) { return; }
    let r = idx / p.k;
    if (targets[r] < 0 || probs[idx] <= 0.0) { return; }
    let q = exp(log_t(probs[idx]) - stats[2u * r + 1u]);
    let at = r * p.vocab + ids[idx];
    dlogits[at] = dlogits[at] - p.weight * q * p.inv_temp / p.n_valid;
}
