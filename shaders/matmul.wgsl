// General matrix product for linear layers, forward and backward, with the λ-blend of ternary
// weights fused into the weight loads (DESIGN.md §2).
//
//   C (M, N) [+]= A'(M, K) · B'(K, N)  (+ bias[j] in the forward pass)
//   A'(i, p) = TRANS_A ? A[p·M + i] : A[i·K + p]
//   B'(p, j) = TRANS_B ? B[j·K + p] : B[p·N + j]
//   BLEND != 0: every B' value is replaced by W + λ·(scale·q(W) − W) as it is loaded (once per load
//   into a tile or registers, not once per multiply), with q from the quantizer statistics.
//
// A linear layer y = x·Wᵀ + b with x (rows, in), W (out, in):
//   forward  y  = gemm(A = x,  B = W, TRANS_B, BLEND), M = rows, N = out, K = in, bias
//   input    dX = gemm(A = dY, B = W, BLEND),          M = rows, N = in,  K = out
//   weight   dW += gemm(A = dY, B = x, TRANS_A),       M = out,  N = in,  K = rows  (STE: dW = dW_eff)
//   bias     db += Σ_rows dY                           (bias_grad)
// Variants:
//   gemm_naive  one output per invocation (the reference);
//   gemm_tiled  16×16 shared-memory tiles (real GPUs);
//   gemm_reg    16×16 outputs per invocation in registers, vec4 loads, no shared memory (CPU-like
//               adapters such as lavapipe, which run invocations as SIMD lanes and pay per lane for
//               every storage load: the larger the register block, the fewer loads per multiply).
//               Needs each operand's contiguous dimension to be a multiple of 4 (see matmul.rs);
//   gemm_reg4   4×4 outputs per invocation with scalar loads, for the shapes gemm_reg cannot take.
// blend_weights writes the λ-blended weights once into a scratch buffer, for adapters where that
// beats blending inside the product (chosen by measurement, see matmul.rs).
// A and B are bound as vec4 arrays (buffers are allocated in multiples of 16 bytes); the scalar
// kernels read single elements from them.
// CPU reference: bitnet_core::cpu::matmul.

// Layout and mode are pipeline constants, not uniforms: each combination is its own pipeline with
// the untaken paths compiled out (adapters that run invocations as SIMD lanes, like lavapipe,
// execute both sides of a branch, even a uniform one).
override TRANS_A: bool = false;
override TRANS_B: bool = false;
override ACCUMULATE: bool = false; // C += result (gradients) instead of C = result
override BLEND: u32 = 0u;          // 0: none, 1: absmean codes, 2: threshold codes
override HAS_BIAS: bool = false;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    lambda: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;  // (M, K), or (K, M) when TRANS_A
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;  // (K, N), or (N, K) when TRANS_B
@group(0) @binding(3) var<storage, read> bias: array<f32>;     // (N,) when HAS_BIAS
@group(0) @binding(4) var<storage, read> stats: array<f32>;    // (4,) quantize.wgsl: mean|W|, cut, scale, count
@group(0) @binding(5) var<storage, read_write> c: array<f32>;  // (M, N)

fn a_at(e: u32) -> f32 {
    return a[e / 4u][e % 4u];
}

fn b_at(e: u32) -> f32 {
    return b[e / 4u][e % 4u];
}

fn load_a(i: u32, q: u32) -> f32 {
    if (TRANS_A) {
        return a_at(q * p.m + i);
    }
    return a_at(i * p.k + q);
}

// The blend's constants, read once per invocation: (λ, cut, scale).
struct Blend {
    lambda: f32,
    cut: f32,
    scale: f32,
}

fn blend_params() -> Blend {
    if (BLEND == 0u) {
        return Blend(0.0, 1.0, 0.0);
    }
    return Blend(p.lambda, stats[1], stats[2]);
}

// The λ-blended weight: W + λ·(scale·q(W) − W); q as in quantize.wgsl.
fn blend(w: f32, bp: Blend) -> f32 {
    if (BLEND == 0u) {
        return w;
    }
    var q: f32;
    if (BLEND == 1u) {
        q = clamp(round(w / bp.cut), -1.0, 1.0);
    } else {
        q = select(0.0, sign(w), abs(w) > bp.cut);
    }
    return w + bp.lambda * (bp.scale * q - w);
}

