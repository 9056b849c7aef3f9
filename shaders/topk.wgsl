// The K largest logits of every row of (rows, V), best first (ties: the lower id), and their
// probabilities under the full softmax at temperature 1 — the teacher's top-K of distillation
// (kl_topk.wgsl) and of the soft-label sidecar. One workgroup per row: the row's logsumexp, then
// K rounds, each the best logit below the previous round's (a (value, id) order, so no mark is
// kept per logit). K ≤ V is the caller's to check; a round that finds nothing writes id 0, p 0.
// CPU reference: bitnet_core::cpu::kl::top_k.

struct Params {
    rows: u32,
    vocab: u32,
    k: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;     // (rows, V)
@group(0) @binding(2) var<storage, read_write> ids: array<u32>;  // (rows, K)
@group(0) @binding(3) var<storage, read_write> probs: array<f32>; // (rows, K)

// WG, red and reduce(): reduce.wgsl, prepended.

const NONE: u32 = 0xffffffffu;

var<workgroup> best_v: array<f32, WG>;
var<workgroup> best_i: array<u32, WG>;

// (v, i) comes before (w, j): larger value, or the same value and the lower id.
fn before(v: f32, i: u32, w: f32, j: u32) -> bool {
    return j == NONE || (i != NONE && (v > w || (v == w && i < j)));
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = wid.x + wid.y * nwg.x;
    if (r >= p.rows) { return; }
    let o = r * p.vocab;
    var m = -3.402823e38;
    for (var j = lid.x; j < p.vocab; j = j + WG) {
        m = max(m, logits[o + j]);
    }
    let mx = reduce(lid.x, m, true);
    var s = 0.0;
    for (var j = lid.x; j < p.vocab; j = j + WG) {
        s = s + exp(logits[o + j] - mx);
    }
    let lse = mx + log(reduce(lid.x, s, false));
    var prev_v = 0.0;
    var prev_i = NONE;
    for (var k = 0u; k < p.k; k = k + 1u) {
        var bv = 0.0;
        var bi = NONE;
        for (var j = lid.x; j < p.vocab; j = j + WG) {
            let v = logits[o + j];
            let below = prev_i == NONE || before(prev_v, prev_i, v, j);
            if (below && before(v, j, bv, bi)) {
                bv = v;
                bi = j;
            }
        }
        best_v[lid.x] = bv;
        best_i[lid.x] = bi;
        var stride = WG / 2u;
        loop {
            if (stride == 0u) { break; }
            workgroupBarrier();
            if (lid.x < stride) {
                let w = best_v[lid.x + stride];
                let wi = best_i[lid.x + stride];
                if (before(w, wi, best_v[lid.x], best_i[lid.x])) {
                    best_v[lid.x] = w;
                    best_i[lid.x] = wi;
                }
            }
            stride = stride / 2u;
        }
        workgroupBarrier();
        prev_v = best_v[0];
        prev_i = best_i[0];
        workgroupBarrier();
        if (lid.x == 0u) {
            if (prev_i == NONE) {
                ids[r * p.k + k] = 0u;
                probs[r * p.k + k] = 0.0;
            } else {
                ids[r * p.k + k] = prev_i;
                probs[r * p.k + k] = exp(prev_v - lse);
            }
        }
    }
}
