// Rotary position embedding, Hugging Face rotate-half convention, on x (B, T, H, D) at positions
// offset + t, with cos/sin tables (positions, D/2) computed on the CPU in f64 (exact at any length).
//   forward   y[i] = x[i]·cos − x[i+D/2]·sin,  y[i+D/2] = x[i+D/2]·cos + x[i]·sin
//   backward  the transpose: the same rotation with −sin
// CPU reference: bitnet_core::cpu::rope.

struct Params {
    b: u32,
    t: u32,
    h: u32,
    d: u32,
    offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;           // (B, T, H, D)
@group(0) @binding(2) var<storage, read> cos_t: array<f32>;       // (positions, D/2)
@group(0) @binding(3) var<storage, read> sin_t: array<f32>;       // (positions, D/2)
@group(0) @binding(4) var<storage, read_write> out: array<f32>;   // (B, T, H, D)

fn rotate(gid: vec3<u32>, nwg: vec3<u32>, sign: f32) {
    let half = p.d / 2u;
    let idx = gid.x + gid.y * nwg.x * 256u; // over B·T·H·(D/2)
    if (idx >= p.b * p.t * p.h * half) { return; }
    let i = idx % half;
    let row = idx / half;               // (b, t, h) flattened
    let t = (row / p.h) % p.t;
    let pos = p.offset + t;
    let c = cos_t[pos * half + i];
    let s = sign * sin_t[pos * half + i];
    let o = row * p.d;
    let x1 = x[o + i];
    let x2 = x[o + i + half];
    out[o + i] = x1 * c - x2 * s;
    out[o + i + half] = x2 * c + x1 * s;
}

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    rotate(gid, nwg, 1.0);
}

@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    rotate(gid, nwg, -1.0);
}
