// SwiGLU gate of the Llama MLP: h = silu(gate) · up, elementwise over (rows, intermediate).
//   forward   out = silu(gate)·up
//   backward  out = dgate = dh·up·σ(gate)·(1 + gate·(1 − σ(gate))), dup = dh·silu(gate)
// CPU reference: bitnet_core::cpu::swiglu.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> gate: array<f32>;        // (n,)
@group(0) @binding(2) var<storage, read> up: array<f32>;          // (n,)
@group(0) @binding(3) var<storage, read> dh: array<f32>;          // (n,) backward only
@group(0) @binding(4) var<storage, read_write> out: array<f32>;   // (n,): h, or dgate
@group(0) @binding(5) var<storage, read_write> dup: array<f32>;   // (n,) backward only

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

fn sigmoid(z: f32) -> f32 {
    return 1.0 / (1.0 + exp(-z));
}

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    let a = gate[i];
    out[i] = a * sigmoid(a) * up[i];
}

@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    let a = gate[i];
    let s = sigmoid(a);
    out[i] = dh[i] * up[i] * s * (1.0 + a * (1.0 - s));
    dup[i] = dh[i] * a * s;
}
