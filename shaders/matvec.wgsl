// Linear layers of inference with few rows (a decode step) and with packed ternary weights
// (DESIGN.md §2):
//
//   y (M, N) = x (M, K) · W_effᵀ (+ bias), W (N, K)
//
// Each invocation computes 4 adjacent output columns for ROWS consecutive rows (ROWS a pipeline
// constant, 1 to 4): every weight is read once for all the rows and every x vec4 once for the 4
// columns, where the register-blocked GEMM pads a one-row decode step to its 16-row block. Rows
// past M compute on row M − 1 and columns past N on column N − 1, and are not stored (no early
// return: every lane stays active). More columns or rows per invocation run a little faster on
// lavapipe but take it 10–20 s per pipeline to compile (4 columns: under a second).
//   matvec_f32      W as f32, row-major; read as vec4 when K % 4 == 0 (ALIGNED), else as scalars.
//   matvec_ternary  W = scale·q as 2-bit codes c = q + 1, 16 per u32, least significant first, each
//                   row padded with c = 1 to a multiple of 64 codes (bitnet_core::pack::gpu_words):
//                   one vec4 of words per 64 weights, 16× fewer bytes than f32. The scale is applied
//                   once per output.
//   matvec_bf16     W as bf16, two per u32, the first in the low half, row-major without padding:
//                   read as vec4s of words (8 weights) when K % 8 == 0 (ALIGNED, set so for this
//                   kernel), else one weight at a time: a BF16 model's lm_head stays 16-bit on the
//                   GPU. (No f16 twin: lavapipe takes ~10 s to compile a bit-level f16 decode, or
//                   unpack2x16float, in this loop; F16 tensors are widened to f32 on the GPU.)
//   unpack_ternary  y (N, K) = scale·q of packed codes: for passes of many rows, which run the
//                   register-blocked or tiled GEMM on the unpacked weights (one projection at a
//                   time, in a scratch buffer).
// x is bound as vec4s (buffers are allocated in multiples of 16 bytes); with K % 4 != 0 its rows
// are read as scalars.
// CPU references: bitnet_core::cpu::matmul::{linear_forward, ternary_linear_forward} (bf16: the
// f32 product of the bf16 values).

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

// The accumulators: acc[r] holds row r's 4 outputs.
alias Acc = array<vec4<f32>, 4>;

// Adds x[r0 + r, k0 .. k0 + 4]·wm to the accumulator of every row r < ROWS; column i of wm holds the
// 4 weights (k0 .. k0 + 4) of the invocation's output column i.
fn step(acc: ptr<function, Acc>, r0: u32, k0: u32, masked: bool, wm: mat4x4<f32>) {
    let last = p.m - 1u;
    for (var r = 0u; r < ROWS; r = r + 1u) {
        (*acc)[r] += x4(min(r0 + r, last), k0, masked) * wm;
    }
}

// The invocation's 4 output columns, clamped to N − 1 for loads.
fn columns(gid: vec3<u32>) -> vec4<u32> {
    let j0 = 4u * gid.x;
    return min(vec4<u32>(j0, j0 + 1u, j0 + 2u, j0 + 3u), vec4<u32>(p.n - 1u));
}

fn store(r0: u32, gid: vec3<u32>, acc: Acc, scale: f32) {
    for (var i = 0u; i < 4u; i = i + 1u) {
        let j = 4u * gid.x + i;
        if (j < p.n) {
            var b = 0.0;
            if (HAS_BIAS) {
                b = bias[j];
            }
            for (var r = 0u; r < ROWS; r = r + 1u) {
                if (r0 + r < p.m) {
                    y[(r0 + r) * p.n + j] = scale * acc[r][i] + b;
                }
            }
        }
    }
}

// Weight e of W as f32 or bf16.
fn weight_at(e: u32, bf16: bool) -> f32 {
    if (bf16) {
        return halves(w[e / 8u][(e / 2u) % 4u])[e % 2u];
    }
    return bitcast<f32>(w[e / 4u][e % 4u]);
}

