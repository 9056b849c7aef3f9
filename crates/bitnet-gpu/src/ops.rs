//! An op is plain data: a dispatch (a cached pipeline, a bind group and a workgroup count), a
//! buffer-to-buffer copy or a clear. A sequence of ops is encoded into one command buffer, runs of
//! dispatches sharing a compute pass, and submitted at once (WebGPU orders the commands and makes
//! each one's writes visible to the next).

use std::rc::Rc;

use crate::device::Gpu;
use crate::pipelines::{Constants, ShaderFamily};

#[derive(Clone)]
pub enum Op {
    Dispatch {
        label: &'static str,
        pipeline: Rc<wgpu::ComputePipeline>,
        bind_group: wgpu::BindGroup,
        groups: [u32; 3],
    },
    /// `bytes` from `src` at `src_offset` to `dst` at `dst_offset` (multiples of 4).
    Copy {
        src: wgpu::Buffer,
        src_offset: u64,
        dst: wgpu::Buffer,
        dst_offset: u64,
        bytes: u64,
    },
    /// Zeroes a whole buffer.
    Clear(wgpu::Buffer),
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
        Op::Dispatch {
            label: entry,
            pipeline: self.pipeline(fam, entry, constants),
            bind_group: self.bind_group(fam, buffers),
            groups,
        }
    }

    /// Encodes `ops` in order into one command buffer and submits it.
    pub fn submit(&self, ops: &[Op]) {
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("ops") });
        let mut rest = ops;
        while let Some(first) = rest.first() {
            match first {
                Op::Dispatch { .. } => {
                    let run = rest
                        .iter()
                        .take_while(|op| matches!(op, Op::Dispatch { .. }))
                        .count();
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("ops"),
                        timestamp_writes: None,
                    });
                    for op in &rest[..run] {
                        if let Op::Dispatch {
                            pipeline,
                            bind_group,
                            groups,
                            ..
                        } = op
                        {
                            pass.set_pipeline(pipeline);
                            pass.set_bind_group(0, bind_group, &[]);
                            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        }
                    }
                    rest = &rest[run..];
                    continue;
                }
                Op::Copy {
                    src,
                    src_offset,
                    dst,
                    dst_offset,
                    bytes,
                } => enc.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *bytes),
                Op::Clear(buf) => enc.clear_buffer(buf, 0, None),
            }
            rest = &rest[1..];
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
