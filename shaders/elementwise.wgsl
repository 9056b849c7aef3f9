// Elementwise and per-row helpers of the transformer block.
//   add          out = a + b                 (residual connection; its backward passes dy to both)
//   accumulate   out += a                    (gradient accumulation, e.g. a residual's two branches)
//   act_quant8   per row of C values: s = 127 / max(|x|, 1e-5), out = clamp(round(x·s), −128, 127) / s
//                (W1.58A8; its backward is the straight-through identity, so no kernel)
// CPU reference: bitnet_core::cpu::optim::act_quant8 and plain addition.

struct Params {
    n: u32,
    c: u32,
    _pad0: u32,
    _pad1: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;           // (n,) or (rows, C)
@group(0) @binding(2) var<storage, read> b: array<f32>;           // (n,)
@group(0) @binding(3) var<storage, read_write> out: array<f32>;   // (n,)

var<workgroup> red: array<f32, WG>;

fn index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = a[i] + b[i];
}

@compute @workgroup_size(256)
fn accumulate(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(gid, nwg);
    if (i >= p.n) { return; }
    out[i] = out[i] + a[i];
}

// One workgroup per row of C values (rows = n / C).
@compute @workgroup_size(256)
fn act_quant8(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = wid.x + wid.y * nwg.x;
    if (r * p.c >= p.n) { return; }
    let o = r * p.c;
    var m = 0.0;
    for (var i = lid.x; i < p.c; i = i + WG) {
        m = max(m, abs(a[o + i]));
    }
    red[lid.x] = m;
    var stride = WG / 2u;
    loop {
        if (stride == 0u) { break; }
        workgroupBarrier();
        if (lid.x < stride) {
            red[lid.x] = max(red[lid.x], red[lid.x + stride]);
        }
        stride = stride / 2u;
    }
    workgroupBarrier();
    let s = 127.0 / max(red[0], 1e-5);
    for (var i = lid.x; i < p.c; i = i + WG) {
        out[o + i] = clamp(round(a[o + i] * s), -128.0, 127.0) / s;
    }
}