// The product over rows of K that do not start on a vec4 (of f32s, or of bf16 words): one weight
// per column at a time (row 0 of wm), x through the masked path.
fn unaligned(j: vec4<u32>, r0: u32, acc: ptr<function, Acc>, bf16: bool) {
    let z = vec3<f32>(0.0);
    for (var q = 0u; q < p.k; q = q + 1u) {
        let e = j * p.k + vec4<u32>(q);
        let wm = mat4x4<f32>(
            vec4<f32>(weight_at(e.x, bf16), z),
            vec4<f32>(weight_at(e.y, bf16), z),
            vec4<f32>(weight_at(e.z, bf16), z),
            vec4<f32>(weight_at(e.w, bf16), z),
        );
        step(acc, r0, q, true, wm);
    }
}

@compute @workgroup_size(16)
fn matvec_f32(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = columns(gid);
    let r0 = gid.y * ROWS;
    var acc: Acc;
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
        unaligned(j, r0, &acc, false);
    }
    store(r0, gid, acc, 1.0);
}

// The two bf16 values of a word (the first in the low half).
fn halves(word: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u));
}


@compute @workgroup_size(16)
fn matvec_bf16(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = columns(gid);
    let r0 = gid.y * ROWS;
    var acc: Acc;
    if (ALIGNED) {
        let k8 = p.k / 8u;
        for (var q = 0u; q < k8; q = q + 1u) {
            let c0 = w[j.x * k8 + q];
            let c1 = w[j.y * k8 + q];
            let c2 = w[j.z * k8 + q];
            let c3 = w[j.w * k8 + q];
            let lo = mat4x4<f32>(
                vec4<f32>(halves(c0.x), halves(c0.y)),
                vec4<f32>(halves(c1.x), halves(c1.y)),
                vec4<f32>(halves(c2.x), halves(c2.y)),
                vec4<f32>(halves(c3.x), halves(c3.y)),
            );
            let hi = mat4x4<f32>(
                vec4<f32>(halves(c0.z), halves(c0.w)),
                vec4<f32>(halves(c1.z), halves(c1.w)),
                vec4<f32>(halves(c2.z), halves(c2.w)),
                vec4<f32>(halves(c3.z), halves(c3.w)),
            );
            step(&acc, r0, 8u * q, false, lo);
            step(&acc, r0, 8u * q + 4u, false, hi);
        }
    } else {
        unaligned(j, r0, &acc, true);
    }
    store(r0, gid, acc, 1.0);
}

// The q values of codes 4s .. 4s + 4 of a word (16 codes, least significant first).
fn codes4(word: u32, s: u32) -> vec4<f32> {
    let shifts = vec4<u32>(8u * s, 8u * s + 2u, 8u * s + 4u, 8u * s + 6u);
    return vec4<f32>((vec4<u32>(word) >> shifts) & vec4<u32>(3u)) - vec4<f32>(1.0);
}

// Adds 64 weights of each of the 4 columns (vec4 of words `g` of its row) times x to the
// accumulators.
fn ternary_group(j: vec4<u32>, g: u32, r0: u32, masked: bool, acc: ptr<function, Acc>) {
    let row_vecs = (p.k + 63u) / 64u;
    let w0 = w[j.x * row_vecs + g];
    let w1 = w[j.y * row_vecs + g];
    let w2 = w[j.z * row_vecs + g];
    let w3 = w[j.w * row_vecs + g];
    for (var v = 0u; v < 4u; v = v + 1u) {
        for (var s = 0u; s < 4u; s = s + 1u) {
            let wm = mat4x4<f32>(codes4(w0[v], s), codes4(w1[v], s), codes4(w2[v], s), codes4(w3[v], s));
            step(acc, r0, 64u * g + 16u * v + 4u * s, masked, wm);
        }
    }
}

@compute @workgroup_size(16)
fn matvec_ternary(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = columns(gid);
    let r0 = gid.y * ROWS;
    var acc: Acc;
    let full = p.k / 64u;
    for (var g = 0u; g < full; g = g + 1u) {
        ternary_group(j, g, r0, false, &acc);
    }
    if (p.k % 64u != 0u) {
        ternary_group(j, full, r0, true, &acc);
    }
    store(r0, gid, acc, p.scale);
}

@compute @workgroup_size(256)
fn unpack_ternary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * 256u;
    if (e >= p.n * p.k) {
        return;
    }
    let j = e / p.k;
    let k = e % p.k;
    let word = w[j * ((p.k + 63u) / 64u) + k / 64u][(k % 64u) / 16u];
    y[e] = p.scale * (f32((word >> (2u * (k % 16u))) & 3u) - 1.0);
}
