//! Page 1: the model — the user's files (picked, a folder, or dropped), the built-in demo model,
//! or a packed file to try; its summary and the memory a fine-tune needs on this adapter.

use std::rc::Rc;

use bitnet_core::ModelConfig;
use bitnet_core::model::Model;
use bitnet_core::summary::{MemoryPlan, ModelSummary, human_bytes};
use bitnet_core::tokenizer::Tokenizer;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{picked_files, row};
use crate::jobs;
use crate::source::ModelSource;
use crate::state::{AdapterState, ModelState, Page, Studio};

/// Opens the source's model and shows its summary; the source becomes the app's model.
pub async fn load_source(st: Studio, source: ModelSource) {
    st.model.set(ModelState::Loading(source.name()));
    let r: Result<(ModelSummary, ModelConfig), String> = async {
        let model = Model::open(&source)
            .await
            .map_err(|e| format!("{}: {e}", source.name()))?;
        let vocab = match &model.tokenizer_json {
            Some(b) => Some(
                Tokenizer::from_bytes("tokenizer.json", b)
                    .map_err(|e| e.to_string())?
                    .vocab_size(),
            ),
            None => None,
        };
        Ok((ModelSummary::new(&model, vocab), model.config.clone()))
    }
    .await;
    match r {
        Ok((s, cfg)) => {
            st.model.set(ModelState::Loaded(Box::new(s), Box::new(cfg)));
            st.source.set(Some(Rc::new(source)));
        }
        Err(e) => {
            st.model.set(ModelState::Failed(e));
            st.source.set(None);
        }
    }
}

/// The picked or dropped files (a folder's files, or one `.gguf` file).
async fn load_files(st: Studio, files: Vec<web_sys::File>) {
    match ModelSource::of_files(files).await {
        Ok(source) => load_source(st, source).await,
        Err(e) => st.model.set(ModelState::Failed(e)),
    }
}

/// The demo model, with the demo's settings in the forms.
pub async fn use_demo(st: Studio) {
    match ModelSource::demo() {
        Ok(source) => {
            let cfg = match bitnet_pipeline::demo::demo_run_config() {
                Ok(cfg) => cfg,
                Err(e) => return st.model.set(ModelState::Failed(e.to_string())),
            };
            st.sg.set(
                cfg.num,
                cfg.max_new_tokens,
                cfg.batch,
                cfg.train.settings.seed,
                &cfg.templates,
            );
            st.tr.set(&cfg.train);
            st.results.update(|r| r.tasks = cfg.tasks.clone());
            load_source(st, source).await;
        }
        Err(e) => st.model.set(ModelState::Failed(e)),
    }
}

#[component]
pub fn ModelPage() -> impl IntoView {
    let st = expect_context::<Studio>();
    let on_files = move |ev: leptos::ev::Event| {
        let files = picked_files(&ev);
        if !files.is_empty() {
            spawn_local(load_files(st, files));
        }
    };
    let on_packed = move |ev: leptos::ev::Event| {
        if let Some(f) = picked_files(&ev).into_iter().next() {
            jobs::use_packed(st, f);
        }
    };
    let (over, set_over) = signal(false);
    let on_drop = move |ev: leptos::ev::DragEvent| {
        ev.prevent_default();
        set_over.set(false);
        let Some(list) = ev.data_transfer().and_then(|d| d.files()) else {
            return;
        };
        let files: Vec<web_sys::File> = (0..list.length()).filter_map(|i| list.get(i)).collect();
        // A dropped folder arrives as one entry without a type: point to the folder picker.
        let folders = files
            .iter()
            .any(|f| f.type_().is_empty() && f.size() == 0.0 && !f.name().contains('.'));
        if folders {
            st.model.set(ModelState::Failed(
                "A dropped folder cannot be read by the page: drop the files inside it, or use “Choose a folder…”.".into(),
            ));
        } else if !files.is_empty() {
            spawn_local(load_files(st, files));
        }
    };
    let demo = move |_| spawn_local(use_demo(st));
    let whole_flow = move |_| jobs::run_demo_flow(st);
    view! {
        <section class="intro">
            <p class="lead">
                "bitnet-studio turns a local language model into a BitNet b1.58 model with ternary weights {−1, 0, +1}: "
                "the model writes its own training data, then is fine-tuned on your GPU while λ blends every linear layer "
                "from full precision to ternary, and you download the packed 2-bit file."
            </p>
            <p class="lead">"Everything runs in this tab: your files are read in place and nothing is uploaded."</p>
            <button id="run-demo" class="primary" on:click=whole_flow disabled=move || st.busy.get().is_some()>
                "Run the whole flow on the demo model"
            </button>
            <span class="muted">" A tiny 2-layer model built into the page: a few minutes, even without a fast GPU."</span>
        </section>
        <section>
            <h2>"Model"</h2>
            <div class="pickers">
                <label>
                    "Choose files…"
                    <input id="pick-files" type="file" multiple=true accept=".json,.safetensors,.gguf" on:change=on_files />
                </label>
                <label>
                    "Choose a folder…"
                    <input id="pick-folder" type="file" prop:webkitdirectory=true on:change=on_files />
                </label>
                <button id="use-demo" on:click=demo>"Use the demo model"</button>
                <label>
                    "Try a packed file…"
                    <input id="pick-packed" type="file" accept=".safetensors" on:change=on_packed />
                </label>
            </div>
            <div
                id="drop-zone"
                class:over=move || over.get()
                on:dragover=move |ev: leptos::ev::DragEvent| { ev.prevent_default(); set_over.set(true); }
                on:dragleave=move |_| set_over.set(false)
                on:drop=on_drop
            >
                "or drop config.json, tokenizer.json and the .safetensors files here"
            </div>
            <p class="muted">
                "A Llama, Qwen2 or Mistral model: config.json, tokenizer.json and the weights (one .safetensors file, "
                "or shards with model.safetensors.index.json). Only the headers are read now."
            </p>
            {move || model_view(st)}
            {move || super::error_of("download-error-model", st.download_error.get())}
            {move || st.packed.get().map(|p| view! { <p id="packed-summary" class="ok">{p.summary}" — try it on page 4."</p> })}
            {move || super::error_of("packed-error", st.packed_error.get())}
            <div class="actions">
                {move || st.source.get().filter(|s| matches!(**s, ModelSource::Demo(_))).map(|_| view! {
                    <button id="dl-demo-model" on:click=move |_| jobs::download_demo_model(st)>"Download the demo model (zip, for the bitnet CLI)"</button>
                })}
                <button on:click=move |_| st.page.set(Page::Data) disabled=move || st.source.get().is_none()>"Next: data →"</button>
            </div>
        </section>
    }
}

