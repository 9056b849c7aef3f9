//! Attention over a KV cache (shaders/decode.wgsl): the decode step of generation, where each
//! sequence of a batch adds one token at its own position. CPU reference:
//! `bitnet_core::cpu::attention::{decode_attention, rope_at}`.

// Op builders take their buffers one by one, in binding order.
#![allow(clippy::too_many_arguments)]

use crate::device::Gpu;
use crate::error::GpuError;
use crate::ops::Op;
use crate::pipelines::{BindingKind as B, ShaderFamily};

pub const DECODE: ShaderFamily = ShaderFamily {
    name: "decode",
    source: include_str!("../../../shaders/decode.wgsl"),
    bindings: &[
        B::Uniform,
        B::StorageRead,      // a
        B::StorageRead,      // bb
        B::StorageRead,      // cc
        B::StorageRead,      // pos
        B::StorageReadWrite, // kc
        B::StorageReadWrite, // vc
        B::StorageReadWrite, // scores
        B::StorageReadWrite, // out
    ],
};

/// Longest KV cache (positions per sequence): the softmax loops 3·(pos + 1) times per invocation,
/// which must stay under lavapipe's 65535 loop iterations.
pub const MAX_CACHE: u32 = 16384;

/// Shape of a decode step: batch, query heads, kv heads, head dimension, cache positions.
#[derive(Debug, Clone, Copy)]
pub struct DecodeShape {
    pub b: u32,
    pub hq: u32,
    pub hkv: u32,
    pub d: u32,
    pub cap: u32,
}

impl DecodeShape {
    fn check(&self) -> Result<(), GpuError> {
        let DecodeShape {
            hq, hkv, d, cap, ..
        } = *self;
        if d == 0 || d % 2 != 0 || hkv == 0 || hq % hkv != 0 || cap == 0 || cap > MAX_CACHE {
            return Err(GpuError::Device {
                what: "decode attention".into(),
                message: format!(
                    "needs an even head dimension (got {d}), kv heads dividing the query heads ({hkv} kv, {hq} query) and 1 to {MAX_CACHE} cache positions (got {cap})"
                ),
            });
        }
        Ok(())
    }

    fn params(&self, gpu: &Gpu, h: u32, len: u32) -> wgpu::Buffer {
        let scale = 1.0 / (self.d as f32).sqrt();
        let p = [
            self.b,
            h,
            self.hkv,
            self.d,
            self.cap,
            len,
            scale.to_bits(),
            0,
        ];
        gpu.uniform("decode", bytemuck::bytes_of(&p))
    }
}

impl Gpu {
    /// out (B, heads, D) = RoPE of x (B, heads, D), row b at position pos[b].
    pub fn rope_at(
        &self,
        shape: DecodeShape,
        heads: u32,
        x: &wgpu::Buffer,
        cos: &wgpu::Buffer,
        sin: &wgpu::Buffer,
        pos: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Result<Op, GpuError> {
        shape.check()?;
        let u = shape.params(self, heads, 0);
        let w = &self.dummy_rw;
        let n = shape.b as u64 * heads as u64 * (shape.d / 2) as u64;
        Ok(self.op(
            &DECODE,
            "rope_at",
            &[&u, x, cos, sin, pos, &w[0], &w[1], &w[2], out],
            self.groups_for(n, 256),
        ))
    }

    /// Writes k and v (B, Hkv·D) into the caches at row pos[b], then attends: out (B, Hq, D) from
    /// q (B, Hq, D) over cache rows 0..=pos[b]. `scores` holds B·Hq·cap values; `len` bounds the
    /// positions (max pos + 1, at most cap).
    pub fn decode_attention(
        &self,
        shape: DecodeShape,
        len: u32,
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        pos: &wgpu::Buffer,
        kc: &wgpu::Buffer,
        vc: &wgpu::Buffer,
        scores: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Result<Vec<Op>, GpuError> {
        shape.check()?;
        let DecodeShape { b, hq, hkv, d, cap } = shape;
        let len = len.clamp(1, cap);
        let r = &self.dummy;
        let w = &self.dummy_rw;
        let u = shape.params(self, hq, len);
        let (b, hq, hkv, d) = (b as u64, hq as u64, hkv as u64, d as u64);
        Ok(vec![
            self.op(
                &DECODE,
                "append",
                &[&u, k, v, r, pos, kc, vc, &w[0], &w[1]],
                self.groups_for(b * hkv * d, 256),
            ),
            self.op(
                &DECODE,
                "scores",
                &[&u, q, r, r, pos, kc, vc, scores, &w[0]],
                self.groups_for(b * hq * len as u64, 256),
            ),
            self.op(
                &DECODE,
                "softmax",
                &[&u, r, r, r, pos, &w[0], &w[1], scores, &w[2]],
                self.groups_for(b * hq, 64),
            ),
            self.op(
                &DECODE,
                "weighted",
                &[&u, r, r, r, pos, kc, vc, scores, out],
                self.groups_for(b * hq * d, 256),
            ),
        ])
    }
}
