//! Buffers: upload, allocate, and read back asynchronously (map_async + a oneshot channel; on native
//! the device is polled to drive the callback, in the browser the event loop does it).

use wgpu::util::DeviceExt;

use crate::device::Gpu;
use crate::error::GpuError;

impl Gpu {
    /// A storage buffer initialised from `data` (zero-padded to a multiple of 16 bytes, so kernels
    /// may read it as vec4s), checked against the binding limit.
    pub fn upload(&self, name: &str, data: &[u8]) -> Result<wgpu::Buffer, GpuError> {
        let size = padded(data.len() as u64);
        self.check_binding(name, size)?;
        self.allocated.set(self.allocated.get() + size);
        let padded_data;
        let contents = if size == data.len() as u64 {
            data
        } else {
            let mut v = data.to_vec();
            v.resize(size as usize, 0);
            padded_data = v;
            &padded_data
        };
        Ok(self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(name),
                contents,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            }))
    }

    /// Overwrites the start of `dst` with `values` (queued before the next submission's work).
    pub fn write_f32(&self, dst: &wgpu::Buffer, values: &[f32]) {
        self.queue
            .write_buffer(dst, 0, bytemuck::cast_slice(values));
    }

    /// A uniform buffer from `data`.
    pub fn uniform(&self, name: &str, data: &[u8]) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(name),
                contents: data,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// A zeroed storage buffer of `bytes` (rounded up to a multiple of 16, at least 16), checked
    /// against the binding limit.
    pub fn storage(&self, name: &str, bytes: u64) -> Result<wgpu::Buffer, GpuError> {
        let bytes = padded(bytes);
        self.check_binding(name, bytes)?;
        self.allocated.set(self.allocated.get() + bytes);
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(name),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// Copies the first `bytes` of `src` into a staging buffer and reads them back.
    pub async fn read(
        &self,
        what: &str,
        src: &wgpu::Buffer,
        bytes: u64,
    ) -> Result<Vec<u8>, GpuError> {
        let size = bytes.next_multiple_of(4);
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("read"),
            });
        enc.copy_buffer_to_buffer(src, 0, &staging, 0, size);
        self.queue.submit([enc.finish()]);

        let (tx, rx) = futures_channel::oneshot::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback {
                what: what.into(),
                message: e.to_string(),
            })?;
        let mapped = rx.await.map_err(|_| GpuError::Readback {
            what: what.into(),
            message: "the device was lost".into(),
        })?;
        mapped.map_err(|e| GpuError::Readback {
            what: what.into(),
            message: e.to_string(),
        })?;
        let out = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| GpuError::Readback {
                    what: what.into(),
                    message: e.to_string(),
                })?;
            view[..bytes as usize].to_vec()
        };
        staging.unmap();
        Ok(out)
    }
}

impl Gpu {
    /// Reads back `n` f32 values.
    pub async fn read_f32(
        &self,
        what: &str,
        src: &wgpu::Buffer,
        n: usize,
    ) -> Result<Vec<f32>, GpuError> {
        let bytes = self.read(what, src, 4 * n as u64).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Reads back `n` u32 values.
    pub async fn read_u32(
        &self,
        what: &str,
        src: &wgpu::Buffer,
        n: usize,
    ) -> Result<Vec<u32>, GpuError> {
        let bytes = self.read(what, src, 4 * n as u64).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// A storage buffer holding `v`, named for errors.
    pub fn upload_f32(&self, name: &str, v: &[f32]) -> Result<wgpu::Buffer, GpuError> {
        if v.is_empty() {
            return self.storage(name, 4);
        }
        self.upload(name, f32_bytes(v))
    }
}

/// f32 values as little-endian bytes.
pub fn f32_bytes(v: &[f32]) -> &[u8] {
    bytemuck::cast_slice(v)
}

/// Storage buffers are allocated in whole vec4s: at least 16 bytes, a multiple of 16.
fn padded(bytes: u64) -> u64 {
    bytes.max(16).next_multiple_of(16)
}
