// Linear layers of inference with few rows (a decode step) and with packed ternary weights
// (DESIGN.md §2):
//
//   y (M, N) = x (M, K) · W_effᵀ (+ bias), W (N, K)
//
// Each invocation computes 4 adjacent output columns for ROWS consecutive rows (ROWS a pipeline
// constant, 1 to 8): every weight is read once for all of them and every x vec4 once for the 4
// columns, where the register-blocked GEMM pads a one-row decode step to its 16-row block. Rows
// past M are computed on row M − 1 and not stored.
//   matvec_f32      W as f32, row-major; read as vec4 when K % 4 == 0 (ALIGNED), else as scalars.
//   matvec_ternary  W = scale·q as 2-bit codes c = q + 1, 16 per u32, least significant first, each
//                   row padded with c = 1 to a multiple of 64 codes (bitnet_core::pack::gpu_words):
//                   one vec4 of words per 64 weights, 16× fewer bytes than f32. The scale is applied
//                   once per output.
// x is bound as vec4s (buffers are allocated in multiples of 16 bytes); with K % 4 != 0 its rows
// are read as scalars.
// CPU references: bitnet_core::cpu::matmul::{linear_forward, ternary_linear_forward}.

override ROWS: u32 = 1u;
override ALIGNED: bool = false;
override HAS_BIAS: bool = false;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;  // (M, K)
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;  // f32 bits (N, K), or packed codes
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // (N,) when HAS_BIAS
@group(0) @binding(4) var<storage, read_write> y: array<f32>;  // (M, N)

fn x_at(e: u32) -> f32 {
    return x[e / 4u][e % 4u];
}

// x[row, k0 .. k0 + 4]; with `masked`, the elements at or past K are zero (the last group of a
// padded ternary row).
fn x4(row: u32, k0: u32, masked: bool) -> vec4<f32> {
    let e = row * p.k + k0;
    if (masked) {
        var v = vec4<f32>(0.0);
        for (var i = 0u; i < 4u; i = i + 1u) {
            if (k0 + i < p.k) {
                v[i] = x_at(e + i);
            }
        }
        return v;
    }
    if (ALIGNED) {
        return x[e / 4u];
    }
    return vec4<f32>(x_at(e), x_at(e + 1u), x_at(e + 2u), x_at(e + 3u));
}

// The accumulators: one vec4 per row (its 4 columns), rows 0 to ROWS − 1 used. Named fields behind
// ROWS tests that pipeline constants fold away, not an array indexed in a loop, which adapters that
// run invocations as SIMD lanes may keep in memory.
struct Acc {
    a0: vec4<f32>,
    a1: vec4<f32>,
    a2: vec4<f32>,
    a3: vec4<f32>,
    a4: vec4<f32>,
    a5: vec4<f32>,
    a6: vec4<f32>,
    a7: vec4<f32>,
}

// Adds x[r0 + r, k0 .. k0 + 4]·wm to row r's accumulator for every row r < ROWS; column c of wm is
// the 4 weights of output column c.
fn step(acc: ptr<function, Acc>, r0: u32, k0: u32, masked: bool, wm: mat4x4<f32>) {
    let last = p.m - 1u;
    (*acc).a0 += x4(min(r0, last), k0, masked) * wm;
    if (ROWS > 1u) { (*acc).a1 += x4(min(r0 + 1u, last), k0, masked) * wm; }
    if (ROWS > 2u) { (*acc).a2 += x4(min(r0 + 2u, last), k0, masked) * wm; }
    if (ROWS > 3u) { (*acc).a3 += x4(min(r0 + 3u, last), k0, masked) * wm; }
    if (ROWS > 4u) { (*acc).a4 += x4(min(r0 + 4u, last), k0, masked) * wm; }
    if (ROWS > 5u) { (*acc).a5 += x4(min(r0 + 5u, last), k0, masked) * wm; }
    if (ROWS > 6u) { (*acc).a6 += x4(min(r0 + 6u, last), k0, masked) * wm; }
    if (ROWS > 7u) { (*acc).a7 += x4(min(r0 + 7u, last), k0, masked) * wm; }
}