fn model_view(st: Studio) -> AnyView {
    match st.model.get() {
        ModelState::Empty => view! { <p class="muted">"No model chosen yet."</p> }.into_any(),
        ModelState::Loading(name) => {
            view! { <p class="muted">{format!("Reading {name}…")}</p> }.into_any()
        }
        ModelState::Failed(msg) => view! { <p class="error" id="model-error">{msg}</p> }.into_any(),
        ModelState::Loaded(s, _) => {
            let m = s.finetune_memory.clone();
            let notes = match st.adapter.get() {
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
            let name = st.source.get().map(|s| s.name()).unwrap_or_default();
            view! {
                <table id="model-summary">
                    {row("model", name)}
                    {row("architecture", format!("{} ({})", s.architecture, s.model_type))}
                    {row("layers", s.layers.to_string())}
                    {row("hidden size", format!("{} (intermediate {})", s.hidden_size, s.intermediate_size))}
                    {row("heads / KV heads", format!("{} / {} (head dim {})", s.attention_heads, s.kv_heads, s.head_dim))}
                    {row("vocab", vocab)}
                    {row("embeddings", if s.tied_embeddings { "tied".to_string() } else { "untied".to_string() })}
                    {row("parameters", format!("{} ({} become ternary)", s.parameters, s.ternary_parameters))}
                    {row("weights", format!("{} in {} file(s), {}", human_bytes(s.weight_bytes), s.weight_files.len(), s.dtypes.join(", ")))}
                </table>
                <ul class="notes" id="limit-notes">
                    {notes.into_iter().map(|n| view! { <li>{n}</li> }).collect_view()}
                </ul>
                {plan_view(st)}
            }
            .into_any()
        }
    }
}

/// The memory the training form's run needs, against the adapter: which buffer does not fit and
/// what to change, before anything is allocated.
pub fn plan_view(st: Studio) -> impl IntoView {
    move || {
        let ModelState::Loaded(_, cfg) = st.model.get() else {
            return None;
        };
        let parse = |v: RwSignal<String>| v.get().trim().parse::<usize>().ok();
        let (Some(bsz), Some(seq), Some(accum)) = (
            parse(st.tr.bsz),
            parse(st.tr.seq_len),
            parse(st.tr.grad_accum),
        ) else {
            return Some(view! { <p class="warn" id="memory-plan">"Set batch, accumulation and sequence length on page 3 to see the memory plan."</p> }.into_any());
        };
        let mut plan = MemoryPlan::new(&cfg, bsz, seq, accum);
        if st.tr.subln.get() {
            plan = plan.with_subln(&cfg);
        }
        if st.tr.act8.get() {
            plan = plan.with_act8(&cfg);
        }
        if st.tr.loss.get() != "ce" {
            plan = plan.with_teacher(&cfg);
        }
        let line = format!(
            "Training with batch {bsz} × {seq} tokens × {accum} micro-batches needs {}: weights {} + gradients {} + AdamW {} + activations {}.",
            human_bytes(plan.total),
            human_bytes(plan.weights),
            human_bytes(plan.gradients),
            human_bytes(plan.optimizer),
            human_bytes(plan.activations)
        );
        let verdict = match st.max_binding() {
            None => view! { <p class="muted">"No adapter to compare with."</p> }.into_any(),
            Some(limit) => match plan.too_large(limit) {
                None => view! { <p class="ok">{format!("Every buffer fits this adapter's {} per binding.", human_bytes(limit))}</p> }.into_any(),
                Some((name, bytes)) => view! {
                    <p class="error" id="plan-too-large">{format!(
                        "{name} needs {}, more than this adapter's {} per binding: lower the batch or the sequence length on page 3 (freezing the embeddings saves their gradient and AdamW state).",
                        human_bytes(bytes), human_bytes(limit)
                    )}</p>
                }.into_any(),
            },
        };
        Some(view! { <div id="memory-plan"><p>{line}</p>{verdict}</div> }.into_any())
    }
}
