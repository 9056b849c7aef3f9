// RMSNorm (Hugging Face formula): y = x · rsqrt(mean(x²) + eps) · g over rows of x (R, C).
//   forward          one workgroup per row; also saves rstd (R,) for backward
//   backward_input   one workgroup per row: dx = rstd·g·dy − x·rstd³·Σ(g·dy·x)/C
//   backward_gain    one invocation per column: dg += Σ_rows dy·x·rstd (rows in order: deterministic)
// CPU reference: bitnet_core::cpu::norm.

struct Params {
    rows: u32,
    c: u32,
    eps: f32,
    _pad: u32,
}

const WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;             // (R, C)
@group(0) @binding(2) var<storage, read> g: array<f32>;             // (C,)
@group(0) @binding(3) var<storage, read> dy: array<f32>;            // (R, C) backward only
@group(0) @binding(4) var<storage, read_write> rstd: array<f32>;    // (R,)
@group(0) @binding(5) var<storage, read_write> out: array<f32>;     // (R, C): y, or dx
@group(0) @binding(6) var<storage, read_write> dg: array<f32>;      // (C,) accumulated

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
    let total = red[0];
    workgroupBarrier();
    return total;
}

fn row_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

@compute @workgroup_size(256)
fn forward(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = row_index(wid, nwg);
    if (r >= p.rows) { return; }
    let o = r * p.c;
    var ss = 0.0;
    for (var i = lid.x; i < p.c; i = i + WG) {
        ss = ss + x[o + i] * x[o + i];
    }
    let total = reduce(lid.x, ss);
    let s = inverseSqrt(total / f32(p.c) + p.eps);
    if (lid.x == 0u) {
        rstd[r] = s;
    }
    for (var i = lid.x; i < p.c; i = i + WG) {
        out[o + i] = x[o + i] * s * g[i];
    }
}

@compute @workgroup_size(256)
fn backward_input(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = row_index(wid, nwg);
    if (r >= p.rows) { return; }
    let o = r * p.c;
    let s = rstd[r];
    var d = 0.0;
    for (var i = lid.x; i < p.c; i = i + WG) {
        d = d + g[i] * dy[o + i] * x[o + i];
    }
    let dot = reduce(lid.x, d);
    let k = s * s * s * dot / f32(p.c);
    for (var i = lid.x; i < p.c; i = i + WG) {
        out[o + i] = s * g[i] * dy[o + i] - x[o + i] * k;
    }
}

@compute @workgroup_size(256)
fn backward_gain(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.c) { return; }
    var acc = 0.0;
    for (var r = 0u; r < p.rows; r = r + 1u) {
        acc = acc + dy[r * p.c + i] * x[r * p.c + i] * rstd[r];
    }
    dg[i] = dg[i] + acc;
}
