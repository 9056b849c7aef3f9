// Causal self-attention with grouped-query heads, streamed over keys (flash-style online softmax):
// no (T × T × heads) buffer exists, so sequence length is bounded only by time, not by bindings.
// q (B, T, Hq, D); k, v (B, T, Hkv, D); query head h reads kv head h / (Hq / Hkv).
// D (the head dimension, a multiple of 4, at most 256) is a pipeline constant; rows are read as vec4s.
//
// Every pass runs in chunks of keys (or queries) [begin, end), one dispatch each, carrying its
// running state in the output buffers between dispatches. No invocation runs more than a few
// thousand loop iterations, whatever T is: lavapipe silently ends every loop of an invocation after
// 65535 iterations in total (LP_MAX_TGSI_LOOP_ITERATIONS), which one pass over 2048 keys would pass.
//   forward         one invocation per query row, keys [begin, end): running max m and sum l in
//                   stats, the unnormalised output in o; the first chunk (begin = 0) starts them
//   forward_finish  one invocation per query row: o /= l, and lse = m + log l into stats[.., 0]
//   backward_q      one invocation per query row, keys [begin, end): dsum = dO·O into stats[.., 1]
//                   (first chunk), and dq accumulated
//   backward_kv     one invocation per key row, queries [begin, end) (after backward_q): dk and dv
//                   accumulated over the query heads of its group and the queries that see it,
//                   recomputing p from lse
// stats is (B, Hq, T, 2): [m, l] during the forward, then [lse, dsum]; dkv is (2, B, T, Hkv, D):
// dk then dv.
// CPU reference: bitnet_core::cpu::attention.

override D: u32 = 64u;
const MAX_D4: u32 = 64u;

struct Params {
    b: u32,
    t: u32,
    hq: u32,
    hkv: u32,
    scale: f32,
    begin: u32,
    end: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;            // (B, T, Hq, D)
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;            // (B, T, Hkv, D)
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;            // (B, T, Hkv, D)
@group(0) @binding(4) var<storage, read_write> o: array<vec4<f32>>;      // (B, T, Hq, D)
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;        // (B, Hq, T, 2)
@group(0) @binding(6) var<storage, read> dout: array<vec4<f32>>;         // (B, T, Hq, D)
@group(0) @binding(7) var<storage, read_write> dq: array<vec4<f32>>;     // (B, T, Hq, D)
@group(0) @binding(8) var<storage, read_write> dkv: array<vec4<f32>>;    // (2, B, T, Hkv, D)

// Row offsets in vec4s.
fn q_at(b: u32, t: u32, h: u32) -> u32 {
    return ((b * p.t + t) * p.hq + h) * (D / 4u);
}

fn kv_at(b: u32, t: u32, h: u32) -> u32 {
    return ((b * p.t + t) * p.hkv + h) * (D / 4u);
}

fn stat_at(b: u32, h: u32, t: u32) -> u32 {
    return ((b * p.hq + h) * p.t + t) * 2u;
}

fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

// (b, h, i) of a query-row invocation.
fn query_row(idx: u32) -> vec3<u32> {
    return vec3<u32>(idx / (p.t * p.hq), (idx / p.t) % p.hq, idx % p.t);
}

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg);
    if (idx >= p.b * p.hq * p.t) { return; }
    let r = query_row(idx);
    let b = r.x;
    let h = r.y;
    let i = r.z;
    if (p.begin > i) { return; } // this chunk's keys are all in the future of query i
    let hk = h / (p.hq / p.hkv);
    let qi = q_at(b, i, h);
    let st = stat_at(b, h, i);
    var qv: array<vec4<f32>, MAX_D4>;
    var acc: array<vec4<f32>, MAX_D4>;
    var m = -3.402823e38;
    var l = 0.0;
    for (var x = 0u; x < D / 4u; x = x + 1u) {
        qv[x] = q[qi + x];
        acc[x] = vec4<f32>(0.0);
    }
    if (p.begin > 0u) {
        m = stats[st];
        l = stats[st + 1u];
        for (var x = 0u; x < D / 4u; x = x + 1u) { acc[x] = o[qi + x]; }
    }
    let last = min(p.end, i + 1u);
    for (var j = p.begin; j < last; j = j + 1u) {
        let kj = kv_at(b, j, hk);
        var s = 0.0;
        for (var x = 0u; x < D / 4u; x = x + 1u) { s = s + dot(qv[x], k[kj + x]); }
        s = s * p.scale;
        let m_new = max(m, s);
        let corr = exp(m - m_new);
        let pj = exp(s - m_new);
        l = l * corr + pj;
        for (var x = 0u; x < D / 4u; x = x + 1u) { acc[x] = acc[x] * corr + pj * v[kj + x]; }
        m = m_new;
    }
    for (var x = 0u; x < D / 4u; x = x + 1u) { o[qi + x] = acc[x]; }
    stats[st] = m;
    stats[st + 1u] = l;
}

