//! The stepper's pages and the small widgets they share.

pub mod data;
pub mod gpu;
pub mod model;
pub mod results;
pub mod train;
pub mod workshop;

use leptos::prelude::*;

/// A labelled text field bound to a form signal.
pub fn field(id: &'static str, label: &'static str, value: RwSignal<String>) -> impl IntoView {
    view! {
        <label class="field">
            <span>{label}</span>
            <input id=id type="text" prop:value=move || value.get() on:input=move |ev| value.set(event_target_value(&ev)) />
        </label>
    }
}

/// A labelled checkbox bound to a form signal.
pub fn check(id: &'static str, label: &'static str, value: RwSignal<bool>) -> impl IntoView {
    view! {
        <label class="check">
            <input id=id type="checkbox" prop:checked=move || value.get() on:change=move |ev| value.set(event_target_checked(&ev)) />
            <span>{label}</span>
        </label>
    }
}

/// A labelled select bound to a form signal: (value, label) options.
pub fn select(
    id: &'static str,
    label: &'static str,
    value: RwSignal<String>,
    options: &'static [(&'static str, &'static str)],
) -> impl IntoView {
    view! {
        <label class="field">
            <span>{label}</span>
            <select id=id prop:value=move || value.get() on:change=move |ev| value.set(event_target_value(&ev))>
                {options.iter().map(|(v, l)| view! { <option value=*v selected=move || value.get() == *v>{*l}</option> }).collect_view()}
            </select>
        </label>
    }
}

/// A table row.
pub fn row(label: &'static str, value: String) -> impl IntoView {
    view! { <tr><td>{label}</td><td>{value}</td></tr> }
}

/// An error paragraph when there is one.
pub fn error_of(id: &'static str, e: Option<String>) -> impl IntoView {
    e.map(|e| view! { <p class="error" id=id>{e}</p> })
}

/// Seconds as "1 h 02 min", "3 min 05 s" or "12 s".
pub fn duration(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

/// The files of an `<input type=file>` change event.
pub fn picked_files(ev: &leptos::ev::Event) -> Vec<web_sys::File> {
    let input: web_sys::HtmlInputElement = event_target(ev);
    let mut out = Vec::new();
    if let Some(list) = input.files() {
        for i in 0..list.length() {
            if let Some(f) = list.get(i) {
                out.push(f);
            }
        }
    }
    // Picking the same file again must fire again.
    input.set_value("");
    out
}
