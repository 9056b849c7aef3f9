// Token embedding: a row gather, and its gradient as a deterministic scatter-add.
//   forward   y[t, c] = E[ids[t], c]                (one invocation per element)
//   backward  dE[ids[t], c] += dy[t, c]             (one invocation per channel c, tokens in
//             order, so repeated tokens add up the same way every run; no atomics)
//   forward_bf16  the gather from a bf16 table (two values per u32, the first in the low half): a
//             BF16 model's embedding stays 16-bit for generation.
// A tied lm_head adds its own gradient into the same dE buffer. Ids are checked < V on the CPU.
// CPU reference: bitnet_core::cpu::embedding.

struct Params {
    tokens: u32,
    c: u32,
    vocab: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> table: array<f32>;       // (V, C) forward only
@group(0) @binding(2) var<storage, read> ids: array<u32>;         // (T,)
@group(0) @binding(3) var<storage, read> dy: array<f32>;          // (T, C) backward only
@group(0) @binding(4) var<storage, read_write> out: array<f32>;   // (T, C): y, or (V, C): dE
@group(0) @binding(5) var<storage, read> table16: array<u32>;     // (V, C) bf16, forward_bf16

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if (idx >= p.tokens * p.c) { return; }
    let t = idx / p.c;
    let k = idx % p.c;
    let id = ids[t];
    if (id < p.vocab) {
        out[idx] = table[id * p.c + k];
    } else {
        out[idx] = 0.0;
    }
}

@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x;
    if (k >= p.c) { return; }
    for (var t = 0u; t < p.tokens; t = t + 1u) {
        let id = ids[t];
        if (id < p.vocab) {
            out[id * p.c + k] = out[id * p.c + k] + dy[t * p.c + k];
        }
    }
}

@compute @workgroup_size(256)
fn forward_bf16(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = gid.x + gid.y * nwg.x * 256u;
    if (idx >= p.tokens * p.c) { return; }
    let t = idx / p.c;
    let k = idx % p.c;
    let id = ids[t];
    if (id < p.vocab) {
        let e = id * p.c + k;
        let word = table16[e / 2u];
        out[idx] = bitcast<f32>(select(word << 16u, word & 0xffff0000u, e % 2u == 1u));
    } else {
        out[idx] = 0.0;
    }
}
