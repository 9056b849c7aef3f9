// General matrix product for linear layers, forward and backward, with the λ-blend of ternary
// weights fused into the weight loads (DESIGN.md §2).
//
//   C (M, N) [+]= A'(M, K) · B'(K, N)  (+ bias[j] in the forward pass)
//   A'(i, p) = trans_a ? A[p·M + i] : A[i·K + p]
//   B'(p, j) = trans_b ? B[j·K + p] : B[p·N + j]
//   blend != 0: every B' value is replaced by W + λ·(scale·q(W) − W) as it is loaded (once per load
//   into a tile or registers, not once per multiply), with q from the quantizer statistics.
//
// A linear layer y = x·Wᵀ + b with x (rows, in), W (out, in):
//   forward  y  = gemm(A = x,  B = W, trans_b, blend), M = rows, N = out, K = in, bias
//   input    dX = gemm(A = dY, B = W, blend),          M = rows, N = in,  K = out
//   weight   dW += gemm(A = dY, B = x, trans_a),       M = out,  N = in,  K = rows  (STE: dW = dW_eff)
//   bias     db += Σ_rows dY                           (bias_grad)
// Variants: gemm_naive (reference), gemm_tiled (16×16 shared-memory tiles, for real GPUs),
// gemm_reg (4×4 outputs per invocation in registers, no shared memory: fast on CPU-like adapters).
// CPU reference: bitnet_core::cpu::matmul.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    trans_a: u32,
    trans_b: u32,
    accumulate: u32, // 1: C += result (gradients), 0: C = result
    blend: u32,      // 0: none, 1: absmean codes, 2: threshold codes
    has_bias: u32,
    lambda: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;        // (M, K), or (K, M) when trans_a
@group(0) @binding(2) var<storage, read> b: array<f32>;        // (K, N), or (N, K) when trans_b
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // (N,) when has_bias
@group(0) @binding(4) var<storage, read> stats: array<f32>;    // (4,) quantize.wgsl: mean|W|, cut, scale, count
@group(0) @binding(5) var<storage, read_write> c: array<f32>;  // (M, N)

fn at(idx: u32) -> f32 {
    return a[idx];
}

fn bt(idx: u32) -> f32 {
    return b[idx];
}

fn load_a(i: u32, q: u32) -> f32 {
    if (p.trans_a == 1u) {
        return at(q * p.m + i);
    }
    return at(i * p.k + q);
}

// The λ-blended weight: W + λ·(scale·q(W) − W); q as in quantize.wgsl.
fn blend(w: f32) -> f32 {
    if (p.blend == 0u) {
        return w;
    }
    let cut = stats[1];
    var q: f32;
    if (p.blend == 1u) {
        q = clamp(round(w / cut), -1.0, 1.0);
    } else {
        q = select(0.0, sign(w), abs(w) > cut);
    }
    return w + p.lambda * (stats[2] * q - w);
}

fn load_b(q: u32, j: u32) -> f32 {
    var w: f32;
    if (p.trans_b == 1u) {
        w = bt(j * p.k + q);
    } else {
        w = bt(q * p.n + j);
    }
    return blend(w);
}

fn store(i: u32, j: u32, acc: f32) {
    var v = acc;
    if (p.has_bias == 1u) {
        v = v + bias[j];
    }
    let idx = i * p.n + j;
    if (p.accumulate == 1u) {
        c[idx] = c[idx] + v;
    } else {
        c[idx] = v;
    }
}

@compute @workgroup_size(16, 16)
fn gemm_naive(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y;
    let j = gid.x;
    if (i >= p.m || j >= p.n) {
        return;
    }
    var acc = 0.0;
    for (var q = 0u; q < p.k; q = q + 1u) {
        acc = acc + load_a(i, q) * load_b(q, j);
    }
    store(i, j, acc);
}

const TILE: u32 = 16u;
var<workgroup> tile_a: array<array<f32, 16>, 16>; // [row i][inner q]
var<workgroup> tile_b: array<array<f32, 16>, 16>; // [inner q][col j], already blended

