//! bitnet-pipeline: the job of bitnet-studio as an async library that the CLI and the browser app
//! both drive — load a model, let it write its own training data, train it toward ternary with
//! checkpoints and metrics, evaluate perplexity, pack and export, and `run` all of it resumably.
//!
//! It knows no filesystem, no clock of the OS, no threads and no terminal: it reads and writes
//! through a [`Store`], tells what happens through typed [`Event`]s, and is steered (pause,
//! resume, cancel between steps) through a [`Control`]. Builds for native and wasm32.

pub mod control;
pub mod demo;
pub mod error;
pub mod eval;
pub mod events;
pub mod export;
pub mod generate;
pub mod grads;
pub mod load;
pub mod quality;
pub mod run;
pub mod selfgen;
pub mod store;
pub mod task;
pub mod train;

use std::cell::RefCell;

use bitnet_gpu::Gpu;

pub use control::{Control, RunState};
pub use error::{PipelineError, Result};
pub use events::Event;
pub use store::{MemoryStore, Prefixed, Store, StoreError, StoreFiles};

/// What every job runs with: the GPU, the control handle, and where its events go.
pub struct Ctx<'a> {
    pub gpu: &'a Gpu,
    pub control: Control,
    on_event: RefCell<Box<dyn FnMut(Event) + 'a>>,
}

impl<'a> Ctx<'a> {
    pub fn new(gpu: &'a Gpu, control: Control, on_event: impl FnMut(Event) + 'a) -> Ctx<'a> {
        Ctx {
            gpu,
            control,
            on_event: RefCell::new(Box::new(on_event)),
        }
    }

    /// A context whose events go nowhere.
    pub fn quiet(gpu: &'a Gpu) -> Ctx<'a> {
        Ctx::new(gpu, Control::new(), |_| {})
    }

    /// Hands `event` to the shell.
    pub fn emit(&self, event: Event) {
        (self.on_event.borrow_mut())(event)
    }
}

/// A clock in milliseconds since it was made (`performance.now()` in a browser).
pub fn clock() -> impl Fn() -> f64 {
    let start = web_time::Instant::now();
    move || start.elapsed().as_secs_f64() * 1e3
}

/// `run` on the built-in demo model: the model is written into `store` under
/// [`demo::DEMO_MODEL_FOLDER`] (so it can be inspected and downloaded) and run from there.
pub async fn run_demo<S: Store>(ctx: &Ctx<'_>, store: &S) -> Result<run::RunReport> {
    let model = demo::demo_model()?;
    for (name, bytes) in &model.0 {
        store
            .put(&format!("{}/{name}", demo::DEMO_MODEL_FOLDER), bytes)
            .await?;
    }
    let files = StoreFiles::open(store, demo::DEMO_MODEL_FOLDER).await?;
    let name = store.display(demo::DEMO_MODEL_FOLDER);
    run::run(ctx, &files, &name, store, &demo::demo_run_config()?).await
}
