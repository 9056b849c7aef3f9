//! Page 4: results — perplexity on the held-out samples (base, base ternarized without training,
//! trained ternary), accuracy on a task file (the demo's own, or one the user picks), sparsity
//! and packed size, a prompt answered by the full-precision and the
//! ternary model side by side, and every download.

use bitnet_core::summary::human_bytes;
use bitnet_pipeline::export::Format;
use bitnet_pipeline::load::PACKED_FILE;
use bitnet_pipeline::run::TRAIN_FOLDER;
use bitnet_pipeline::train::{MANIFEST_FILE, METRICS_FILE};
use leptos::prelude::*;

use super::{check, error_of, field, picked_files};
use crate::jobs;
use crate::state::{GenSide, ModelState, Studio};

#[component]
pub fn ResultsPage() -> impl IntoView {
    let st = expect_context::<Studio>();
    let prompt = RwSignal::new("Explain why the sky is blue.".to_string());
    let max_new = RwSignal::new("48".to_string());
    let as_instruction = RwSignal::new(true);
    let generate = move |_| {
        let n = max_new
            .get_untracked()
            .trim()
            .parse::<usize>()
            .unwrap_or(48)
            .clamp(1, 2048);
        jobs::side_by_side(
            st,
            prompt.get_untracked(),
            n,
            as_instruction.get_untracked(),
        );
    };
    let key = |k: &str| format!("{TRAIN_FOLDER}/{k}");
    let on_tasks = move |ev: leptos::ev::Event| {
        if let Some(file) = picked_files(&ev).into_iter().next() {
            jobs::use_task_file(st, file);
        }
    };
    view! {
        <section>
            <h2>"What the compressed model can still do"</h2>
            {move || match st.results.get().manifest {
                None => view! { <p class="muted">"No finished training run yet: train one on page 3 (or try a packed file below)."</p> }.into_any(),
                Some(m) => {
                    let original = match st.model.get() { ModelState::Loaded(s, _) => Some(s.weight_bytes), _ => None };
                    view! {
                        <table id="pack-summary" class="compact">
                            <tr><td>"packed file"</td><td>{format!("{} ({})", human_bytes(m.packed_bytes), m.packed_file)}</td></tr>
                            {original.map(|o| view! { <tr><td>"original weights"</td><td>{format!("{} — the packed file is {:.1} × smaller", human_bytes(o), o as f64 / m.packed_bytes.max(1) as f64)}</td></tr> })}
                            <tr><td>"zero codes (sparsity)"</td><td id="res-sparsity" data-value=m.sparsity.to_string()>{format!("{:.2} %", m.sparsity * 100.0)}</td></tr>
                            <tr><td>"final λ"</td><td>{format!("{} ({})", m.final_lambda, if m.compression_ready { "fully ternary" } else { "not fully ternary: λ never reached 1" })}</td></tr>
                            <tr><td>"loss, first → last step"</td><td>{format!("{} → {}", loss(m.first_loss), loss(m.final_loss))}</td></tr>
                            <tr><td>"checksum"</td><td id="res-checksum" class="mono">{m.checksum.clone()}</td></tr>
                        </table>
                    }.into_any()
                }
            }}
            {move || st.results.get().comparison.map(|c| view! {
                <h3>"Quality: the base model and the trained ternary model side by side"</h3>
                <table id="quality-table" class="compact">
                    <tr><th></th><th>"base model"</th><th>"trained ternary"</th></tr>
                    {c.quality.rows().into_iter().map(|(what, o, t)| view! {
                        <tr><td>{what}</td><td>{o}</td><td class="quality-ternary">{t}</td></tr>
                    }).collect_view()}
                </table>
            })}
            <h3>"Perplexity on the held-out samples"</h3>
            <table id="ppl-table" class="compact">
                {move || st.results.get().perplexities.into_iter().map(|(label, p)| view! {
                    <tr><td>{label}</td><td class="ppl" data-value=p.perplexity.to_string()>{format!("{:.3}", p.perplexity)}</td><td class="muted">{format!("{} tokens, {} sample{}", p.tokens, p.examples, if p.examples == 1 { "" } else { "s" })}</td>
                    <td class="muted">{p.kl_to_reference.map(|k| format!("KL to the base model {k:.4} nats/token"))}</td></tr>
                }).collect_view()}
            </table>
            <h3>"Accuracy on tasks"</h3>
            <p class="muted">"Each instruction of a task file (JSONL: instruction, output, domain) is answered greedily in the training text's format; a task counts when the answer's first line is exactly its output."</p>
            <div class="form">
                <label>"Task file "<input type="file" id="eval-task-file" accept=".jsonl,.json,.txt" on:change=on_tasks/></label>
                <span id="eval-task-name" class="muted">{move || st.results.get().tasks.map_or("none chosen".to_string(), |(n, _)| n)}</span>
            </div>
            <table id="acc-table" class="compact">
                {move || st.results.get().accuracies.into_iter().map(|(label, a)| view! {
                    <tr><td>{label}</td><td class="acc" data-value=a.accuracy.to_string()>{format!("{:.1} %", a.accuracy * 100.0)}</td><td class="muted">{format!("{} of {} tasks", a.correct, a.tasks)}</td>
                    <td class="muted">{a.domains.iter().filter(|d| !d.domain.is_empty()).map(|d| format!("{} {:.0} %", d.domain, d.accuracy * 100.0)).collect::<Vec<_>>().join(" · ")}</td></tr>
                }).collect_view()}
            </table>
            {move || st.results.get().evaluating.then(|| view! { <p class="muted">"Evaluating…"</p> })}
            {move || error_of("eval-error", st.results.get().error)}
            <button id="eval-start" on:click=move |_| jobs::evaluate(st) disabled=move || st.busy.get().is_some() || st.results.get().manifest.is_none()>"Evaluate again"</button>
        </section>
        <section>
            <h2>"Try it: full precision and ternary side by side"</h2>
            <textarea id="gen-prompt" rows="3" prop:value=move || prompt.get() on:input=move |ev| prompt.set(event_target_value(&ev))></textarea>
            <div class="form">
                {field("gen-max", "max new tokens", max_new)}
                {check("gen-instruction", "as an instruction (the training format)", as_instruction)}
            </div>
            <button id="gen-start" class="primary" on:click=generate disabled=move || st.busy.get().is_some()>"Generate (greedy)"</button>
            <div class="side-by-side">
                {move || { let (a, b) = st.generation.get(); view! { {side("gen-fp", a)} {side("gen-ternary", b)} } }}
            </div>
        </section>
        <section>
            <h2>"Downloads"</h2>
            <p class="muted">"The same files bitnet train writes into its --out-dir."</p>
            {move || st.results.get().manifest.map(|m| view! {
                <div class="downloads">
                    <button id="dl-packed" class="primary" on:click=move |_| jobs::download(st, key(PACKED_FILE), PACKED_FILE.into())>"model.bitnet.safetensors (2-bit)"</button>
                    <button id="dl-trit5" on:click=move |_| jobs::download_trit5(st)>"model.trit5.safetensors (5 per byte)"</button>
                    <button id="dl-gguf" on:click=move |_| jobs::download_export(st, Format::GgufTq2)>"model.tq2_0.gguf (llama.cpp)"</button>
                    <button id="dl-gguf-tq1" on:click=move |_| jobs::download_export(st, Format::GgufTq1)>"model.tq1_0.gguf (llama.cpp, 1.69 bits)"</button>
                    <button id="dl-hf-bitnet" on:click=move |_| jobs::download_export(st, Format::HfBitnet)>"hf-bitnet/ (transformers packed BitNet, zip)"</button>
                    <button id="dl-hf" on:click=move |_| jobs::download_zip(st, format!("{TRAIN_FOLDER}/hf"), "hf.zip".into())>"hf/ (Hugging Face folder, zip)"</button>
                    <button id="dl-manifest" on:click=move |_| jobs::download(st, key(MANIFEST_FILE), MANIFEST_FILE.into())>"training_manifest.json"</button>
                    <button id="dl-metrics" on:click=move |_| jobs::download(st, key(METRICS_FILE), METRICS_FILE.into())>"metrics.jsonl"</button>
                    <button id="dl-data-2" on:click=move |_| jobs::download(st, bitnet_pipeline::run::DATA_FILE.into(), "data.jsonl".into())>"data.jsonl"</button>
                </div>
                {(m.settings.setup.post_attn_norm || m.settings.setup.subln).then(|| view! {
                    <p class="muted" id="extra-norms-note">"The trained gains of the extra norms (post-attention RMSNorm, SubLN) are inside model.bitnet.safetensors, which this app and bitnet generate/eval use; hf/ and hf-bitnet/ carry them with modeling_bitnet_studio.py (load with trust_remote_code=True); the GGUF export takes SubLN models with tied embeddings (llama.cpp’s bitnet architecture) and refuses the post-attention norm."</p>
                })}
            })}
            {move || error_of("download-error", st.download_error.get())}
        </section>
    }
}

fn side(id: &'static str, s: GenSide) -> impl IntoView {
    view! {
        <div class="gen-side" id=id>
            <h3>{if s.label.is_empty() { "—".to_string() } else { s.label.clone() }}</h3>
            <p class="gen-text">{if s.text.trim().is_empty() && s.tokens > 0 {
                "(no text: every token chosen is a special token, which decoding skips)".to_string()
            } else {
                s.text.clone()
            }}</p>
            <p class="muted">{match s.tokens_per_s {
                Some(t) => format!(
                    "{} tokens, {:.1} tokens/s, {} of weights on the GPU",
                    s.tokens,
                    t,
                    bitnet_core::summary::human_bytes(s.gpu_weight_bytes.unwrap_or(0))
                ),
                None if s.tokens > 0 => format!("{} tokens…", s.tokens),
                None => String::new(),
            }}</p>
            {s.error.map(|e| view! { <p class="error">{e}</p> })}
        </div>
    }
}

fn loss(l: Option<f32>) -> String {
    l.map_or("—".into(), |l| format!("{l:.4}"))
}
