// Optimizer step: global gradient norm with clipping, then AdamW (PyTorch's formula: decoupled
// weight decay p ← p·(1 − lr·wd), then p ← p − lr·m̂/(√v̂ + eps) with bias-corrected moments).
// The clip coefficient stays on the GPU: nothing is read back per step.
//   sumsq_partial   per workgroup Σ g² of one gradient tensor into partials
//   sumsq_finish    one workgroup: norm[slot] = Σ partials (one slot per gradient tensor)
//   clip_finish     one invocation: norm[n_slots] = √Σ slots, norm[n_slots+1] = min(1, max_norm/(norm+1e-6))
//   adamw           one invocation per parameter, gradient scaled by norm[n_slots+1] when clip = 1
// CPU reference: bitnet_core::cpu::optim.

struct Params {
    n: u32,
    slot: u32,
    n_slots: u32,
    num_partials: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    bias_correction1: f32, // 1 − β1^step
    bias_correction2: f32, // 1 − β2^step
    max_norm: f32,
    clip: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> grad: array<f32>;          // (n,)
@group(0) @binding(2) var<storage, read_write> param: array<f32>;   // (n,)
@group(0) @binding(3) var<storage, read_write> m1: array<f32>;      // (n,) first moment
@group(0) @binding(4) var<storage, read_write> m2: array<f32>;      // (n,) second moment
@group(0) @binding(5) var<storage, read_write> partials: array<f32>; // (num_partials,)
@group(0) @binding(6) var<storage, read_write> norm: array<f32>;    // (n_slots + 2,)

var<workgroup> red: array<f32, WG>;

fn reduce(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    var stride = WG / 2u;
    loop {
        if (stride == 0u) { break; }
        workgroupBarrier();
        if (lid < stride) {
            red[lid] = red[lid] + red[lid + stride];
        }
        stride = stride / 2u;
    }
    workgroupBarrier();
    return red[0];
}

@compute @workgroup_size(256)
fn sumsq_partial(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    var acc = 0.0;
    for (var i = wid.x * WG + lid.x; i < p.n; i = i + p.num_partials * WG) {
        acc = acc + grad[i] * grad[i];
    }
    let s = reduce(lid.x, acc);
    if (lid.x == 0u) {
        partials[wid.x] = s;
    }
}

@compute @workgroup_size(256)
fn sumsq_finish(@builtin(local_invocation_id) lid: vec3<u32>) {
    var acc = 0.0;
    for (var i = lid.x; i < p.num_partials; i = i + WG) {
        acc = acc + partials[i];
    }
    let s = reduce(lid.x, acc);
    if (lid.x == 0u) {
        norm[p.slot] = s;
    }
}

@compute @workgroup_size(1)
fn clip_finish() {
    var total = 0.0;
    for (var i = 0u; i < p.n_slots; i = i + 1u) {
        total = total + norm[i];
    }
    let nrm = sqrt(total);
    norm[p.n_slots] = nrm;
    norm[p.n_slots + 1u] = min(1.0, p.max_norm / (nrm + 1e-6));
}

@compute @workgroup_size(256)
fn adamw(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n) { return; }
    var g = grad[i];
    if (p.clip == 1u) {
        g = g * norm[p.n_slots + 1u];
    }
    let a = p.beta1 * m1[i] + (1.0 - p.beta1) * g;
    let b = p.beta2 * m2[i] + (1.0 - p.beta2) * g * g;
    m1[i] = a;
    m2[i] = b;
    var w = param[i] * (1.0 - p.lr * p.weight_decay);
    w = w - p.lr * (a / p.bias_correction1) / (sqrt(b / p.bias_correction2) + p.eps);
    param[i] = w;
}
