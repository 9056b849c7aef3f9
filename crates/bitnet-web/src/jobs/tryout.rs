//! Trying what was made: the full-precision and the ternary model side by side, a packed file the
//! user picked, and the workshop's schedules compared on the same data and seed.

use std::rc::Rc;

use bitnet_core::packed::PackedModel;
use bitnet_core::quant::Quantizer;
use bitnet_core::sample::Sampling;
use bitnet_core::selfgen::prompt_text;
use bitnet_core::summary::human_bytes;
use bitnet_pipeline::events::Event;
use bitnet_pipeline::generate::continue_prompt;
use bitnet_pipeline::load::{Loaded, load_folder, load_packed};
use bitnet_pipeline::run::{TRAIN_DATA_FILE, TRAIN_FOLDER, load_trained};
use bitnet_pipeline::train::train;
use bitnet_pipeline::{Ctx, PipelineError, Prefixed, Store};
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{Busy, WORKSHOP_FOLDER, new_control, tuned_gpu};
use crate::state::{GenSide, Studio, WorkshopRun};

/// Generates from the full-precision and the ternary model side by side (greedy, so the two
/// differ only by the model), streaming the tokens.
pub fn side_by_side(st: Studio, prompt: String, max_new_tokens: usize, as_instruction: bool) {
    spawn_local(async move {
        if let Err(e) = side_by_side_inner(st, &prompt, max_new_tokens, as_instruction).await {
            st.generation.update(|(_, t)| t.error = Some(e));
        }
    });
}

async fn side_by_side_inner(
    st: Studio,
    prompt: &str,
    max_new_tokens: usize,
    as_instruction: bool,
) -> Result<(), String> {
    let _busy = Busy::take(st, "generation")?;
    let gpu = tuned_gpu(st).await?;
    let text = if as_instruction {
        prompt_text(prompt)
    } else {
        prompt.to_string()
    };
    let s = |e: PipelineError| e.to_string();
    // The full-precision side: the base model, when one is loaded.
    let mut models: Vec<(bool, String, Loaded)> = Vec::new();
    if let Ok(source) = st.source() {
        let name = source.name();
        let m = load_folder(Some(&gpu), &*source, &name, false, Quantizer::Absmean)
            .await
            .map_err(s)?;
        models.push((false, format!("{name} (full precision)"), m));
    }
    // The ternary side: a packed file the user picked, else the trained one.
    match st.packed.get_untracked() {
        Some(p) => {
            let m = load_packed(&p.name, &p.bytes, None).await.map_err(s)?;
            models.push((true, format!("{} (ternary)", p.name), m));
        }
        None => {
            let store = st.store()?;
            let run = Prefixed::new(&*store, TRAIN_FOLDER);
            if run
                .exists(bitnet_pipeline::load::PACKED_FILE)
                .await
                .map_err(|e| e.to_string())?
            {
                let m = load_trained(&run).await.map_err(s)?;
                models.push((true, "trained ternary model".into(), m));
            }
        }
    }
    if models.is_empty() {
        return Err(
            "Nothing to generate with: choose a model, train one, or pick a packed file.".into(),
        );
    }
    st.generation.set(Default::default());
    for (ternary, label, m) in models {
        st.generation
            .update(|g| side(g, ternary).label = label.clone());
        let ids = m.prompt_ids(&text, false, 4096).map_err(s)?;
        let ctx = Ctx::quiet(&gpu);
        let mut seen = Vec::new();
        let shown = st.generation;
        let decode = |ids: &[u32]| m.decode(ids).unwrap_or_default();
        let c = continue_prompt(
            &ctx,
            &m,
            ids,
            max_new_tokens,
            Sampling::Greedy,
            0,
            &mut |t| {
                seen.push(t);
                let text = decode(&seen);
                shown.update(|g| {
                    let s = side(g, ternary);
                    s.text = text;
                    s.tokens = seen.len();
                });
            },
        )
        .await
        .map_err(s)?;
        st.generation.update(|g| {
            let s = side(g, ternary);
            s.text = c.text.clone();
            s.tokens = c.tokens.len();
            s.tokens_per_s = Some(c.decode_tokens_per_s);
            s.gpu_weight_bytes = Some(c.gpu_weight_bytes);
        });
    }
    Ok(())
}

