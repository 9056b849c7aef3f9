//! The bitnet-studio browser app: Leptos components (`app`), the user's picked files as model
//! files (`files`) and the pipeline's store on the Origin Private File System (`store`). `main.rs`
//! mounts the app.

pub mod app;
pub mod files;
pub mod store;
