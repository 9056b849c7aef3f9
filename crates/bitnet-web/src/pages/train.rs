//! Page 3: training — the settings with the CLI's defaults, a λ(t) preview with the other shapes
//! behind it, then live charts of λ, loss, learning rate and gradient norm per optimizer step, the
//! phase, tokens/s, ETA and GPU memory; pause, resume, stop; resuming a run a reload interrupted.

use bitnet_core::Schedule;
use bitnet_core::summary::human_bytes;
use leptos::prelude::*;

use super::model::plan_view;
use super::{check, duration, error_of, field, select};
use crate::chart::{Figure, PALETTE, Panel, Series, lambda_points};
use crate::jobs;
use crate::state::{Page, SHAPES, Studio};

const SHAPE_OPTIONS: &[(&str, &str)] = &[
    ("linear", "linear ramp"),
    ("sigmoid", "sigmoid (steepness)"),
    ("exp", "exponential (power)"),
    ("step", "steps (plateaus)"),
    ("const", "constant (λ)"),
];
const QUANTIZERS: &[(&str, &str)] = &[
    ("absmean", "absmean (BitNet b1.58)"),
    ("threshold", "threshold"),
];
const SCALES: &[(&str, &str)] = &[("optimal", "optimal"), ("absmean", "absmean (the seed's)")];
const LOSSES: &[(&str, &str)] = &[
    ("ce", "cross-entropy on the data (the seed's)"),
    ("kd", "distillation from the base model (KL)"),
    ("ce+kd", "both: (1 − W)·CE + W·KD"),
];
const NORM_INITS: &[(&str, &str)] = &[
    ("calibrated", "calibrated (mean RMS of their input)"),
    ("one", "1 (the seed's)"),
];

/// The preview: the chosen schedule, with every other shape faint behind it.
fn preview(schedule: Schedule, steps: u64, frac: f64) -> Figure {
    let chosen = schedule.to_string();
    let mut series: Vec<Series> = SHAPES
        .iter()
        .filter_map(|(shape, param)| {
            let text = if param.is_empty() {
                shape.to_string()
            } else {
                format!("{shape}:{param}")
            };
            let s: Schedule = text.parse().ok()?;
            (s.to_string().split(':').next() != chosen.split(':').next()).then(|| Series {
                label: s.to_string(),
                color: "#9fb0c3",
                points: lambda_points(s, steps, frac),
                faint: true,
            })
        })
        .collect();
    series.push(Series {
        label: chosen,
        color: PALETTE[0],
        points: lambda_points(schedule, steps, frac),
        faint: false,
    });
    Figure {
        title: "λ(t) of the chosen schedule (others faint)".into(),
        x_label: "optimizer step".into(),
        panels: vec![Panel {
            id: "plot-preview",
            y_label: "λ".into(),
            series,
            y_range: Some((0.0, 1.0)),
        }],
        width: 640.0,
        panel_height: 200.0,
        font: 13.0,
        legend: true,
    }
}

/// The live charts of the run.
pub fn live(st: Studio) -> (Figure, Figure) {
    let v = st.train.get();
    let pts = |f: &dyn Fn(&bitnet_pipeline::train::Metrics) -> f64| -> Vec<(f64, f64)> {
        v.metrics.iter().map(|m| (m.step as f64, f(m))).collect()
    };
    let one = |id, label: &str, color, points, range| Panel {
        id,
        y_label: label.to_string(),
        series: vec![Series {
            label: label.to_string(),
            color,
            points,
            faint: false,
        }],
        y_range: range,
    };
    let top = Figure {
        title: "λ and loss per optimizer step".into(),
        x_label: "optimizer step".into(),
        panels: vec![
            one(
                "plot-lambda",
                "λ",
                PALETTE[0],
                pts(&|m| m.lambda),
                Some((0.0, 1.0)),
            ),
            one(
                "plot-loss",
                "loss",
                PALETTE[1],
                pts(&|m| m.loss as f64),
                None,
            ),
        ],
        width: 760.0,
        panel_height: 170.0,
        font: 13.0,
        legend: false,
    };
    let bottom = Figure {
        title: "learning rate and gradient norm".into(),
        x_label: "optimizer step".into(),
        panels: vec![
            one("plot-lr", "lr", PALETTE[3], pts(&|m| m.lr), None),
            one(
                "plot-grad-norm",
                "grad norm",
                PALETTE[2],
                pts(&|m| m.grad_norm as f64),
                None,
            ),
        ],
        width: 760.0,
        panel_height: 110.0,
        font: 13.0,
        legend: false,
    };
    (top, bottom)
}

