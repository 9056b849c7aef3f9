//! The bitnet-studio browser app: a Leptos front end over bitnet-pipeline, with the user's files
//! read in place, the browser's private storage (OPFS) as the run's store, and WebGPU.

pub mod app;
pub mod chart;
pub mod download;
pub mod files;
pub mod jobs;
pub mod pages;
pub mod source;
pub mod state;
pub mod store;
