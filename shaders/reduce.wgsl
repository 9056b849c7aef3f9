// Workgroup reductions shared by the row-wise loss kernels (xent.wgsl, kl.wgsl), prepended to their
// source: 256 invocations fold a value each into the row's max or sum.

const WG: u32 = 256u;

var<workgroup> red: array<f32, WG>;

fn reduce(lid: u32, v: f32, is_max: bool) -> f32 {
    red[lid] = v;
    var stride = WG / 2u;
    loop {
        if (stride == 0u) { break; }
        workgroupBarrier();
        if (lid < stride) {
            if (is_max) {
                red[lid] = max(red[lid], red[lid + stride]);
            } else {
                red[lid] = red[lid] + red[lid + stride];
            }
        }
        stride = stride / 2u;
    }
    workgroupBarrier();
    let r = red[0];
    workgroupBarrier();
    return r;
}