#[component]
pub fn TrainPage() -> impl IntoView {
    let st = expect_context::<Studio>();
    let f = st.tr;
    let preview_svg = move || {
        let steps = f.steps.get().trim().parse::<u64>().ok().filter(|s| *s > 0);
        let frac = f.lambda_warmup_frac.get().trim().parse::<f64>().ok();
        match (f.schedule(), steps, frac) {
            (Ok(s), Some(n), Some(w)) if (0.0..=1.0).contains(&w) => {
                Ok(preview(s, n.min(100_000), w).svg())
            }
            (Err(e), _, _) => Err(e),
            _ => Err("Set the steps and a λ warmup fraction in [0, 1] to see λ(t).".into()),
        }
    };
    let running = move || st.train.get().running;
    let paused = move || st.train.get().paused;
    // A new run replaces the stored one (its checkpoints, trained model and results): asked first.
    let earlier = move || st.results.get().manifest.is_some() || st.resume.get().is_some();
    let confirming = RwSignal::new(false);
    let start = move |_| {
        if earlier() {
            confirming.set(true);
        } else {
            jobs::start_training(st, false);
        }
    };
    view! {
        {move || st.resume.get().map(|offer| view! {
            <section id="resume-banner" class="banner">
                <p>{format!(
                    "A training run of {} stopped at step {} of {} (the page was closed or reloaded). Resume it from its last checkpoint?",
                    offer.spec.source.name, offer.step, offer.steps
                )}</p>
                {(!offer.spec.source.demo).then(|| view! { <p class="muted">"Choose the same model files on page 1 first: the page cannot keep them across a reload."</p> })}
                <button id="resume-accept" class="primary" on:click=move |_| jobs::start_training(st, true) disabled=move || st.busy.get().is_some()>"Resume"</button>
                <button id="resume-discard" on:click=move |_| jobs::discard_run(st)>"Discard it"</button>
            </section>
        })}
        <section>
            <h2>"Training settings"</h2>
            <p class="muted">"The defaults are bitnet train's: the seed's linear λ warmup, no extra norm, distillation from the base model's 8 most likely tokens — the recipe docs/QUALITY.md measured best on task accuracy. λ blends every linear weight: W = (1 − λ)·W + λ·γ·ternary(W)."</p>
            <div class="form">
                {field("tr-steps", "steps", f.steps)}
                {field("tr-bsz", "batch (sequences)", f.bsz)}
                {field("tr-grad-accum", "gradient accumulation", f.grad_accum)}
                {field("tr-lr", "learning rate", f.lr)}
                {field("tr-warmup-ratio", "lr warmup ratio", f.warmup_ratio)}
                {field("tr-lambda-frac", "λ warmup fraction", f.lambda_warmup_frac)}
                {select("tr-shape", "λ schedule", f.shape, SHAPE_OPTIONS)}
                {field("tr-shape-param", "schedule parameter", f.shape_param)}
                {select("tr-quantizer", "quantizer", f.quantizer, QUANTIZERS)}
                {move || (f.quantizer.get() == "threshold").then(|| view! {
                    {field("tr-threshold", "threshold ratio", f.threshold)}
                    {select("tr-scale", "threshold scale", f.scale, SCALES)}
                })}
                {field("tr-seq-len", "sequence length", f.seq_len)}
                {field("tr-seed", "seed", f.seed)}
                {field("tr-weight-decay", "weight decay", f.weight_decay)}
                {field("tr-max-grad-norm", "max grad norm", f.max_grad_norm)}
                {field("tr-save-steps", "checkpoint every (steps)", f.save_steps)}
                {field("tr-save-limit", "checkpoints kept", f.save_total_limit)}
                {field("tr-log-every", "metrics line every (steps)", f.log_every)}
                {check("tr-post-attn", "post-attention RMSNorm (the seed's)", f.post_attn_norm)}
                {check("tr-subln", "SubLN (BitNet's norms before o_proj and down_proj)", f.subln)}
                {check("tr-act8", "8-bit activations (W1.58A8, as transformers' BitLinear computes)", f.act8)}
                {move || (f.post_attn_norm.get() || f.subln.get()).then(|| select("tr-norm-init", "extra norm gains start at", f.norm_init, NORM_INITS))}
                {select("tr-loss", "loss", f.loss, LOSSES)}
                {move || (f.loss.get() != "ce").then(|| view! {
                    {field("tr-kd-temperature", "KD temperature", f.kd_temperature)}
                    {field("tr-kd-topk", "KD top K (all: the whole vocabulary)", f.kd_topk)}
                    {(f.loss.get() == "ce+kd").then(|| field("tr-kd-weight", "KD weight W", f.kd_weight))}
                })}
                {check("tr-lm-head", "ternary lm_head too", f.quantize_lm_head)}
                {check("tr-freeze-emb", "freeze the embeddings", f.freeze_embeddings)}
            </div>
            <div id="lambda-preview" class="chart-box">
                {move || match preview_svg() {
                    Ok(svg) => view! { <div inner_html=svg></div> }.into_any(),
                    Err(e) => view! { <p class="error">{e}</p> }.into_any(),
                }}
            </div>
            {plan_view(st)}
            <div class="actions">
                <button id="tr-start" class="primary" on:click=start disabled=move || st.busy.get().is_some() || st.data.get().is_none() || confirming.get()>
                    {move || if earlier() { "Start a new run…" } else { "Start training" }}
                </button>
                <button id="tr-pause" on:click=move |_| { st.control.get_value().pause(); st.train.update(|v| v.paused = true); } disabled=move || !running() || paused()>"Pause"</button>
                <button id="tr-resume" on:click=move |_| { st.control.get_value().resume(); st.train.update(|v| v.paused = false); } disabled=move || !paused()>"Resume"</button>
                <button id="tr-stop" on:click=move |_| st.control.get_value().cancel() disabled=move || !running()>"Stop"</button>
                {move || st.data.get().is_none().then(|| view! { <span class="muted">"Generate or load data on page 2 first."</span> })}
            </div>
            {move || (confirming.get() && earlier()).then(|| view! {
                <div id="tr-replace" class="banner">
                    <p>{move || match st.resume.get() {
                        Some(offer) => format!(
                            "The browser holds an unfinished run ({} of {} steps). A new run deletes its checkpoints and metrics: it cannot be resumed afterwards.",
                            offer.step, offer.steps
                        ),
                        None => "The browser holds a finished run. A new run deletes its trained model, packed file, checkpoints and metrics (download what you want to keep on page 4 first).".into(),
                    }}</p>
                    <button id="tr-replace-yes" class="primary" on:click=move |_| { confirming.set(false); jobs::start_training(st, false); }>"Replace it with a new run"</button>
                    <button id="tr-replace-no" on:click=move |_| confirming.set(false)>"Keep it"</button>
                </div>
            })}
            {move || error_of("tr-form-error", st.tr.job().err().filter(|_| !running()))}
        </section>
        <section>
            <h2>"Run"</h2>
            {move || status_view(st)}
            {move || error_of("tr-error", st.train.get().error)}
            {move || {
                let (top, bottom) = live(st);
                view! {
                    <div id="train-charts" class="chart-box">
                        <div id="chart-main" inner_html=top.svg()></div>
                        <div id="chart-opt" inner_html=bottom.svg()></div>
                    </div>
                }
            }}
            {move || st.results.get().manifest.is_some().then(|| view! {
                <button on:click=move |_| st.page.set(Page::Results)>"Results →"</button>
            })}
        </section>
    }
}

