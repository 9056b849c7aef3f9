//! Device creation and the adapter report. We request the adapter's own limits (not wgpu's
//! conservative defaults) so large models can use what the hardware offers, and report features.

use wgpu::{Adapter, Device, Queue};

use crate::error::GpuError;
use crate::pipelines::PipelineCache;

/// A device, its queue, what the adapter is, and the pipelines built on it so far.
pub struct Gpu {
    pub device: Device,
    pub queue: Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pub(crate) pipelines: PipelineCache,
    /// 16-byte buffers bound where an entry point does not use a binding of its family: one for
    /// every read-only slot, and distinct ones for read-write slots (WebGPU forbids a buffer in a
    /// read-only and a writable slot at once, and two writable slots that overlap).
    pub(crate) dummy: wgpu::Buffer,
    pub(crate) dummy_rw: [wgpu::Buffer; 4],
    /// The linear-layer plan once [`Gpu::tune_gemm`] has measured it.
    pub(crate) gemm_plan: std::cell::Cell<Option<crate::matmul::GemmPlan>>,
    /// Bytes of every storage buffer created so far (none is counted back when dropped).
    pub(crate) allocated: std::cell::Cell<u64>,
}

/// What `bitnet info` and the app show about an adapter.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdapterReport {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub vendor: u32,
    pub device: u32,
    pub limits: Vec<(String, u64)>,
    pub features: Vec<String>,
}

impl Gpu {
    /// Picks the high-performance adapter and creates a device with its full limits.
    pub async fn new() -> Result<Gpu, GpuError> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                // We want the real limits: large models need every byte of binding size.
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        Self::from_adapter(adapter).await
    }

    pub async fn from_adapter(adapter: Adapter) -> Result<Gpu, GpuError> {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("bitnet"),
                required_features: wgpu::Features::empty(),
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::RequestDevice {
                adapter: info.name.clone(),
                message: e.to_string(),
            })?;
        let unused = |label| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
        };
        let dummy = unused("unused read binding");
        let dummy_rw = [0, 1, 2, 3].map(|_| unused("unused read-write binding"));
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            features,
            pipelines: PipelineCache::default(),
            dummy,
            dummy_rw,
            gemm_plan: Default::default(),
            allocated: Default::default(),
        })
    }

    pub fn report(&self) -> AdapterReport {
        let l = &self.limits;
        let limits = vec![
            ("max_buffer_size".to_string(), l.max_buffer_size),
            (
                "max_storage_buffer_binding_size".to_string(),
                l.max_storage_buffer_binding_size,
            ),
            (
                "max_storage_buffers_per_shader_stage".to_string(),
                l.max_storage_buffers_per_shader_stage as u64,
            ),
            ("max_bind_groups".to_string(), l.max_bind_groups as u64),
            (
                "max_compute_invocations_per_workgroup".to_string(),
                l.max_compute_invocations_per_workgroup as u64,
            ),
            (
                "max_compute_workgroup_size_x".to_string(),
                l.max_compute_workgroup_size_x as u64,
            ),
            (
                "max_compute_workgroup_storage_size".to_string(),
                l.max_compute_workgroup_storage_size as u64,
            ),
            (
                "max_compute_workgroups_per_dimension".to_string(),
                l.max_compute_workgroups_per_dimension as u64,
            ),
            (
                "max_uniform_buffer_binding_size".to_string(),
                l.max_uniform_buffer_binding_size,
            ),
        ];
        AdapterReport {
            name: self.info.name.clone(),
            backend: format!("{:?}", self.info.backend),
            device_type: format!("{:?}", self.info.device_type),
            driver: self.info.driver.clone(),
            driver_info: self.info.driver_info.clone(),
            vendor: self.info.vendor,
            device: self.info.device,
            limits,
            features: self
                .features
                .iter_names()
                .map(|(n, _)| n.to_string())
                .collect(),
        }
    }

    /// Largest buffer a single storage binding may cover.
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// Bytes of all storage buffers created on this device so far: the peak of a run that frees
    /// nothing, such as a benchmark.
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.get()
    }

    /// Fails with a message naming `tensor` when `bytes` exceed one storage binding.
    pub fn check_binding(&self, tensor: &str, bytes: u64) -> Result<(), GpuError> {
        let l = &self.limits;
        if bytes > l.max_buffer_size {
            return Err(GpuError::Limit {
                tensor: tensor.into(),
                needed: bytes,
                limit_name: "maxBufferSize",
                limit: l.max_buffer_size,
            });
        }
        let b = l.max_storage_buffer_binding_size;
        if bytes > b {
            return Err(GpuError::Limit {
                tensor: tensor.into(),
                needed: bytes,
                limit_name: "maxStorageBufferBindingSize",
                limit: b,
            });
        }
        Ok(())
    }
}
