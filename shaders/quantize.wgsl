// Ternary quantization of one weight tensor (DESIGN.md §2), in four passes that never leave the GPU:
//   1. sum_abs        — each workgroup reduces Σ|W| over a grid-strided slice into partials[wg]
//   2. finish_mean    — one workgroup reduces the partials: mean|W|, the cut (γ or Δ) and the scale
//   3. sum_above_cut  — threshold + optimal scale only: Σ|W| and count over |W| > Δ, per workgroup
//      finish_selected — one workgroup reduces those: scale = mean |W| over the selected weights
//   4. encode         — one invocation per 16 weights writes one u32 of 2-bit codes
// The u32 words, read as little-endian bytes, are exactly the packed 2-bit layout of docs/FORMAT.md:
// code c = q + 1, byte = c0<<6 | c1<<4 | c2<<2 | c3, first weight in the high bits, tail code 1.
// CPU reference: bitnet_core::quant (stats, codes_with) and bitnet_core::pack.

struct Params {
    n: u32,            // number of weights
    mode: u32,         // 0 = absmean, 1 = threshold
    scale_mode: u32,   // threshold only: 0 = optimal (mean of selected), 1 = absmean (mean|W|)
    ratio: f32,        // threshold ratio r: Δ = r·mean|W|
    num_partials: u32, // workgroups of the reduction passes
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const WG: u32 = 256u;
const ABSMEAN_EPS: f32 = 1e-5;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;                       // (n,) W flattened row-major
@group(0) @binding(2) var<storage, read_write> partials: array<vec2<f32>>;    // (num_partials,) (Σ, count)
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;             // (4,) mean|W|, cut, scale, selected
@group(0) @binding(4) var<storage, read_write> packed: array<u32>;            // (ceil(n/16),) 2-bit codes

var<workgroup> red: array<vec2<f32>, WG>;

// Tree reduction of red[] within one workgroup; the result lands in red[0].
fn reduce_workgroup(lid: u32) {
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
}

@compute @workgroup_size(256)
fn sum_abs(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    var acc = 0.0;
    var i = wid.x * WG + lid.x;
    let stride = p.num_partials * WG;
    while (i < p.n) {
        acc = acc + abs(w[i]);
        i = i + stride;
    }
    red[lid.x] = vec2<f32>(acc, 0.0);
    reduce_workgroup(lid.x);
    if (lid.x == 0u) {
        partials[wid.x] = red[0];
    }
}

// Reduces partials[0..num_partials] into red[0] with one workgroup.
fn reduce_partials(lid: u32) {
    var acc = vec2<f32>(0.0, 0.0);
    var i = lid;
    while (i < p.num_partials) {
        acc = acc + partials[i];
        i = i + WG;
    }
    red[lid] = acc;
    reduce_workgroup(lid);
}

@compute @workgroup_size(256)
fn finish_mean(@builtin(local_invocation_id) lid: vec3<u32>) {
    reduce_partials(lid.x);
    if (lid.x == 0u) {
        let mean = red[0].x / max(f32(p.n), 1.0);
        stats[0] = mean;
        if (p.mode == 0u) {
            let gamma = max(mean, ABSMEAN_EPS);
            stats[1] = gamma;
            stats[2] = gamma;
        } else {
            stats[1] = p.ratio * mean;
            // The absmean scale; finish_selected overwrites it for the optimal scale.
            stats[2] = mean;
        }
        stats[3] = 0.0;
    }
}

@compute @workgroup_size(256)
fn sum_above_cut(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let cut = stats[1];
    var acc = vec2<f32>(0.0, 0.0);
    var i = wid.x * WG + lid.x;
    let stride = p.num_partials * WG;
    while (i < p.n) {
        let a = abs(w[i]);
        if (a > cut) {
            acc = acc + vec2<f32>(a, 1.0);
        }
        i = i + stride;
    }
    red[lid.x] = acc;
    reduce_workgroup(lid.x);
    if (lid.x == 0u) {
        partials[wid.x] = red[0];
    }
}

@compute @workgroup_size(256)
fn finish_selected(@builtin(local_invocation_id) lid: vec3<u32>) {
    reduce_partials(lid.x);
    if (lid.x == 0u) {
        let s = red[0];
        stats[3] = s.y;
        if (s.y > 0.0) {
            stats[2] = s.x / s.y;
        } else {
            // Every code is 0: any scale is optimal; keep it positive like absmean's γ.
            stats[2] = max(stats[0], ABSMEAN_EPS);
        }
    }
}

// The code c = q + 1 of weight x.
fn code_of(x: f32, cut: f32) -> u32 {
    if (p.mode == 0u) {
        // WGSL round() is round-half-to-even, like PyTorch's round and Rust's round_ties_even.
        let q = clamp(round(x / cut), -1.0, 1.0);
        return u32(i32(q) + 1);
    }
    if (abs(x) > cut) {
        return select(0u, 2u, x > 0.0);
    }
    return 1u;
}

@compute @workgroup_size(256)
fn encode(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let cut = stats[1];
    let words = (p.n + 15u) / 16u;
    var word_index = gid.x;
    let stride = nwg.x * WG;
    while (word_index < words) {
        var word = 0u;
        for (var j = 0u; j < 16u; j = j + 1u) {
            let idx = word_index * 16u + j;
            var c = 1u; // padding: a zero weight
            if (idx < p.n) {
                c = code_of(w[idx], cut);
            }
            // Byte j/4 of the little-endian word; within it the first weight takes the high bits.
            let shift = 8u * (j / 4u) + (6u - 2u * (j % 4u));
            word = word | (c << shift);
        }
        packed[word_index] = word;
        word_index = word_index + stride;
    }
}