fn status_view(st: Studio) -> impl IntoView {
    let v = st.train.get();
    let last = v.metrics.last().cloned();
    let step = last.as_ref().map(|m| m.step + 1).unwrap_or(0);
    view! {
        <table id="tr-status" class="compact">
            <tr><td>"state"</td><td id="tr-state">{
                if v.paused { "paused — the run waits before its next step".to_string() }
                else if v.running { format!("running: {}", v.status) }
                else if v.status.is_empty() { "not started".to_string() }
                else { v.status.clone() }
            }</td></tr>
            <tr><td>"step"</td><td id="tr-step">{format!("{step} of {}", v.steps)}</td></tr>
            {last.map(|m| view! {
                <tr><td>"phase"</td><td>{format!("{} (λ = {:.3})", m.phase, m.lambda)}</td></tr>
                <tr><td>"loss"</td><td>{format!("{:.4}", m.loss)}</td></tr>
                <tr><td>"tokens/s"</td><td>{format!("{:.0}", m.tokens_per_s)}</td></tr>
            })}
            {v.running.then(|| view! { <tr><td>"ETA"</td><td>{duration(v.eta_s)}</td></tr> })}
            {(v.gpu_bytes > 0).then(|| view! { <tr><td>"GPU buffers allocated"</td><td>{human_bytes(v.gpu_bytes)}</td></tr> })}
            {v.checkpoint.map(|c| view! { <tr><td>"last checkpoint"</td><td id="tr-checkpoint">{format!("step {c} (in the browser's storage)")}</td></tr> })}
        </table>
        {v.paused.then(|| view! { <p id="tr-paused" class="warn">"Paused."</p> })}
    }
}
