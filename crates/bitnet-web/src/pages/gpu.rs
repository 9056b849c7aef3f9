//! The GPU page: the adapter (or why there is none), its limits, and the kernel self-test.

use bitnet_gpu::Gpu;
use bitnet_gpu::selftest::Check;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::row;
use crate::state::{AdapterState, Studio};

#[derive(Clone)]
enum SelftestState {
    Idle,
    Running,
    Done(Vec<Check>),
    Failed(String),
}

#[component]
pub fn GpuPage() -> impl IntoView {
    let st = expect_context::<Studio>();
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
    view! {
        <section id="adapter">
            <h2>"GPU adapter"</h2>
            {move || adapter_view(st.adapter.get())}
            <h2 class="spaced">"Self-test"</h2>
            <p class="muted">"Runs every GPU kernel on this adapter against its CPU reference."</p>
            <button id="run-selftest" on:click=run_selftest disabled=move || matches!(selftest.get(), SelftestState::Running)>
                "Run self-test"
            </button>
            {move || selftest_view(selftest.get())}
        </section>
    }
}

pub fn adapter_view(state: AdapterState) -> AnyView {
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
