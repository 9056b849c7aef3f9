//! An op is plain data: a cached pipeline, a bind group and a workgroup count. A sequence of ops is
//! encoded into one compute pass and submitted at once (WebGPU orders dispatches within a pass and
//! makes each one's storage writes visible to the next).

use std::rc::Rc;

use crate::device::Gpu;
use crate::pipelines::{Constants, ShaderFamily};

pub struct Op {
    pub label: &'static str,
    pub pipeline: Rc<wgpu::ComputePipeline>,
    pub bind_group: wgpu::BindGroup,
    pub groups: [u32; 3],
}

impl Gpu {
    /// One dispatch of `entry` of `fam` over `buffers` (bound in order, starting at binding 0).
    pub fn op(
        &self,
        fam: &ShaderFamily,
        entry: &'static str,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Op {
        self.op_with(fam, entry, &[], buffers, groups)
    }

    /// [`Gpu::op`] with values for the entry point's `override` constants.
    pub fn op_with(
        &self,
        fam: &ShaderFamily,
        entry: &'static str,
        constants: &Constants,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Op {
        Op {
            label: entry,
            pipeline: self.pipeline(fam, entry, constants),
            bind_group: self.bind_group(fam, buffers),
            groups,
        }
    }

    /// Encodes `ops` in order into one compute pass and submits it.
    pub fn submit(&self, ops: &[Op]) {
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("ops") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("ops"),
                timestamp_writes: None,
            });
            for op in ops {
                pass.set_pipeline(&op.pipeline);
                pass.set_bind_group(0, &op.bind_group, &[]);
                pass.dispatch_workgroups(op.groups[0], op.groups[1], op.groups[2]);
            }
        }
        self.queue.submit([enc.finish()]);
    }

    /// Workgroups to cover `n` items with `per_group` items each, in a 2-D grid when one dimension
    /// would pass the adapter's limit. Kernels recover the flat index as `wid.x + wid.y * nwg.x`.
    pub fn groups_for(&self, n: u64, per_group: u64) -> [u32; 3] {
        let g = n.div_ceil(per_group).max(1);
        let max = self.limits.max_compute_workgroups_per_dimension.max(1) as u64;
        if g <= max {
            [g as u32, 1, 1]
        } else {
            [max as u32, g.div_ceil(max) as u32, 1]
        }
    }
}
