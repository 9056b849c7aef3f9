//! The app's root: finds the adapter, opens the browser store (and what an earlier session left in
//! it), and shows the stepper — model, data, train, results — plus the workshop and the GPU page.
//! The user can jump between pages; every job runs in bitnet-pipeline, nothing is uploaded.

use std::rc::Rc;

use bitnet_gpu::Gpu;
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

use crate::jobs;
use crate::pages::data::DataPage;
use crate::pages::gpu::GpuPage;
use crate::pages::model::ModelPage;
use crate::pages::results::ResultsPage;
use crate::pages::train::TrainPage;
use crate::pages::workshop::WorkshopPage;
use crate::state::{AdapterState, Page, Studio};

/// Finds the adapter; explains plainly when the browser has no WebGPU.
async fn probe(st: Studio) {
    let has_gpu = web_sys::window()
        .map(|w| w.navigator())
        .and_then(|n| js_sys::Reflect::get(&n, &"gpu".into()).ok())
        .is_some_and(|g| !g.is_undefined() && !g.is_null());
    if !has_gpu {
        st.adapter.set(AdapterState::Missing(
            "This browser has no WebGPU (navigator.gpu is missing). Use a recent Chrome, Edge or Safari, \
             or start Chromium with --enable-unsafe-webgpu."
                .into(),
        ));
        return;
    }
    match Gpu::new().await {
        Ok(gpu) => {
            let mut report = gpu.report();
            if report.name.is_empty() {
                report.name = browser_adapter_name().await;
            }
            st.adapter.set(AdapterState::Ready {
                report,
                max_buffer: gpu.limits.max_buffer_size,
                max_binding: gpu.limits.max_storage_buffer_binding_size,
            });
            st.gpu.set_value(Some(Rc::new(gpu)));
        }
        Err(e) => st.adapter.set(AdapterState::Missing(format!(
            "WebGPU is present but gave no adapter: {e}"
        ))),
    }
}

/// Browsers hide the adapter's device name; `GPUAdapter.info` still gives vendor and architecture.
async fn browser_adapter_name() -> String {
    use js_sys::Reflect;
    let fallback = "WebGPU adapter (name hidden by the browser)".to_string();
    let Some(gpu) = web_sys::window()
        .map(|w| w.navigator())
        .and_then(|n| Reflect::get(&n, &"gpu".into()).ok())
    else {
        return fallback;
    };
    let Some(promise) = Reflect::get(&gpu, &"requestAdapter".into())
        .ok()
        .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        .and_then(|f| f.call0(&gpu).ok())
        .and_then(|p| p.dyn_into::<js_sys::Promise>().ok())
    else {
        return fallback;
    };
    let Ok(adapter) = wasm_bindgen_futures::JsFuture::from(promise).await else {
        return fallback;
    };
    let info = Reflect::get(&adapter, &"info".into()).unwrap_or_default();
    let field = |k: &str| {
        Reflect::get(&info, &k.into())
            .ok()
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    let parts: Vec<String> = [field("vendor"), field("architecture"), field("description")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        fallback
    } else {
        parts.join(" ")
    }
}

/// Whether a page's step is done (a tick in the stepper).
fn done(st: Studio, page: Page) -> bool {
    match page {
        Page::Model => st.source.get().is_some(),
        Page::Data => st.data.get().is_some_and(|d| d.examples >= 2),
        Page::Train => st.results.get().manifest.is_some(),
        Page::Results => st.results.get().comparison.is_some(),
        Page::Workshop => st.workshop.get().iter().any(|r| r.done),
        Page::Gpu => matches!(st.adapter.get(), AdapterState::Ready { .. }),
    }
}

#[component]
pub fn App() -> impl IntoView {
    let st = Studio::new();
    provide_context(st);
    spawn_local(async move {
        probe(st).await;
        jobs::open_store(st).await;
        if st.resume.get_untracked().is_some() {
            st.page.set(Page::Train);
        }
    });
    let page_view = move |page: Page, body: AnyView| {
        view! {
            <div class="page" id=format!("page-{}", page.id()) style:display=move || if st.page.get() == page { "block" } else { "none" }>
                {body}
            </div>
        }
    };
    view! {
        <header>
            <h1>"bitnet-" <span>"studio"</span></h1>
            <p>"Local models to BitNet b1.58 ternary, on your own GPU. Nothing leaves this page."</p>
            <p class="busy" id="busy">{move || st.busy.get().map(|b| format!("GPU busy: {b}…"))}</p>
        </header>
        <nav class="stepper">
            {Page::ALL.iter().map(|&p| view! {
                <button
                    id=format!("nav-{}", p.id())
                    class:active=move || st.page.get() == p
                    class:done=move || done(st, p)
                    on:click=move |_| st.page.set(p)
                >{p.title()}</button>
            }).collect_view()}
        </nav>
        {move || match st.adapter.get() {
            AdapterState::Missing(msg) => Some(view! { <p class="error banner" id="no-webgpu">{msg}</p> }),
            _ => None,
        }}
        {move || st.store_error.get().map(|e| view! { <p class="error banner" id="store-error">{e}</p> })}
        <main>
            {page_view(Page::Model, view! { <ModelPage/> }.into_any())}
            {page_view(Page::Data, view! { <DataPage/> }.into_any())}
            {page_view(Page::Train, view! { <TrainPage/> }.into_any())}
            {page_view(Page::Results, view! { <ResultsPage/> }.into_any())}
            {page_view(Page::Workshop, view! { <WorkshopPage/> }.into_any())}
            {page_view(Page::Gpu, view! { <GpuPage/> }.into_any())}
        </main>
    }
}