fn load_b(q: u32, j: u32, bp: Blend) -> f32 {
    if (TRANS_B) {
        return blend(b_at(j * p.k + q), bp);
    }
    return blend(b_at(q * p.n + j), bp);
}

fn store(i: u32, j: u32, acc: f32) {
    var v = acc;
    if (HAS_BIAS) {
        v = v + bias[j];
    }
    let idx = i * p.n + j;
    if (ACCUMULATE) {
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
    let bp = blend_params();
    var acc = 0.0;
    for (var q = 0u; q < p.k; q = q + 1u) {
        acc = acc + load_a(i, q) * load_b(q, j, bp);
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
    let bp = blend_params();
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
            vb = load_b(qb, j, bp);
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

fn blend4(w: vec4<f32>, bp: Blend) -> vec4<f32> {
    return vec4<f32>(blend(w.x, bp), blend(w.y, bp), blend(w.z, bp), blend(w.w, bp));
}

// Zero for inner indices past K (only the layouts whose K is not the contiguous dimension can run
// past it: K need not be a multiple of 4 there).
fn k_row(v: vec4<f32>, kk: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), v, kk < p.k);
}

// The 4×4 block of A' at rows r..r+3 and inner indices 4q..4q+3, as a matrix whose column t is row
// r + t: blk[t][u] = A'(r + t, 4q + u). Rows past M are clamped (computed, never stored).
fn a_block(r: u32, q: u32) -> mat4x4<f32> {
    if (TRANS_A) {
        // A (K, M): a vec4 runs along M. Loaded column u holds A'(r..r+3, 4q + u).
        let m4 = p.m / 4u;
        let col = min(r / 4u, m4 - 1u);
        let k0 = 4u * q;
        let kl = p.k - 1u;
        return transpose(mat4x4<f32>(
            k_row(a[min(k0, kl) * m4 + col], k0),
            k_row(a[min(k0 + 1u, kl) * m4 + col], k0 + 1u),
            k_row(a[min(k0 + 2u, kl) * m4 + col], k0 + 2u),
            k_row(a[min(k0 + 3u, kl) * m4 + col], k0 + 3u),
        ));
    }
    // A (M, K): a vec4 runs along K.
    let k4 = p.k / 4u;
    let ml = p.m - 1u;
    return mat4x4<f32>(
        a[min(r, ml) * k4 + q],
        a[min(r + 1u, ml) * k4 + q],
        a[min(r + 2u, ml) * k4 + q],
        a[min(r + 3u, ml) * k4 + q],
    );
}

// The λ-blended 4×4 block of B' at inner indices 4q..4q+3 and columns s..s+3, as a matrix whose
// column t is column s + t: blk[t][u] = B'(4q + u, s + t). Columns past N are clamped.
fn b_block(s: u32, q: u32, bp: Blend) -> mat4x4<f32> {
    if (TRANS_B) {
        // B (N, K): a vec4 runs along K.
        let k4 = p.k / 4u;
        let nl = p.n - 1u;
        return mat4x4<f32>(
            blend4(b[min(s, nl) * k4 + q], bp),
            blend4(b[min(s + 1u, nl) * k4 + q], bp),
            blend4(b[min(s + 2u, nl) * k4 + q], bp),
            blend4(b[min(s + 3u, nl) * k4 + q], bp),
        );
    }
    // B (K, N): a vec4 runs along N. Loaded column u holds B'(4q + u, s..s+3).
    let n4 = p.n / 4u;
    let col = min(s / 4u, n4 - 1u);
    let k0 = 4u * q;
    let kl = p.k - 1u;
    return transpose(mat4x4<f32>(
        k_row(blend4(b[min(k0, kl) * n4 + col], bp), k0),
        k_row(blend4(b[min(k0 + 1u, kl) * n4 + col], bp), k0 + 1u),
        k_row(blend4(b[min(k0 + 2u, kl) * n4 + col], bp), k0 + 2u),
        k_row(blend4(b[min(k0 + 3u, kl) * n4 + col], bp), k0 + 3u),
    ));
}

// Stores the 4×4 block acc (acc[t][u] = C(i + u, j + t)) inside the bounds of C.
fn store_block(i: u32, j: u32, acc: mat4x4<f32>) {
    for (var t = 0u; t < 4u; t = t + 1u) {
        for (var u = 0u; u < 4u; u = u + 1u) {
            if (i + u < p.m && j + t < p.n) {
                store(i + u, j + t, acc[t][u]);
            }
        }
    }
}

// 8×8 invocations, each computing a 16×16 block of C as 4×4 blocks: a 128×128 block per workgroup.
// Per 4 inner indices an invocation makes 32 vec4 loads for 1024 multiply-adds.
@compute @workgroup_size(8, 8)
fn gemm_reg(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * 16u;
    let j0 = gid.x * 16u;
    if (i0 >= p.m || j0 >= p.n) {
        return;
    }
    let bp = blend_params();
    var c00 = mat4x4<f32>(); var c01 = mat4x4<f32>(); var c02 = mat4x4<f32>(); var c03 = mat4x4<f32>();
    var c10 = mat4x4<f32>(); var c11 = mat4x4<f32>(); var c12 = mat4x4<f32>(); var c13 = mat4x4<f32>();
    var c20 = mat4x4<f32>(); var c21 = mat4x4<f32>(); var c22 = mat4x4<f32>(); var c23 = mat4x4<f32>();
    var c30 = mat4x4<f32>(); var c31 = mat4x4<f32>(); var c32 = mat4x4<f32>(); var c33 = mat4x4<f32>();
    let steps = (p.k + 3u) / 4u;
    for (var q = 0u; q < steps; q = q + 1u) {
        let a0 = transpose(a_block(i0, q));
        let a1 = transpose(a_block(i0 + 4u, q));
        let a2 = transpose(a_block(i0 + 8u, q));
        let a3 = transpose(a_block(i0 + 12u, q));
        let b0 = b_block(j0, q, bp);
        let b1 = b_block(j0 + 4u, q, bp);
        let b2 = b_block(j0 + 8u, q, bp);
        let b3 = b_block(j0 + 12u, q, bp);
        c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
        c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
        c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
        c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
    }
    store_block(i0, j0, c00); store_block(i0, j0 + 4u, c01); store_block(i0, j0 + 8u, c02); store_block(i0, j0 + 12u, c03);
    store_block(i0 + 4u, j0, c10); store_block(i0 + 4u, j0 + 4u, c11); store_block(i0 + 4u, j0 + 8u, c12); store_block(i0 + 4u, j0 + 12u, c13);
    store_block(i0 + 8u, j0, c20); store_block(i0 + 8u, j0 + 4u, c21); store_block(i0 + 8u, j0 + 8u, c22); store_block(i0 + 8u, j0 + 12u, c23);
    store_block(i0 + 12u, j0, c30); store_block(i0 + 12u, j0 + 4u, c31); store_block(i0 + 12u, j0 + 8u, c32); store_block(i0 + 12u, j0 + 12u, c33);
}

// 8×8 invocations, each computing a 4×4 block of C with scalar loads: a 32×32 block per workgroup.
// Rows and columns past the edge are clamped (recomputed, not stored): no branches in the loop.
@compute @workgroup_size(8, 8)
fn gemm_reg4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i0 = gid.y * 4u;
    let j0 = gid.x * 4u;
    if (i0 >= p.m || j0 >= p.n) {
        return;
    }
    let bp = blend_params();
    let i = min(vec4<u32>(i0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.m - 1u));
    let j = min(vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u));
    var acc = mat4x4<f32>();
    for (var q = 0u; q < p.k; q = q + 1u) {
        let bv = vec4<f32>(load_b(q, j.x, bp), load_b(q, j.y, bp), load_b(q, j.z, bp), load_b(q, j.w, bp));
        let av = vec4<f32>(load_a(i.x, q), load_a(i.y, q), load_a(i.z, q), load_a(i.w, q));
        acc += mat4x4<f32>(av * bv.x, av * bv.y, av * bv.z, av * bv.w);
    }
    store_block(i0, j0, acc);
}

// W_eff = W + λ·(scale·q(W) − W) for every element of b (n elements, flat), into c: the scratch
// alternative to blending inside the product.
@compute @workgroup_size(256)
fn blend_weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * 256u;
    if (e >= p.n) {
        return;
    }
    c[e] = blend(b_at(e), blend_params());
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
        acc = acc + a_at(i * p.n + j);
    }
    c[j] = c[j] + acc;
}
