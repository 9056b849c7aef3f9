//! Compute pipelines, created once per (shader, entry point) and cached on the [`Gpu`].
//! Every kernel family shares one explicit bind group layout across its entry points, so a single
//! bind group serves a whole sequence of passes.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::device::Gpu;

/// One kernel family: its WGSL source and the binding kinds of its group 0.
pub struct ShaderFamily {
    pub name: &'static str,
    pub source: &'static str,
    pub bindings: &'static [BindingKind],
}

#[derive(Clone, Copy, Debug)]
pub enum BindingKind {
    Uniform,
    StorageRead,
    StorageReadWrite,
}

#[derive(Default)]
pub(crate) struct PipelineCache {
    layouts: RefCell<HashMap<&'static str, Rc<wgpu::BindGroupLayout>>>,
    modules: RefCell<HashMap<&'static str, Rc<(wgpu::ShaderModule, wgpu::PipelineLayout)>>>,
    pipelines: RefCell<HashMap<PipelineKey, Rc<wgpu::ComputePipeline>>>,
}

/// Family, entry point and the values of its `override` constants (as f64 bits).
type PipelineKey = (&'static str, &'static str, Vec<(&'static str, u64)>);

/// Values of a shader's `override` constants, by name. Kernels specialise on layout and mode flags
/// this way instead of branching on uniforms: CPU-like adapters (lavapipe) execute both sides of a
/// uniform branch, so a flag tested in an inner loop costs as much as the work it selects.
pub type Constants = [(&'static str, f64)];

impl Gpu {
    /// The bind group layout of a family (created on first use).
    pub fn layout(&self, fam: &ShaderFamily) -> Rc<wgpu::BindGroupLayout> {
        let cache = &self.pipelines;
        if let Some(l) = cache.layouts.borrow().get(fam.name) {
            return l.clone();
        }
        let entries: Vec<wgpu::BindGroupLayoutEntry> = fam
            .bindings
            .iter()
            .enumerate()
            .map(|(i, kind)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match kind {
                        BindingKind::Uniform => wgpu::BufferBindingType::Uniform,
                        BindingKind::StorageRead => {
                            wgpu::BufferBindingType::Storage { read_only: true }
                        }
                        BindingKind::StorageReadWrite => {
                            wgpu::BufferBindingType::Storage { read_only: false }
                        }
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let layout = Rc::new(self.device.create_bind_group_layout(
            &wgpu::BindGroupLayoutDescriptor {
                label: Some(fam.name),
                entries: &entries,
            },
        ));
        cache.layouts.borrow_mut().insert(fam.name, layout.clone());
        layout
    }

    /// The pipeline of one entry point of a family with the given `override` constants (compiled
    /// on first use; constants the WGSL does not declare are an error of the caller).
    pub fn pipeline(
        &self,
        fam: &ShaderFamily,
        entry: &'static str,
        constants: &Constants,
    ) -> Rc<wgpu::ComputePipeline> {
        let key: PipelineKey = (
            fam.name,
            entry,
            constants.iter().map(|(k, v)| (*k, v.to_bits())).collect(),
        );
        if let Some(p) = self.pipelines.pipelines.borrow().get(&key) {
            return p.clone();
        }
        let module = self.module(fam);
        let pipeline = Rc::new(self.device.create_compute_pipeline(
            &wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&module.1),
                module: &module.0,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    // Every kernel writes its shared memory before reading it.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            },
        ));
        self.pipelines
            .pipelines
            .borrow_mut()
            .insert(key, pipeline.clone());
        pipeline
    }

    fn module(&self, fam: &ShaderFamily) -> Rc<(wgpu::ShaderModule, wgpu::PipelineLayout)> {
        if let Some(m) = self.pipelines.modules.borrow().get(fam.name) {
            return m.clone();
        }
        let layout = self.layout(fam);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(fam.name),
                source: wgpu::ShaderSource::Wgsl(fam.source.into()),
            });
        let pl = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(fam.name),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let m = Rc::new((module, pl));
        self.pipelines
            .modules
            .borrow_mut()
            .insert(fam.name, m.clone());
        m
    }

    /// A bind group of `fam` over whole buffers, in binding order.
    pub fn bind_group(&self, fam: &ShaderFamily, buffers: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let layout = self.layout(fam);
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(fam.name),
            layout: &layout,
            entries: &entries,
        })
    }
}
