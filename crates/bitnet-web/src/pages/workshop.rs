//! Workshop mode: 2–4 λ schedules run one after another with the same data, settings and seed;
//! their λ traces and loss curves overlaid on one chart with a legend, large enough to project;
//! the chart exported as SVG or PNG and the runs' metrics as one CSV.

use bitnet_core::Schedule;
use leptos::prelude::*;

use super::{error_of, field};
use crate::chart::{Figure, PALETTE, Panel, Series};
use crate::jobs;
use crate::state::{Studio, WorkshopRun};

/// The schedules on offer: (checkbox id, schedule, label, checked at first).
const CHOICES: [(&str, &str, &str, bool); 5] = [
    ("ws-linear", "linear", "linear ramp", true),
    ("ws-sigmoid", "sigmoid:8", "sigmoid (k = 8)", false),
    ("ws-step", "step:4", "4 steps", true),
    ("ws-exp", "exp:3", "exponential (k = 3)", false),
    (
        "ws-immediate",
        "const:1",
        "immediate (λ = 1 from the start)",
        true,
    ),
];

/// The overlay of the workshop's runs: λ above, loss below, one colour per schedule.
pub fn overlay(runs: &[WorkshopRun]) -> Figure {
    let panel =
        |id, y_label: &str, value: fn(&bitnet_pipeline::train::Metrics) -> f64, range| Panel {
            id,
            y_label: y_label.into(),
            series: runs
                .iter()
                .enumerate()
                .map(|(i, r)| Series {
                    label: r.label.clone(),
                    color: PALETTE[i % PALETTE.len()],
                    points: r
                        .metrics
                        .iter()
                        .map(|m| (m.step as f64, value(m)))
                        .collect(),
                    faint: false,
                })
                .collect(),
            y_range: range,
        };
    Figure {
        title: "λ schedules compared: same data, settings and seed".into(),
        x_label: "optimizer step".into(),
        panels: vec![
            panel("plot-ws-lambda", "λ", |m| m.lambda, Some((0.0, 1.0))),
            panel("plot-ws-loss", "loss", |m| m.loss as f64, None),
        ],
        width: 1100.0,
        panel_height: 260.0,
        font: 20.0,
        legend: true,
    }
}

/// Every step of every run, one CSV.
pub fn csv(runs: &[WorkshopRun]) -> String {
    let mut out = String::from("schedule,step,lambda,phase,loss,lr,grad_norm,tokens_per_s\n");
    for r in runs {
        for m in &r.metrics {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{:.1}\n",
                r.schedule, m.step, m.lambda, m.phase, m.loss, m.lr, m.grad_norm, m.tokens_per_s
            ));
        }
    }
    out
}

#[component]
pub fn WorkshopPage() -> impl IntoView {
    let st = expect_context::<Studio>();
    let steps = RwSignal::new("20".to_string());
    let chosen: Vec<(RwSignal<bool>, &'static str, &'static str, &'static str)> = CHOICES
        .iter()
        .map(|(id, s, label, on)| (RwSignal::new(*on), *id, *s, *label))
        .collect();
    let picks = chosen.clone();
    let start = move |_| {
        let frac = st.tr.lambda_warmup_frac.get_untracked();
        let schedules: Vec<(Schedule, String)> = picks
            .iter()
            .filter(|(on, ..)| on.get_untracked())
            .filter_map(|(_, _, s, label)| {
                let sched: Schedule = s.parse().ok()?;
                let label = match sched {
                    Schedule::Const { .. } => label.to_string(),
                    _ => format!("{label}, λ warmup {frac}"),
                };
                Some((sched, label))
            })
            .collect();
        match steps.get_untracked().trim().parse::<u64>() {
            Ok(n) if n > 0 => jobs::run_workshop(st, schedules, n),
            _ => st
                .workshop_error
                .set(Some("steps: a whole number of at least 1".into())),
        }
    };
    let export_svg = move |_| {
        let svg = overlay(&st.workshop.get_untracked()).svg();
        jobs::report(
            st,
            crate::download::save("lambda-schedules.svg", svg.as_bytes(), "image/svg+xml"),
        );
    };
    let export_png = move |_| {
        let fig = overlay(&st.workshop.get_untracked());
        let svg = fig.svg();
        let h = svg_height(&svg).unwrap_or(800.0);
        jobs::report(
            st,
            crate::download::save_png("lambda-schedules.png", &svg, fig.width, h),
        );
    };
    let export_csv = move |_| {
        let text = csv(&st.workshop.get_untracked());
        jobs::report(
            st,
            crate::download::save("lambda-schedules.csv", text.as_bytes(), "text/csv"),
        );
    };
    let has_runs = move || st.workshop.get().iter().any(|r| !r.metrics.is_empty());
    view! {
        <section>
            <h2>"Workshop: compare λ schedules"</h2>
            <p class="muted">"Each schedule trains the loaded model with the data and the settings of pages 2 and 3 (same seed), one after another. Pick 2 to 4."</p>
            <div class="form">
                {chosen.into_iter().map(|(on, id, _, label)| view! {
                    <label class="check"><input id=id type="checkbox" prop:checked=move || on.get() on:change=move |ev| on.set(event_target_checked(&ev)) /><span>{label}</span></label>
                }).collect_view()}
                {field("ws-steps", "steps per run", steps)}
            </div>
            <div class="actions">
                <button id="ws-start" class="primary" on:click=start disabled=move || st.busy.get().is_some() || st.data.get().is_none()>"Run the schedules"</button>
                <button id="ws-stop" on:click=move |_| st.control.get_value().cancel() disabled=move || st.busy.get() != Some("the workshop")>"Stop"</button>
                <button id="ws-svg" on:click=export_svg disabled=move || !has_runs()>"Export SVG"</button>
                <button id="ws-png" on:click=export_png disabled=move || !has_runs()>"Export PNG"</button>
                <button id="ws-csv" on:click=export_csv disabled=move || !has_runs()>"Export CSV"</button>
                {move || st.data.get().is_none().then(|| view! { <span class="muted">"Needs a model (page 1) and data (page 2)."</span> })}
            </div>
            {move || error_of("ws-error", st.workshop_error.get())}
            <p id="ws-status" class="muted">{move || {
                let runs = st.workshop.get();
                let done = runs.iter().filter(|r| r.done).count();
                if runs.is_empty() { String::new() } else { format!("{done} of {} runs done", runs.len()) }
            }}</p>
            <div id="ws-chart" class="chart-box big" inner_html=move || overlay(&st.workshop.get()).svg()></div>
        </section>
    }
}

/// The height an SVG document declares.
fn svg_height(svg: &str) -> Option<f64> {
    let rest = svg.split_once("height=\"")?.1;
    rest.split_once('"')?.0.parse().ok()
}