fn store(r0: u32, j0: u32, acc: Acc, scale: f32) {
    let rows = array<vec4<f32>, 8>(acc.a0, acc.a1, acc.a2, acc.a3, acc.a4, acc.a5, acc.a6, acc.a7);
    for (var c = 0u; c < 4u; c = c + 1u) {
        let j = j0 + c;
        if (j >= p.n) {
            return;
        }
        var b = 0.0;
        if (HAS_BIAS) {
            b = bias[j];
        }
        for (var r = 0u; r < ROWS; r = r + 1u) {
            if (r0 + r < p.m) {
                y[(r0 + r) * p.n + j] = scale * rows[r][c] + b;
            }
        }
    }
}

fn zero_acc() -> Acc {
    let z = vec4<f32>(0.0);
    return Acc(z, z, z, z, z, z, z, z);
}

// Output columns j0 .. j0 + 4 of the invocation, clamped to N − 1 for loads: columns past N
// compute on column N − 1 and are not stored. No early return, so that every lane stays active.
fn columns(gid: vec3<u32>) -> vec4<u32> {
    let j0 = 4u * gid.x;
    return min(vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u), vec4<u32>(p.n - 1u));
}

fn w_f32(e: u32) -> f32 {
    return bitcast<f32>(w[e / 4u][e % 4u]);
}

@compute @workgroup_size(64)
fn matvec_f32(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = columns(gid);
    let r0 = gid.y * ROWS;
    var acc = zero_acc();
    if (ALIGNED) {
        let k4 = p.k / 4u;
        for (var q = 0u; q < k4; q = q + 1u) {
            let wm = mat4x4<f32>(
                bitcast<vec4<f32>>(w[j.x * k4 + q]),
                bitcast<vec4<f32>>(w[j.y * k4 + q]),
                bitcast<vec4<f32>>(w[j.z * k4 + q]),
                bitcast<vec4<f32>>(w[j.w * k4 + q]),
            );
            step(&acc, r0, 4u * q, false, wm);
        }
    } else {
        // One weight per column at a time (row 0 of wm), x through the masked path.
        for (var q = 0u; q < p.k; q = q + 1u) {
            let e = j * p.k + vec4<u32>(q);
            let z = vec3<f32>(0.0);
            let wm = mat4x4<f32>(
                vec4<f32>(w_f32(e.x), z),
                vec4<f32>(w_f32(e.y), z),
                vec4<f32>(w_f32(e.z), z),
                vec4<f32>(w_f32(e.w), z),
            );
            step(&acc, r0, q, true, wm);
        }
    }
    store(r0, 4u * gid.x, acc, 1.0);
}

// The q values of codes 4s .. 4s + 4 of a word (16 codes, least significant first).
fn codes4(word: u32, s: u32) -> vec4<f32> {
    let shifts = vec4<u32>(8u * s, 8u * s + 2u, 8u * s + 4u, 8u * s + 6u);
    return vec4<f32>((vec4<u32>(word) >> shifts) & vec4<u32>(3u)) - vec4<f32>(1.0);
}

// Adds 64 weights (vec4 of words `g` of each column's row) times x to the accumulators.
fn ternary_group(j: vec4<u32>, g: u32, r0: u32, masked: bool, acc: ptr<function, Acc>) {
    let row_vecs = (p.k + 63u) / 64u;
    let w0 = w[j.x * row_vecs + g];
    let w1 = w[j.y * row_vecs + g];
    let w2 = w[j.z * row_vecs + g];
    let w3 = w[j.w * row_vecs + g];
    for (var c = 0u; c < 4u; c = c + 1u) {
        for (var s = 0u; s < 4u; s = s + 1u) {
            let wm = mat4x4<f32>(
                codes4(w0[c], s),
                codes4(w1[c], s),
                codes4(w2[c], s),
                codes4(w3[c], s),
            );
            step(acc, r0, 64u * g + 16u * c + 4u * s, masked, wm);
        }
    }
}

@compute @workgroup_size(64)
fn matvec_ternary(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = columns(gid);
    let r0 = gid.y * ROWS;
    var acc = zero_acc();
    let full = p.k / 64u;
    for (var g = 0u; g < full; g = g + 1u) {
        ternary_group(j, g, r0, false, &acc);
    }
    if (p.k % 64u != 0u) {
        ternary_group(j, full, r0, true, &acc);
    }
    store(r0, 4u * gid.x, acc, p.scale);
}
