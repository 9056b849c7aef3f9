// Linear layers of inference with few rows (a decode step) and with packed ternary weights
// (DESIGN.md §2):
//
//   y (M, N) = x (M, K) · W_effᵀ (+ bias), W (N, K)
//
// Each invocation computes 4·GROUPS adjacent output columns (GROUPS 1, 2 or 4) for ROWS consecutive
// rows (1 to 8), both pipeline constants: every weight is read once for all the rows and every x
// vec4 once for all the columns, where the register-blocked GEMM pads a one-row decode step to its
// 16-row block. Rows past M compute on row M − 1 and columns past N on column N − 1, and are not
// stored (no early return: every lane stays active).
//   matvec_f32      W as f32, row-major; read as vec4 when K % 4 == 0 (ALIGNED), else as scalars.
//   matvec_ternary  W = scale·q as 2-bit codes c = q + 1, 16 per u32, least significant first, each
//                   row padded with c = 1 to a multiple of 64 codes (bitnet_core::pack::gpu_words):
//                   one vec4 of words per 64 weights, 16× fewer bytes than f32. The scale is applied
//                   once per output.
//   unpack_ternary  y (N, K) = scale·q of packed codes: for passes of many rows, which run the
//                   register-blocked or tiled GEMM on the unpacked weights (one projection at a
//                   time, in a scratch buffer).
// x is bound as vec4s (buffers are allocated in multiples of 16 bytes); with K % 4 != 0 its rows
// are read as scalars.
// CPU references: bitnet_core::cpu::matmul::{linear_forward, ternary_linear_forward}.

override ROWS: u32 = 1u;
override GROUPS: u32 = 1u;
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

// The accumulators: acc[r·GROUPS + c] holds row r's outputs of column group c (4 columns).
alias Acc = array<vec4<f32>, 32>;
// The weights of one step: wm[c] has in its column i the 4 weights (k0 .. k0 + 4) of output column
// 4c + i of the invocation.
alias Weights = array<mat4x4<f32>, 4>;

// Adds x[r0 + r, k0 .. k0 + 4]·wm[c] to the accumulators of every row r < ROWS and group c < GROUPS.
fn step(acc: ptr<function, Acc>, r0: u32, k0: u32, masked: bool, wm: Weights) {
    let last = p.m - 1u;
    for (var r = 0u; r < ROWS; r = r + 1u) {
        let xv = x4(min(r0 + r, last), k0, masked);
        for (var c = 0u; c < GROUPS; c = c + 1u) {
            (*acc)[r * GROUPS + c] += xv * wm[c];
        }
    }
}

// The first output column of the invocation.
fn first_column(gid: vec3<u32>) -> u32 {
    return 4u * GROUPS * gid.x;
}

// Output column i of the invocation (0 ≤ i < 4·GROUPS), clamped to N − 1 for loads.
fn column(j0: u32, i: u32) -> u32 {
    return min(j0 + i, p.n - 1u);
}

fn store(r0: u32, j0: u32, acc: Acc, scale: f32) {
    for (var c = 0u; c < GROUPS; c = c + 1u) {
        for (var i = 0u; i < 4u; i = i + 1u) {
            let j = j0 + 4u * c + i;
            if (j < p.n) {
                var b = 0.0;
                if (HAS_BIAS) {
                    b = bias[j];
                }
                for (var r = 0u; r < ROWS; r = r + 1u) {
                    if (r0 + r < p.m) {
                        y[(r0 + r) * p.n + j] = scale * acc[r * GROUPS + c][i] + b;
                    }
                }
            }
        }
    }
}

fn w_f32(e: u32) -> f32 {
    return bitcast<f32>(w[e / 4u][e % 4u]);
}

@compute @workgroup_size(16)
fn matvec_f32(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j0 = first_column(gid);
    let r0 = gid.y * ROWS;
    var acc: Acc;
    var wm: Weights;
    if (ALIGNED) {
        let k4 = p.k / 4u;
        for (var q = 0u; q < k4; q = q + 1u) {
            for (var c = 0u; c < GROUPS; c = c + 1u) {
                wm[c] = mat4x4<f32>(
                    bitcast<vec4<f32>>(w[column(j0, 4u * c) * k4 + q]),
                    bitcast<vec4<f32>>(w[column(j0, 4u * c + 1u) * k4 + q]),
                    bitcast<vec4<f32>>(w[column(j0, 4u * c + 2u) * k4 + q]),
                    bitcast<vec4<f32>>(w[column(j0, 4u * c + 3u) * k4 + q]),
                );
            }
            step(&acc, r0, 4u * q, false, wm);
        }
    } else {
        // One weight per column at a time (row 0 of each wm), x through the masked path.
        let z = vec3<f32>(0.0);
        for (var q = 0u; q < p.k; q = q + 1u) {
            for (var c = 0u; c < GROUPS; c = c + 1u) {
                wm[c] = mat4x4<f32>(
                    vec4<f32>(w_f32(column(j0, 4u * c) * p.k + q), z),
                    vec4<f32>(w_f32(column(j0, 4u * c + 1u) * p.k + q), z),
                    vec4<f32>(w_f32(column(j0, 4u * c + 2u) * p.k + q), z),
                    vec4<f32>(w_f32(column(j0, 4u * c + 3u) * p.k + q), z),
                );
            }
            step(&acc, r0, q, true, wm);
        }
    }
    store(r0, j0, acc, 1.0);
}

// The q values of codes 4s .. 4s + 4 of a word (16 codes, least significant first).
fn codes4(word: u32, s: u32) -> vec4<f32> {
    let shifts = vec4<u32>(8u * s, 8u * s + 2u, 8u * s + 4u, 8u * s + 6u);
    return vec4<f32>((vec4<u32>(word) >> shifts) & vec4<u32>(3u)) - vec4<f32>(1.0);
}

// Adds 64 weights of every column (vec4 of words `g` of its row) times x to the accumulators.
fn ternary_group(j0: u32, g: u32, r0: u32, masked: bool, acc: ptr<function, Acc>) {
    let row_vecs = (p.k + 63u) / 64u;
    var words: array<vec4<u32>, 16>;
    for (var i = 0u; i < 4u * GROUPS; i = i + 1u) {
        words[i] = w[column(j0, i) * row_vecs + g];
    }
    var wm: Weights;
    for (var v = 0u; v < 4u; v = v + 1u) {
        for (var s = 0u; s < 4u; s = s + 1u) {
            for (var c = 0u; c < GROUPS; c = c + 1u) {
                wm[c] = mat4x4<f32>(
                    codes4(words[4u * c][v], s),
                    codes4(words[4u * c + 1u][v], s),
                    codes4(words[4u * c + 2u][v], s),
                    codes4(words[4u * c + 3u][v], s),
                );
            }
            step(acc, r0, 64u * g + 16u * v + 4u * s, masked, wm);
        }
    }
}

@compute @workgroup_size(16)
fn matvec_ternary(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j0 = first_column(gid);
    let r0 = gid.y * ROWS;
    var acc: Acc;
    let full = p.k / 64u;
    for (var g = 0u; g < full; g = g + 1u) {
        ternary_group(j0, g, r0, false, &acc);
    }
    if (p.k % 64u != 0u) {
        ternary_group(j0, full, r0, true, &acc);
    }
    store(r0, j0, acc, p.scale);
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