@compute @workgroup_size(64)
fn forward_finish(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg);
    if (idx >= p.b * p.hq * p.t) { return; }
    let r = query_row(idx);
    let qi = q_at(r.x, r.z, r.y);
    let st = stat_at(r.x, r.y, r.z);
    let l = stats[st + 1u];
    for (var x = 0u; x < D / 4u; x = x + 1u) { o[qi + x] = o[qi + x] / l; }
    stats[st] = stats[st] + log(l);
}

@compute @workgroup_size(64)
fn backward_q(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg);
    if (idx >= p.b * p.hq * p.t) { return; }
    let r = query_row(idx);
    let b = r.x;
    let h = r.y;
    let i = r.z;
    if (p.begin > i) { return; }
    let hk = h / (p.hq / p.hkv);
    let qi = q_at(b, i, h);
    let st = stat_at(b, h, i);
    let lse = stats[st];
    var qv: array<vec4<f32>, MAX_D4>;
    var dov: array<vec4<f32>, MAX_D4>;
    var acc: array<vec4<f32>, MAX_D4>;
    var dsum = 0.0;
    for (var x = 0u; x < D / 4u; x = x + 1u) {
        qv[x] = q[qi + x];
        dov[x] = dout[qi + x];
        acc[x] = vec4<f32>(0.0);
    }
    if (p.begin == 0u) {
        for (var x = 0u; x < D / 4u; x = x + 1u) { dsum = dsum + dot(dov[x], o[qi + x]); }
        stats[st + 1u] = dsum;
    } else {
        dsum = stats[st + 1u];
        for (var x = 0u; x < D / 4u; x = x + 1u) { acc[x] = dq[qi + x]; }
    }
    let last = min(p.end, i + 1u);
    for (var j = p.begin; j < last; j = j + 1u) {
        let kj = kv_at(b, j, hk);
        var s = 0.0;
        var dp = 0.0;
        for (var x = 0u; x < D / 4u; x = x + 1u) {
            s = s + dot(qv[x], k[kj + x]);
            dp = dp + dot(dov[x], v[kj + x]);
        }
        let pj = exp(s * p.scale - lse);
        let ds = pj * (dp - dsum) * p.scale;
        for (var x = 0u; x < D / 4u; x = x + 1u) { acc[x] = acc[x] + ds * k[kj + x]; }
    }
    for (var x = 0u; x < D / 4u; x = x + 1u) { dq[qi + x] = acc[x]; }
}

@compute @workgroup_size(64)
fn backward_kv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat(gid, nwg); // over (b, hk, j)
    if (idx >= p.b * p.hkv * p.t) { return; }
    let j = idx % p.t;
    let hk = (idx / p.t) % p.hkv;
    let b = idx / (p.t * p.hkv);
    if (p.begin > 0u && j >= p.end) { return; } // no query of this chunk sees key j
    let group = p.hq / p.hkv;
    let kj = kv_at(b, j, hk);
    let half = p.b * p.t * p.hkv * (D / 4u);
    var kv: array<vec4<f32>, MAX_D4>;
    var vv: array<vec4<f32>, MAX_D4>;
    var dk: array<vec4<f32>, MAX_D4>;
    var dv: array<vec4<f32>, MAX_D4>;
    for (var x = 0u; x < D / 4u; x = x + 1u) {
        kv[x] = k[kj + x];
        vv[x] = v[kj + x];
        dk[x] = vec4<f32>(0.0);
        dv[x] = vec4<f32>(0.0);
    }
    if (p.begin > 0u) {
        for (var x = 0u; x < D / 4u; x = x + 1u) {
            dk[x] = dkv[kj + x];
            dv[x] = dkv[half + kj + x];
        }
    }
    for (var g = 0u; g < group; g = g + 1u) {
        let h = hk * group + g;
        for (var i = max(j, p.begin); i < p.end; i = i + 1u) {
            let qi = q_at(b, i, h);
            let st = stat_at(b, h, i);
            var s = 0.0;
            var dp = 0.0;
            for (var x = 0u; x < D / 4u; x = x + 1u) {
                s = s + dot(q[qi + x], kv[x]);
                dp = dp + dot(dout[qi + x], vv[x]);
            }
            let pj = exp(s * p.scale - stats[st]);
            let ds = pj * (dp - stats[st + 1u]) * p.scale;
            for (var x = 0u; x < D / 4u; x = x + 1u) {
                dv[x] = dv[x] + pj * dout[qi + x];
                dk[x] = dk[x] + ds * q[qi + x];
            }
        }
    }
    for (var x = 0u; x < D / 4u; x = x + 1u) {
        dkv[kj + x] = dk[x];
        dkv[half + kj + x] = dv[x];
    }
}