@compute @workgroup_size(16, 16)
fn gemm_tiled(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let i = wid.y * TILE + lid.y;
    let j = wid.x * TILE + lid.x;
    var acc = 0.0;
    let tiles = (p.k + TILE - 1u) / TILE;
    for (var t = 0u; t < tiles; t = t + 1u) {
        let qa = t * TILE + lid.x;
        var va = 0.0;
        if (i < p.m && qa < p.k) {
            va = load_a(i, qa);
        }
        tile_a[lid.y][lid.x] = va;
        let qb = t * TILE + lid.y;
        var vb = 0.0;
        if (j < p.n && qb < p.k) {
            vb = load_b(qb, j);
        }
        tile_b[lid.y][lid.x] = vb;
        workgroupBarrier();
        for (var q = 0u; q < TILE; q = q + 1u) {
            acc = acc + tile_a[lid.y][q] * tile_b[q][lid.x];
        }
        workgroupBarrier();
    }
    if (i < p.m && j < p.n) {
        store(i, j, acc);
    }
}

// 8×8 invocations, each computing a 4×4 block of C: a 32×32 block per workgroup.
@compute @workgroup_size(8, 8)
fn gemm_reg(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * 4u;
    let j0 = gid.x * 4u;
    if (i0 >= p.m || j0 >= p.n) {
        return;
    }
    var acc: array<vec4<f32>, 4>;
    for (var r = 0u; r < 4u; r = r + 1u) {
        acc[r] = vec4<f32>(0.0);
    }
    for (var q = 0u; q < p.k; q = q + 1u) {
        var bv = vec4<f32>(0.0);
        for (var s = 0u; s < 4u; s = s + 1u) {
            if (j0 + s < p.n) {
                bv[s] = load_b(q, j0 + s);
            }
        }
        for (var r = 0u; r < 4u; r = r + 1u) {
            if (i0 + r < p.m) {
                acc[r] = acc[r] + load_a(i0 + r, q) * bv;
            }
        }
    }
    for (var r = 0u; r < 4u; r = r + 1u) {
        for (var s = 0u; s < 4u; s = s + 1u) {
            if (i0 + r < p.m && j0 + s < p.n) {
                store(i0 + r, j0 + s, acc[r][s]);
            }
        }
    }
}

// B not transposed (B (K, N)): one column j per invocation, adjacent invocations on adjacent
// columns, so on SIMD-across-invocations adapters (lavapipe, SwiftShader) every B load is one
// contiguous vector load and every A load a broadcast; 8 rows per invocation.
@compute @workgroup_size(64)
fn gemm_cols(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    let i0 = gid.y * 8u;
    if (j >= p.n || i0 >= p.m) {
        return;
    }
    var c0 = 0.0; var c1 = 0.0; var c2 = 0.0; var c3 = 0.0;
    var c4 = 0.0; var c5 = 0.0; var c6 = 0.0; var c7 = 0.0;
    let last = p.m - 1u;
    for (var q = 0u; q < p.k; q = q + 1u) {
        let w = blend(bt(q * p.n + j));
        c0 = c0 + load_a(min(i0, last), q) * w;
        c1 = c1 + load_a(min(i0 + 1u, last), q) * w;
        c2 = c2 + load_a(min(i0 + 2u, last), q) * w;
        c3 = c3 + load_a(min(i0 + 3u, last), q) * w;
        c4 = c4 + load_a(min(i0 + 4u, last), q) * w;
        c5 = c5 + load_a(min(i0 + 5u, last), q) * w;
        c6 = c6 + load_a(min(i0 + 6u, last), q) * w;
        c7 = c7 + load_a(min(i0 + 7u, last), q) * w;
    }
    let rows = array<f32, 8>(c0, c1, c2, c3, c4, c5, c6, c7);
    for (var r = 0u; r < 8u; r = r + 1u) {
        if (i0 + r < p.m) {
            store(i0 + r, j, rows[r]);
        }
    }
}

// db[j] += Σ_i A[i, j] with A = dY (M, N): one invocation per column, rows summed in order.
@compute @workgroup_size(256)
fn bias_grad(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.x;
    if (j >= p.n) {
        return;
    }
    var acc = 0.0;
    for (var i = 0u; i < p.m; i = i + 1u) {
        acc = acc + at(i * p.n + j);
    }
    c[j] = c[j] + acc;
}
