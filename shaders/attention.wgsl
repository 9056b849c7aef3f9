// Causal self-attention with grouped-query heads, streamed over keys (flash-style online softmax):
// no (T × T × heads) buffer exists, so sequence length is bounded only by time, not by bindings.
// q (B, T, Hq, D); k, v (B, T, Hkv, D); query head h reads kv head h / (Hq / Hkv); D ≤ 256.
//   forward       one invocation per query row: out, and lse (log Σ exp scores) into stats[.., 0]
//   backward_q    one invocation per query row: dsum = dO·O into stats[.., 1], and dq
//   backward_kv   one invocation per key row (after backward_q): dk and dv, summed over the query
//                 heads of its group and the queries that see it, recomputing p from lse
// stats is (B, Hq, T, 2): [lse, dsum]; dkv is (2, B, T, Hkv, D): dk then dv.
// CPU reference: bitnet_core::cpu::attention.

struct Params {
    b: u32,
    t: u32,
    hq: u32,
    hkv: u32,
    d: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}

const MAX_D: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;            // (B, T, Hq, D)
@group(0) @binding(2) var<storage, read> k: array<f32>;            // (B, T, Hkv, D)
@group(0) @binding(3) var<storage, read> v: array<f32>;            // (B, T, Hkv, D)
@group(0) @binding(4) var<storage, read_write> o: array<f32>;      // (B, T, Hq, D)
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;  // (B, Hq, T, 2)
@group(0) @binding(6) var<storage, read> dout: array<f32>;         // (B, T, Hq, D)
@group(0) @binding(7) var<storage, read_write> dq: array<f32>;     // (B, T, Hq, D)
@group(0) @binding(8) var<storage, read_write> dkv: array<f32>;    // (2, B, T, Hkv, D)

fn q_at(b: u32, t: u32, h: u32) -> u32 {
    return ((b * p.t + t) * p.hq + h) * p.d;
}

fn kv_at(b: u32, t: u32, h: u32) -> u32 {
    return ((b * p.t + t) * p.hkv + h) * p.d;
}

fn stat_at(b: u32, h: u32, t: u32) -> u32 {
    return ((b * p.hq + h) * p.t + t) * 2u;
}

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg); // over (b, h, i)
    if (idx >= p.b * p.hq * p.t) { return; }
    let i = idx % p.t;
    let h = (idx / p.t) % p.hq;
    let b = idx / (p.t * p.hq);
    let hk = h / (p.hq / p.hkv);
    let qi = q_at(b, i, h);
    var acc: array<f32, MAX_D>;
    for (var x = 0u; x < p.d; x = x + 1u) { acc[x] = 0.0; }
    var m = -3.402823e38;
    var l = 0.0;
    for (var j = 0u; j <= i; j = j + 1u) {
        let kj = kv_at(b, j, hk);
        var s = 0.0;
        for (var x = 0u; x < p.d; x = x + 1u) { s = s + q[qi + x] * k[kj + x]; }
        s = s * p.scale;
        let m_new = max(m, s);
        let corr = exp(m - m_new);
        let pj = exp(s - m_new);
        l = l * corr + pj;
        for (var x = 0u; x < p.d; x = x + 1u) { acc[x] = acc[x] * corr + pj * v[kj + x]; }
        m = m_new;
    }
    for (var x = 0u; x < p.d; x = x + 1u) { o[qi + x] = acc[x] / l; }
    stats[stat_at(b, h, i)] = m + log(l);
}

@compute @workgroup_size(64)
fn backward_q(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg);
    if (idx >= p.b * p.hq * p.t) { return; }
    let i = idx % p.t;
    let h = (idx / p.t) % p.hq;
    let b = idx / (p.t * p.hq);
    let hk = h / (p.hq / p.hkv);
    let qi = q_at(b, i, h);
    let st = stat_at(b, h, i);
    let lse = stats[st];
    var dsum = 0.0;
    for (var x = 0u; x < p.d; x = x + 1u) { dsum = dsum + dout[qi + x] * o[qi + x]; }
    stats[st + 1u] = dsum;
    var acc: array<f32, MAX_D>;
    for (var x = 0u; x < p.d; x = x + 1u) { acc[x] = 0.0; }
    for (var j = 0u; j <= i; j = j + 1u) {
        let kj = kv_at(b, j, hk);
        var s = 0.0;
        var dp = 0.0;
        for (var x = 0u; x < p.d; x = x + 1u) {
            s = s + q[qi + x] * k[kj + x];
            dp = dp + dout[qi + x] * v[kj + x];
        }
        let pj = exp(s * p.scale - lse);
        let ds = pj * (dp - dsum) * p.scale;
        for (var x = 0u; x < p.d; x = x + 1u) { acc[x] = acc[x] + ds * k[kj + x]; }
    }
    for (var x = 0u; x < p.d; x = x + 1u) { dq[qi + x] = acc[x]; }
}

@compute @workgroup_size(64)
fn backward_kv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg); // over (b, hk, j)
    if (idx >= p.b * p.hkv * p.t) { return; }
    let j = idx % p.t;
    let hk = (idx / p.t) % p.hkv;
    let b = idx / (p.t * p.hkv);
    let group = p.hq / p.hkv;
    let kj = kv_at(b, j, hk);
    var dk: array<f32, MAX_D>;
    var dv: array<f32, MAX_D>;
    for (var x = 0u; x < p.d; x = x + 1u) { dk[x] = 0.0; dv[x] = 0.0; }
    for (var g = 0u; g < group; g = g + 1u) {
        let h = hk * group + g;
        for (var i = j; i < p.t; i = i + 1u) {
            let qi = q_at(b, i, h);
            let st = stat_at(b, h, i);
            var s = 0.0;
            var dp = 0.0;
            for (var x = 0u; x < p.d; x = x + 1u) {
                s = s + q[qi + x] * k[kj + x];
                dp = dp + dout[qi + x] * v[kj + x];
            }
            let pj = exp(s * p.scale - stats[st]);
            let ds = pj * (dp - stats[st + 1u]) * p.scale;
            for (var x = 0u; x < p.d; x = x + 1u) {
                dv[x] = dv[x] + pj * dout[qi + x];
                dk[x] = dk[x] + ds * q[qi + x];
            }
        }
    }
    let half = p.b * p.t * p.hkv * p.d;
    for (var x = 0u; x < p.d; x = x + 1u) {
        dkv[kj + x] = dk[x];
        dkv[half + kj + x] = dv[x];
    }
}