/// The full-precision (left) or the ternary (right) side.
fn side(g: &mut (GenSide, GenSide), ternary: bool) -> &mut GenSide {
    if ternary { &mut g.1 } else { &mut g.0 }
}

/// Reads a packed file the user picked, checks it, and keeps it to try.
/// A task file for the evaluation's accuracy, checked as it is picked.
pub fn use_task_file(st: Studio, file: web_sys::File) {
    spawn_local(async move {
        let r = async {
            let bytes = crate::files::BrowserFiles::read_file(&file)
                .await
                .map_err(|e| e.to_string())?;
            let name = file.name();
            bitnet_pipeline::task::parse_tasks(&name, &bytes).map_err(|e| e.to_string())?;
            Ok::<_, String>((name, bytes))
        }
        .await;
        st.results.update(|v| match r {
            Ok(t) => {
                v.tasks = Some(t);
                v.error = None;
            }
            Err(e) => v.error = Some(e),
        });
    });
}

pub fn use_packed(st: Studio, file: web_sys::File) {
    spawn_local(async move {
        let r: Result<crate::state::PackedPick, String> = async {
            let bytes = crate::files::BrowserFiles::read_file(&file)
                .await
                .map_err(|e| e.to_string())?;
            let name = file.name();
            let p = PackedModel::parse(&name, &bytes).map_err(|e| e.to_string())?;
            let summary = format!(
                "{}: {} ternary tensors, {} packing, {} quantizer, {}",
                name,
                p.shapes.len(),
                p.packing.name(),
                p.quantizer.name(),
                human_bytes(bytes.len() as u64)
            );
            Ok(crate::state::PackedPick {
                name,
                bytes: Rc::new(bytes),
                summary,
            })
        }
        .await;
        match r {
            Ok(p) => {
                st.packed.set(Some(p));
                st.packed_error.set(None);
            }
            Err(e) => {
                st.packed.set(None);
                st.packed_error.set(Some(e));
            }
        }
    });
}

/// Runs each schedule one after another with the form's settings (and `steps`), the same data and
/// seed, into the workshop's folder; the overlay chart follows every step.
pub fn run_workshop(st: Studio, schedules: Vec<(bitnet_core::Schedule, String)>, steps: u64) {
    spawn_local(async move {
        let r = workshop_inner(st, schedules, steps).await;
        st.workshop_error.set(
            r.err()
                .filter(|e| *e != PipelineError::Cancelled.to_string()),
        );
    });
}

async fn workshop_inner(
    st: Studio,
    schedules: Vec<(bitnet_core::Schedule, String)>,
    steps: u64,
) -> Result<(), String> {
    if !(2..=4).contains(&schedules.len()) {
        return Err("Choose 2 to 4 schedules to compare.".into());
    }
    let (store, source) = (st.store()?, st.source()?);
    let mut base = st.tr.job()?;
    base.settings.steps = steps;
    base.save_steps = steps;
    base.log_every = steps;
    base.overwrite = true;
    base.settings.validate().map_err(|e| e.to_string())?;
    let data = store
        .get(TRAIN_DATA_FILE)
        .await
        .map_err(|e| e.to_string())?
        .filter(|d| !d.iter().all(u8::is_ascii_whitespace))
        .ok_or("No training data yet: generate or load it on page 2.")?;
    let _busy = Busy::take(st, "the workshop")?;
    let gpu = tuned_gpu(st).await?;
    st.workshop.set(
        schedules
            .iter()
            .map(|(schedule, label)| WorkshopRun {
                schedule: *schedule,
                label: label.clone(),
                metrics: Vec::new(),
                done: false,
            })
            .collect(),
    );
    let control = new_control(st);
    let name = source.name();
    for (i, (schedule, _)) in schedules.iter().enumerate() {
        let mut job = base.clone();
        job.settings.schedule = *schedule;
        let folder = format!("{WORKSHOP_FOLDER}/{i}");
        let run = Prefixed::new(&*store, &folder);
        let ws = st.workshop;
        let ctx = Ctx::new(&gpu, control.clone(), move |e| {
            if let Event::Step { metrics, .. } = e {
                ws.update(|runs| runs[i].metrics.push(metrics));
            }
        });
        train(&ctx, &*source, &name, &data, TRAIN_DATA_FILE, &run, &job)
            .await
            .map_err(|e| e.to_string())?;
        st.workshop.update(|runs| runs[i].done = true);
    }
    Ok(())
}
