//! The app's root component. For now: the WebGPU adapter (or why there is none), a picker for local
//! model files (or a whole folder), and the parsed model summary with the memory a fine-tune needs
//! against the adapter's limits. The user's files are read in place; nothing is uploaded.

use bitnet_core::model::Model;
use bitnet_core::summary::{ModelSummary, human_bytes};
use bitnet_core::tokenizer::Tokenizer;
use bitnet_gpu::selftest::Check;
use bitnet_gpu::{AdapterReport, Gpu};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

use crate::files::BrowserFiles;

#[derive(Clone)]
enum AdapterState {
    Probing,
    Missing(String),
    Ready {
        report: AdapterReport,
        max_buffer: u64,
        max_binding: u64,
    },
}

#[derive(Clone)]
enum ModelState {
    Empty,
    Loading(u32),
    Loaded(Box<ModelSummary>),
    Failed(String),
}

/// Finds the adapter; explains plainly when the browser has no WebGPU.
async fn probe() -> AdapterState {
    let has_gpu = web_sys::window()
        .map(|w| w.navigator())
        .and_then(|n| js_sys::Reflect::get(&n, &"gpu".into()).ok())
        .is_some_and(|g| !g.is_undefined() && !g.is_null());
    if !has_gpu {
        return AdapterState::Missing(
            "This browser has no WebGPU (navigator.gpu is missing). Use a recent Chrome, Edge or Safari, \
             or start Chromium with --enable-unsafe-webgpu."
                .into(),
        );
    }
    match Gpu::new().await {
        Ok(gpu) => {
            let mut report = gpu.report();
            if report.name.is_empty() {
                report.name = browser_adapter_name().await;
            }
            AdapterState::Ready {
                report,
                max_buffer: gpu.limits.max_buffer_size,
                max_binding: gpu.limits.max_storage_buffer_binding_size,
            }
        }
        Err(e) => AdapterState::Missing(format!("WebGPU is present but gave no adapter: {e}")),
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

async fn load(files: BrowserFiles) -> ModelState {
    let model = match Model::open(&files).await {
        Ok(m) => m,
        Err(e) => return ModelState::Failed(e.to_string()),
    };
    let vocab = match &model.tokenizer_json {
        Some(b) => match Tokenizer::from_bytes("tokenizer.json", b) {
            Ok(t) => Some(t.vocab_size()),
            Err(e) => return ModelState::Failed(e.to_string()),
        },
        None => None,
    };
    ModelState::Loaded(Box::new(ModelSummary::new(&model, vocab)))
}

#[derive(Clone)]
enum SelftestState {
    Idle,
    Running,
    Done(Vec<Check>),
    Failed(String),
}

#[component]
pub fn App() -> impl IntoView {
    let (adapter, set_adapter) = signal(AdapterState::Probing);
    spawn_local(async move { set_adapter.set(probe().await) });
    let (model, set_model) = signal(ModelState::Empty);

    let (selftest, set_selftest) = signal(SelftestState::Idle);
    let run_selftest = move |_| {
        set_selftest.set(SelftestState::Running);
        spawn_local(async move {
            let state = match Gpu::new().await {
                Ok(gpu) => SelftestState::Done(bitnet_gpu::selftest::run_all(&gpu).await),
                Err(e) => SelftestState::Failed(e.to_string()),
            };
            set_selftest.set(state);
        });
    };

    let on_files = move |ev: leptos::ev::Event| {
        let input: web_sys::HtmlInputElement = event_target(&ev);
        let Some(list) = input.files() else { return };
        if list.length() == 0 {
            return;
        }
        set_model.set(ModelState::Loading(list.length()));
        let files = BrowserFiles::new(&list);
        spawn_local(async move { set_model.set(load(files).await) });
    };

    view! {
        <header>
            <h1>"bitnet-" <span>"studio"</span></h1>
            <p>"Local models to BitNet b1.58 ternary, on your own GPU. Nothing leaves this page."</p>
        </header>
        <main>
            <section id="adapter">
                <h2>"GPU adapter"</h2>
                {move || adapter_view(adapter.get())}
                <h2 class="spaced">"Self-test"</h2>
                <p class="muted">"Runs every GPU kernel on this adapter against its CPU reference."</p>
                <button id="run-selftest" on:click=run_selftest disabled=move || matches!(selftest.get(), SelftestState::Running)>
                    "Run self-test"
                </button>
                {move || selftest_view(selftest.get())}
            </section>
            <section id="model">
                <h2>"Model"</h2>
                <div class="pickers">
                    <label>
                        "Choose files…"
                        <input id="pick-files" type="file" multiple=true accept=".json,.safetensors" on:change=on_files />
                    </label>
                    <label>
                        "Choose a folder…"
                        <input id="pick-folder" type="file" prop:webkitdirectory=true on:change=on_files />
                    </label>
                </div>
                <p class="muted">
                    "config.json, tokenizer.json and the .safetensors weights (one file, or shards with "
                    "model.safetensors.index.json). Files are read in place; only their headers are read here."
                </p>
                {move || model_view(model.get(), adapter.get())}
            </section>
        </main>
    }
}

fn row(label: &'static str, value: String) -> impl IntoView {
    view! { <tr><td>{label}</td><td>{value}</td></tr> }
}

fn adapter_view(state: AdapterState) -> AnyView {
    match state {
        AdapterState::Probing => {
            view! { <p class="muted">"Looking for a WebGPU adapter…"</p> }.into_any()
        }
        AdapterState::Missing(msg) => {
            view! { <p class="error" id="adapter-error">{msg}</p> }.into_any()
        }
        AdapterState::Ready { report, .. } => {
            let limits = report.limits.clone();
            let features = if report.features.is_empty() {
                "(none)".to_string()
            } else {
                report.features.join(", ")
            };
            view! {
                <table id="adapter-info">
                    {row("name", report.name.clone())}
                    {row("backend", report.backend.clone())}
                    {row("device type", report.device_type.clone())}
                    {(!report.driver.is_empty()).then(|| row("driver", format!("{} {}", report.driver, report.driver_info)))}
                </table>
                <details open=true>
                    <summary>"Limits"</summary>
                    <table class="mono">
                        {limits.into_iter().map(|(k, v)| view! { <tr><td>{k}</td><td>{v.to_string()}</td></tr> }).collect_view()}
                    </table>
                </details>
                <details>
                    <summary>"Features"</summary>
                    <p class="mono">{features}</p>
                </details>
            }
            .into_any()
        }
    }
}

fn selftest_view(state: SelftestState) -> AnyView {
    match state {
        SelftestState::Idle => ().into_any(),
        SelftestState::Running => view! { <p class="muted">"Running every kernel…"</p> }.into_any(),
        SelftestState::Failed(msg) => view! { <p class="error">{msg}</p> }.into_any(),
        SelftestState::Done(checks) => {
            let failed = checks.iter().filter(|c| !c.passed).count();
            let summary = format!("{} passed, {} failed", checks.len() - failed, failed);
            view! {
                <p id="selftest-summary" class=if failed == 0 { "ok" } else { "error" }>{summary}</p>
                <details open=failed > 0>
                    <summary>"Every check"</summary>
                    <table class="mono" id="selftest-table">
                        {checks
                            .into_iter()
                            .map(|c| {
                                let verdict = if c.passed { "pass".to_string() } else { format!("FAIL: {}", c.detail) };
                                view! {
                                    <tr>
                                        <td>{c.kernel}</td>
                                        <td>{format!("{:.1e}", c.max_abs)}</td>
                                        <td class=if c.passed { "ok" } else { "error" }>{verdict}</td>
                                    </tr>
                                }
                            })
                            .collect_view()}
                    </table>
                </details>
            }
            .into_any()
        }
    }
}

fn model_view(state: ModelState, adapter: AdapterState) -> AnyView {
    match state {
        ModelState::Empty => view! { <p class="muted">"No model chosen yet."</p> }.into_any(),
        ModelState::Loading(n) => {
            view! { <p class="muted">{format!("Reading {n} files…")}</p> }.into_any()
        }
        ModelState::Failed(msg) => view! { <p class="error" id="model-error">{msg}</p> }.into_any(),
        ModelState::Loaded(s) => {
            let m = s.finetune_memory.clone();
            let notes = match adapter {
                AdapterState::Ready {
                    report,
                    max_buffer,
                    max_binding,
                } => m
                    .limit_notes(max_buffer, max_binding)
                    .into_iter()
                    .map(|n| format!("{}: {n}", report.name))
                    .collect::<Vec<_>>(),
                _ => vec!["No adapter: cannot compare with GPU limits.".to_string()],
            };
            let vocab = match s.tokenizer_vocab {
                Some(t) => format!("{} (tokenizer.json: {t})", s.vocab_size),
                None => format!("{} (no tokenizer.json)", s.vocab_size),
            };
            view! {
                <table id="model-summary">
                    {row("architecture", format!("{} ({})", s.architecture, s.model_type))}
                    {row("layers", s.layers.to_string())}
                    {row("hidden size", format!("{} (intermediate {})", s.hidden_size, s.intermediate_size))}
                    {row("heads / KV heads", format!("{} / {} (head dim {})", s.attention_heads, s.kv_heads, s.head_dim))}
                    {row("vocab", vocab)}
                    {row("embeddings", if s.tied_embeddings { "tied".to_string() } else { "untied".to_string() })}
                    {row("parameters", format!("{} ({} become ternary)", s.parameters, s.ternary_parameters))}
                    {row("weights", format!("{} in {} file(s), {}", human_bytes(s.weight_bytes), s.weight_files.len(), s.dtypes.join(", ")))}
                    {row("fine-tune memory", format!(
                        "{} (batch {}, {} tokens, f32): weights {} + gradients {} + AdamW {} + activations {}",
                        human_bytes(m.total), m.batch, m.seq_len, human_bytes(m.weights), human_bytes(m.gradients),
                        human_bytes(m.optimizer), human_bytes(m.activations)
                    ))}
                </table>
                <ul class="notes" id="limit-notes">
                    {notes.into_iter().map(|n| view! { <li>{n}</li> }).collect_view()}
                </ul>
            }
            .into_any()
        }
    }
}
