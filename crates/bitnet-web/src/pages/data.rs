//! Page 2: the data — self-generation with the CLI's settings (progress, counts per filter, the
//! latest samples with the reason for each rejection; stop keeps what was kept), or the user's own
//! JSONL; the split into training and held-out samples; downloads.

use bitnet_core::selfgen::Rejection;
use bitnet_pipeline::events::Rejected;
use bitnet_pipeline::run::{DATA_FILE, EVAL_DATA_FILE, TRAIN_DATA_FILE};
use leptos::prelude::*;

use super::{check, error_of, field, picked_files};
use crate::jobs;
use crate::state::{Page, Studio, builtin_templates_json};

#[component]
pub fn DataPage() -> impl IntoView {
    let st = expect_context::<Studio>();
    let f = st.sg;
    let templates_error = move || {
        f.templates.track();
        f.templates().err()
    };
    let on_data = move |ev: leptos::ev::Event| {
        if let Some(file) = picked_files(&ev).into_iter().next() {
            jobs::use_dataset(st, file);
        }
    };
    let running = move || st.selfgen.get().running;
    view! {
        <section>
            <h2>"Self-generation"</h2>
            <p class="muted">"The model answers instructions drawn from the templates; five filters and duplicate removal keep the usable answers (the seed's rules)."</p>
            <div class="form">
                {field("sg-num", "samples to keep", f.num)}
                {field("sg-max-new", "max new tokens", f.max_new_tokens)}
                {field("sg-batch", "prompts at once", f.batch)}
                {field("sg-temperature", "temperature", f.temperature)}
                {field("sg-top-p", "top-p", f.top_p)}
                {field("sg-top-k", "top-k (0: all)", f.top_k)}
                {field("sg-seed", "seed", f.seed)}
                {check("sg-chat", "prompt through the chat template", f.chat)}
            </div>
            <details>
                <summary>"Templates (JSON)"</summary>
                <textarea id="sg-templates" rows="12" prop:value=move || f.templates.get() on:input=move |ev| f.templates.set(event_target_value(&ev))></textarea>
                <button on:click=move |_| f.templates.set(builtin_templates_json())>"Restore the built-in templates"</button>
                {move || error_of("sg-templates-error", templates_error())}
            </details>
            <div class="actions">
                <button id="sg-start" class="primary" on:click=move |_| jobs::generate_data(st) disabled=move || st.busy.get().is_some() || st.source.get().is_none()>
                    "Generate"
                </button>
                <button id="sg-stop" on:click=move |_| st.control.get_value().cancel() disabled=move || !running()>
                    "Stop (keep what was kept)"
                </button>
                {move || st.source.get().is_none().then(|| view! { <span class="muted">"Choose a model on page 1 first."</span> })}
            </div>
            {move || progress_view(st)}
        </section>
        <section>
            <h2>"Or your own data"</h2>
            <p class="muted">"JSONL in the training format: one {\"instruction\": …, \"input\": … (optional), \"output\": …} object per line."</p>
            <div class="pickers">
                <label>"Choose a JSONL file…"<input id="pick-data" type="file" accept=".jsonl,.json,.txt" on:change=on_data /></label>
            </div>
            {move || error_of("data-error", st.data_error.get())}
            {move || st.data.get().map(|d| view! {
                <p id="data-summary" class="ok">{format!(
                    "{} samples ({}): {} for training, {} held out for the perplexity.",
                    d.examples, d.origin, d.train, d.held_out
                )}</p>
                <div class="downloads">
                    <button id="dl-data" on:click=move |_| jobs::download(st, DATA_FILE.into(), "data.jsonl".into())>"data.jsonl"</button>
                    <button id="dl-train-data" on:click=move |_| jobs::download(st, TRAIN_DATA_FILE.into(), "train.jsonl".into())>"train.jsonl"</button>
                    <button id="dl-eval-data" on:click=move |_| jobs::download(st, EVAL_DATA_FILE.into(), "eval.jsonl".into())>"eval.jsonl"</button>
                </div>
                <button on:click=move |_| st.page.set(Page::Train)>"Next: train →"</button>
            })}
        </section>
    }
}

fn reason(r: Option<Rejected>) -> String {
    match r {
        None => "kept".into(),
        Some(Rejected::Duplicate) => "rejected: duplicate".into(),
        Some(Rejected::Filter(f)) => format!("rejected: {}", f.label()),
    }
}

fn progress_view(st: Studio) -> impl IntoView {
    let v = st.selfgen.get();
    if v.num == 0 && v.message.is_none() {
        return None;
    }
    let c = v.counts.clone();
    let rows: Vec<(&'static str, u64)> = Rejection::ALL
        .iter()
        .map(|r| {
            let n = match r {
                Rejection::TooShort => c.too_short,
                Rejection::TooLong => c.too_long,
                Rejection::Disclaimer => c.disclaimer,
                Rejection::TooFewWords => c.too_few_words,
                Rejection::InstructionLonger => c.instruction_longer,
            };
            (r.label(), n)
        })
        .chain([("duplicate", c.duplicates)])
        .collect();
    Some(view! {
        <div id="sg-status">
            <progress id="sg-progress" max=v.num.to_string() value=c.kept.to_string()></progress>
            <p>{format!(
                "kept {} of {} · {} attempts (at most {}) · {:.0} tokens/s{}",
                c.kept, v.num, c.attempts, v.max_attempts, v.tokens_per_s,
                if v.running { " · generating…" } else { "" }
            )}</p>
            {v.message.map(|m| view! { <p id="sg-message">{m}</p> })}
            <table id="sg-counts" class="compact">
                <tr><td>"kept"</td><td>{c.kept}</td></tr>
                {rows.into_iter().map(|(l, n)| view! { <tr><td>{format!("rejected: {l}")}</td><td>{n}</td></tr> }).collect_view()}
            </table>
            <ol id="sg-samples" class="samples">
                {v.latest.into_iter().map(|o| {
                    let kept = o.rejected.is_none();
                    view! {
                        <li class=if kept { "kept" } else { "rejected" }>
                            <span class="reason">{reason(o.rejected)}</span>
                            <span class="instruction">{o.instruction}</span>
                            <span class="response">{o.response}</span>
                        </li>
                    }
                }).collect_view()}
            </ol>
        </div>
    })
}
