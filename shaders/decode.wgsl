// Attention over a KV cache, for generation: every sequence b of a batch adds one token at its own
// position pos[b] and its query attends to the cached keys 0..=pos[b] (grouped-query heads, scale
// 1/√D). Caches are (B, CAP, Hkv, D); a prefill fills rows 0..len of each sequence by buffer copies.
//   rope_at   out (B, H, D) = RoPE of a (B, H, D) at position pos[b] (tables bb = cos, cc = sin,
//             (positions, D/2), the Hugging Face rotate-half convention of rope.wgsl)
//   append    kc[b, pos[b]] = a[b], vc[b, pos[b]] = bb[b]               (a, bb: (B, Hkv·D))
//   scores    s[b, h, j] = scale · q[b, h] · kc[b, j, h / G]   for j ≤ pos[b]   (q = a)
//   softmax   s[b, h, 0..=pos[b]] = softmax of the same           (one invocation per row)
//   weighted  out[b, h, :] = Σ_j s[b, h, j] · vc[b, j, h / G, :]
// Every loop runs at most D or 3·(pos + 1) times, so CAP ≤ 16384 keeps it under lavapipe's 65535
// loop iterations per invocation.
// CPU reference: bitnet_core::cpu::attention::decode_attention (and cpu::rope for rope_at).

struct Params {
    b: u32,
    h: u32,      // query heads (rope_at: the heads of a)
    hkv: u32,
    d: u32,
    cap: u32,
    len: u32,    // scores: keys per row to consider (≥ max pos + 1)
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> bb: array<f32>;
@group(0) @binding(3) var<storage, read> cc: array<f32>;
@group(0) @binding(4) var<storage, read> pos: array<u32>;
@group(0) @binding(5) var<storage, read_write> kc: array<f32>;
@group(0) @binding(6) var<storage, read_write> vc: array<f32>;
@group(0) @binding(7) var<storage, read_write> s: array<f32>;    // (B, H, CAP)
@group(0) @binding(8) var<storage, read_write> out: array<f32>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

@compute @workgroup_size(256)
fn rope_at(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let half = p.d / 2u;
    let idx = index(gid, nwg); // over B·H·(D/2)
    if (idx >= p.b * p.h * half) { return; }
    let i = idx % half;
    let row = idx / half;      // (b, h)
    let at = pos[row / p.h];
    let c = bb[at * half + i];
    let sn = cc[at * half + i];
    let o = row * p.d;
    let x1 = a[o + i];
    let x2 = a[o + i + half];
    out[o + i] = x1 * c - x2 * sn;
    out[o + i + half] = x2 * c + x1 * sn;
}

@compute @workgroup_size(256)
fn append(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = p.hkv * p.d;
    let idx = index(gid, nwg); // over B·Hkv·D
    if (idx >= p.b * row) { return; }
    let b = idx / row;
    let dst = (b * p.cap + pos[b]) * row + idx % row;
    kc[dst] = a[idx];
    vc[dst] = bb[idx];
}

@compute @workgroup_size(256)
fn scores(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = index(gid, nwg); // over B·H·len
    if (idx >= p.b * p.h * p.len) { return; }
    let j = idx % p.len;
    let bh = idx / p.len;
    let b = bh / p.h;
    if (j > pos[b]) { return; }
    let kvh = (bh % p.h) / (p.h / p.hkv);
    let qo = bh * p.d;
    let ko = ((b * p.cap + j) * p.hkv + kvh) * p.d;
    var acc = 0.0;
    for (var x = 0u; x < p.d; x = x + 1u) {
        acc = acc + a[qo + x] * kc[ko + x];
    }
    s[bh * p.cap + j] = acc * p.scale;
}

@compute @workgroup_size(64)
fn softmax(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let bh = gid.x + gid.y * nwg.x * 64u; // over B·H
    if (bh >= p.b * p.h) { return; }
    let n = pos[bh / p.h] + 1u;
    let o = bh * p.cap;
    var m = s[o];
    for (var j = 1u; j < n; j = j + 1u) {
        m = max(m, s[o + j]);
    }
    var z = 0.0;
    for (var j = 0u; j < n; j = j + 1u) {
        let e = exp(s[o + j] - m);
        s[o + j] = e;
        z = z + e;
    }
    let inv = 1.0 / z;
    for (var j = 0u; j < n; j = j + 1u) {
        s[o + j] = s[o + j] * inv;
    }
}

@compute @workgroup_size(256)
fn weighted(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = index(gid, nwg); // over B·H·D
    if (idx >= p.b * p.h * p.d) { return; }
    let x = idx % p.d;
    let bh = idx / p.d;
    let b = bh / p.h;
    let kvh = (bh % p.h) / (p.h / p.hkv);
    let n = pos[b] + 1u;
    var acc = 0.0;
    for (var j = 0u; j < n; j = j + 1u) {
        acc = acc + s[bh * p.cap + j] * vc[((b * p.cap + j) * p.hkv + kvh) * p.d + x];
    }
    out[idx] = acc;
}
