//! The jobs the pages start, each a call into bitnet-pipeline with the browser's store (OPFS), the
//! user's files read in place and the GPU: events update the app's state, the control handle
//! pauses, resumes and stops. No numerics live here.

use std::rc::Rc;

use bitnet_core::dataset::{LossMask, parse_jsonl};
use bitnet_core::quant::Quantizer;
use bitnet_gpu::Gpu;
use bitnet_pipeline::eval::EvalOptions;
use bitnet_pipeline::events::Event;
use bitnet_pipeline::load::load_folder;
use bitnet_pipeline::quality::QualityInputs;
use bitnet_pipeline::run::{
    DATA_FILE, EVAL_DATA_FILE, TRAIN_DATA_FILE, TRAIN_FOLDER, compare, jsonl, named, split_held_out,
};
use bitnet_pipeline::selfgen::{selfgen, state_key};
use bitnet_pipeline::train::{
    MANIFEST_FILE, METRICS_FILE, Metrics, TrainJob, TrainManifest, checkpoints, parse_metrics,
    train,
};
use bitnet_pipeline::{Control, Ctx, PipelineError, Prefixed, Store};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::source::ModelSource;
use crate::state::{
    DataInfo, Page, ResultsView, ResumeOffer, RunSpec, SelfgenView, Studio, TrainView,
};
use crate::store::OpfsStore;

mod downloads;
mod tryout;

pub use downloads::{
    download, download_demo_model, download_export, download_trit5, download_zip, report,
};
pub use tryout::{run_workshop, side_by_side, use_packed, use_task_file};

/// The app's folder in the browser's private storage (OPFS).
pub const STORE_FOLDER: &str = "bitnet-studio";
/// What a reloaded page needs to resume the run.
pub const SPEC_FILE: &str = "app.json";
/// Where the workshop's runs go.
pub const WORKSHOP_FOLDER: &str = "workshop";
/// Samples shown in the live list.
const LATEST: usize = 40;

/// Holds the GPU for one job: refuses a second, frees it on drop.
struct Busy(Studio);

impl Busy {
    fn take(st: Studio, what: &'static str) -> Result<Busy, String> {
        if let Some(other) = st.busy.get_untracked() {
            return Err(format!(
                "The GPU is busy with {other}; wait for it or stop it."
            ));
        }
        st.busy.set(Some(what));
        Ok(Busy(st))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.set(None);
    }
}

/// A fresh control handle for a job, kept where the pause/resume/stop buttons find it.
fn new_control(st: Studio) -> Control {
    let c = Control::new();
    st.control.set_value(c.clone());
    c
}

/// The GPU with its linear-layer kernels measured (once per page).
async fn tuned_gpu(st: Studio) -> Result<Rc<Gpu>, String> {
    let gpu = st.gpu()?;
    if !st.tuned.get_value() {
        let now = bitnet_pipeline::clock();
        gpu.tune_gemm(&now).await.map_err(|e| e.to_string())?;
        st.tuned.set_value(true);
    }
    Ok(gpu)
}

/// Opens the store and picks up what an earlier session left: the data, the settings, an
/// unfinished run to offer for resuming, or a finished run's results.
pub async fn open_store(st: Studio) {
    let store = match OpfsStore::open(STORE_FOLDER).await {
        Ok(s) => Rc::new(s),
        Err(e) => {
            st.store_error.set(Some(format!(
                "This browser gives the page no private storage (OPFS), so runs cannot be kept: {e}"
            )));
            return;
        }
    };
    st.store.set_value(Some(store.clone()));
    if let Err(e) = restore(st, &store).await {
        st.store_error.set(Some(format!(
            "What an earlier session left could not be read: {e}"
        )));
    }
}

async fn restore(st: Studio, store: &OpfsStore) -> Result<(), PipelineError> {
    if store.exists(DATA_FILE).await? {
        refresh_data(st, store, "kept from an earlier session").await?;
    }
    let Some(spec) = store.get(SPEC_FILE).await? else {
        return Ok(());
    };
    let spec: RunSpec = serde_json::from_slice(&spec)
        .map_err(|e| PipelineError::Invalid(format!("{}: {e}", store.display(SPEC_FILE))))?;
    st.tr.set(&spec.job(false));
    let run = Prefixed::new(store, TRAIN_FOLDER);
    let metrics = parse_metrics(&run.get(METRICS_FILE).await?.unwrap_or_default());
    if let Some(m) = run.get(MANIFEST_FILE).await? {
        let manifest: TrainManifest = serde_json::from_slice(&m)
            .map_err(|e| PipelineError::Invalid(format!("{}: {e}", run.display(MANIFEST_FILE))))?;
        st.train.set(TrainView {
            steps: spec.settings.steps,
            metrics,
            status: "finished in an earlier session".into(),
            ..Default::default()
        });
        st.results.update(|r| r.manifest = Some(manifest));
    } else if let Some((step, _)) = checkpoints(&run).await?.pop() {
        st.resume.set(Some(ResumeOffer {
            step,
            steps: spec.settings.steps,
            spec,
        }));
    }
    Ok(())
}

/// Reads data.jsonl, writes its split into train.jsonl and eval.jsonl, and shows it.
async fn refresh_data(st: Studio, store: &OpfsStore, origin: &str) -> Result<(), PipelineError> {
    let bytes = store.get(DATA_FILE).await?.unwrap_or_default();
    let name = store.display(DATA_FILE);
    let examples = if bytes.iter().all(u8::is_ascii_whitespace) {
        Vec::new()
    } else {
        parse_jsonl(&name, &bytes).map_err(|e| PipelineError::input(&name, e))?
    };
    let (train_set, eval_set) = split_held_out(&examples);
    store.put(TRAIN_DATA_FILE, &jsonl(&train_set)).await?;
    store.put(EVAL_DATA_FILE, &jsonl(&eval_set)).await?;
    st.data.set(Some(DataInfo {
        origin: origin.to_string(),
        examples: examples.len(),
        train: train_set.len(),
        held_out: eval_set.len(),
    }));
    Ok(())
}

/// Uses a JSONL file the user picked as the dataset (a line that does not parse is named).
pub fn use_dataset(st: Studio, file: web_sys::File) {
    spawn_local(async move {
        let r: Result<(), String> = async {
            let store = st.store()?;
            let bytes = crate::files::BrowserFiles::read_file(&file)
                .await
                .map_err(|e| e.to_string())?;
            let examples = parse_jsonl(&file.name(), &bytes).map_err(|e| e.to_string())?;
            if examples.len() < 2 {
                return Err(format!(
                    "{}: {} example(s); training and a held-out evaluation need at least 2",
                    file.name(),
                    examples.len()
                ));
            }
            store
                .put(DATA_FILE, &bytes)
                .await
                .map_err(|e| e.to_string())?;
            store
                .remove(&state_key(DATA_FILE))
                .await
                .map_err(|e| e.to_string())?;
            refresh_data(st, &store, &file.name())
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        st.data_error.set(r.err());
    });
}

/// Self-generation with the form's settings into data.jsonl (replacing earlier data); stopping
/// keeps what was kept.
pub fn generate_data(st: Studio) {
    spawn_local(async move {
        generate_job(st).await;
    });
}

/// Self-generation to its end; whether it kept data.
async fn generate_job(st: Studio) -> bool {
    let r = generate_inner(st).await;
    st.selfgen.update(|v| {
        v.running = false;
        v.message = Some(match &r {
            Ok(msg) => msg.clone(),
            Err(e) => e.clone(),
        });
    });
    let ok = r.is_ok();
    st.data_error.set(r.err());
    ok && st.data.get_untracked().is_some_and(|d| d.examples >= 2)
}

async fn generate_inner(st: Studio) -> Result<String, String> {
    let cfg = st.sg.config()?;
    let (store, source) = (st.store()?, st.source()?);
    let _busy = Busy::take(st, "self-generation")?;
    st.selfgen.set(SelfgenView {
        running: true,
        num: cfg.num,
        ..Default::default()
    });
    let gpu = tuned_gpu(st).await?;
    let name = source.name();
    let m = load_folder(Some(&gpu), &*source, &name, false, Quantizer::Absmean)
        .await
        .map_err(|e| e.to_string())?;
    let s = |e: PipelineError| e.to_string();
    store.remove(DATA_FILE).await.map_err(|e| e.to_string())?;
    store
        .remove(&state_key(DATA_FILE))
        .await
        .map_err(|e| e.to_string())?;
    let ctx = Ctx::new(&gpu, new_control(st), move |e| {
        if let Event::Samples {
            counts,
            num,
            max_attempts,
            tokens_per_s,
            outcomes,
        } = e
        {
            st.selfgen.update(|v| {
                v.counts = counts;
                v.num = num;
                v.max_attempts = max_attempts;
                v.tokens_per_s = tokens_per_s;
                for o in outcomes {
                    v.latest.insert(0, o);
                }
                v.latest.truncate(LATEST);
            });
        }
    });
    let result = selfgen(&ctx, &m, &*store, DATA_FILE, &cfg).await;
    drop(ctx);
    let stopped = matches!(result, Err(PipelineError::Cancelled));
    let report = match result {
        Ok(r) => Some(r),
        Err(PipelineError::Cancelled) => None,
        Err(e) => {
            // What was kept before the failure is the data now (the earlier data was replaced).
            let _ = refresh_data(st, &store, "self-generated, interrupted by an error").await;
            return Err(s(e));
        }
    };
    refresh_data(st, &store, "self-generated")
        .await
        .map_err(s)?;
    let kept = st.data.get_untracked().map(|d| d.examples).unwrap_or(0);
    Ok(match report {
        _ if stopped => format!("Stopped: the {kept} samples kept so far are the data."),
        Some(r) => format!(
            "Done: {} kept of {} attempts ({}).",
            r.counts.kept,
            r.counts.attempts,
            match r.stopped_by {
                bitnet_pipeline::selfgen::StoppedBy::Num => "enough samples",
                bitnet_pipeline::selfgen::StoppedBy::MaxAttempts => "the attempt budget ran out",
            }
        ),
        None => String::new(),
    })
}

/// The state of a training view for one event.
fn on_train_event(view: RwSignal<TrainView>, e: Event) {
    match e {
        Event::Memory {
            plan, max_binding, ..
        } => view.update(|v| v.plan = Some((*plan, max_binding))),
        Event::Kernels(k) => view.update(|v| v.kernels = Some(format!("{k:?}"))),
        Event::Resumed { step, skipped, .. } => view.update(|v| {
            v.status = if step > 0 {
                format!("resumed from the checkpoint of step {step}")
            } else {
                "no checkpoint: starting at step 0".into()
            };
            for why in skipped {
                v.status
                    .push_str(&format!(" (skipped a corrupt checkpoint: {why})"));
            }
        }),
        Event::Step {
            metrics,
            steps,
            eta_s,
            gpu_bytes,
        } => view.update(|v| {
            v.status = format!("{} phase", metrics.phase);
            v.steps = steps;
            v.eta_s = eta_s;
            v.gpu_bytes = gpu_bytes;
            v.metrics.retain(|m| m.step < metrics.step);
            v.metrics.push(metrics);
        }),
        Event::Checkpoint { step, .. } => view.update(|v| v.checkpoint = Some(step)),
        Event::Packed(_) => view.update(|v| v.status = "packing the ternary weights".into()),
        _ => {}
    }
}

/// Trains with the form's settings (a new run replaces the store's earlier one), or resumes the
/// store's unfinished run; the results are evaluated when it ends.
pub fn start_training(st: Studio, resume: bool) {
    spawn_local(async move {
        if train_job(st, resume).await {
            evaluate_job(st).await;
        }
    });
}

/// Training to its end; whether it finished.
async fn train_job(st: Studio, resume: bool) -> bool {
    let r = train_inner(st, resume).await;
    let stopped = matches!(&r, Err(e) if *e == PipelineError::Cancelled.to_string());
    st.train.update(|v| {
        v.running = false;
        v.paused = false;
        match &r {
            Ok(()) => v.status = "finished".into(),
            Err(_) if stopped => {
                v.status = match v.checkpoint {
                    Some(c) => format!(
                        "stopped; the checkpoint of step {c} is kept: resume continues from it"
                    ),
                    None => "stopped before the first checkpoint".into(),
                }
            }
            Err(e) => v.error = Some(e.clone()),
        }
    });
    if let Ok(store) = st.store() {
        let _ = offer_resume(st, &store).await;
    }
    r.is_ok()
}

/// Offers to resume when the store holds an unfinished run.
async fn offer_resume(st: Studio, store: &OpfsStore) -> Result<(), PipelineError> {
    let run = Prefixed::new(store, TRAIN_FOLDER);
    let spec: Option<RunSpec> = store
        .get(SPEC_FILE)
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok());
    let offer = match (spec, run.exists(MANIFEST_FILE).await?) {
        (Some(spec), false) => checkpoints(&run).await?.pop().map(|(step, _)| ResumeOffer {
            step,
            steps: spec.settings.steps,
            spec,
        }),
        _ => None,
    };
    st.resume.set(offer);
    Ok(())
}

async fn train_inner(st: Studio, resume: bool) -> Result<(), String> {
    let s = |e: PipelineError| e.to_string();
    let offer = st.resume.get_untracked();
    // A run of the demo model resumes without asking for files: the model is built in.
    if let Some(o) = offer.as_ref().filter(|o| resume && o.spec.source.demo) {
        let current = st.source.get_untracked().map(|s| s.id());
        if current.as_ref() != Some(&o.spec.source) {
            crate::pages::model::load_source(st, ModelSource::demo()?).await;
        }
    }
    let (store, source) = (st.store()?, st.source()?);
    let spec = if resume {
        let offer = offer.ok_or("There is no unfinished run to resume.")?;
        if offer.spec.source != source.id() {
            return Err(format!(
                "The run to resume was trained from {}; choose that model (the same files) first.",
                offer.spec.source.name
            ));
        }
        offer.spec
    } else {
        let job = st.tr.job()?;
        RunSpec {
            source: source.id(),
            data_checksum: String::new(),
            settings: job.settings,
            save_steps: job.save_steps,
            save_total_limit: job.save_total_limit,
            log_every: job.log_every,
        }
    };
    let data = store
        .get(TRAIN_DATA_FILE)
        .await
        .map_err(|e| e.to_string())?;
    let data = match data {
        Some(d) if !d.iter().all(u8::is_ascii_whitespace) => d,
        _ => return Err("No training data yet: generate or load it on page 2.".into()),
    };
    let data_checksum = bitnet_core::packed::checksum(&data);
    if resume && spec.data_checksum != data_checksum {
        return Err(
            "The training data changed since this run started (new data was generated or loaded): it cannot be resumed; start a new run.".into(),
        );
    }
    let spec = RunSpec {
        data_checksum,
        ..spec
    };
    let _busy = Busy::take(st, "training")?;
    let job: TrainJob = spec.job(resume);
    let run = Prefixed::new(&*store, TRAIN_FOLDER);
    // A resumed run's chart starts with the steps its checkpoint includes.
    let mut before = Vec::new();
    if resume {
        if let Some((step, _)) = checkpoints(&run).await.map_err(s)?.pop() {
            before = parse_metrics(
                &run.get(METRICS_FILE)
                    .await
                    .map_err(|e| e.to_string())?
                    .unwrap_or_default(),
            )
            .into_iter()
            .filter(|m: &Metrics| m.step < step)
            .collect();
        }
    } else {
        // A new run's results start empty; the task file chosen for them stays.
        st.results.update(|r| {
            *r = ResultsView {
                tasks: r.tasks.take(),
                ..Default::default()
            }
        });
    }
    st.resume.set(None);
    st.train.set(TrainView {
        running: true,
        steps: job.settings.steps,
        metrics: before,
        status: "measuring the kernels".into(),
        ..Default::default()
    });
    let text = serde_json::to_string_pretty(&spec).map_err(|e| e.to_string())?;
    store
        .put(SPEC_FILE, text.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let gpu = tuned_gpu(st).await?;
    let view = st.train;
    let ctx = Ctx::new(&gpu, new_control(st), move |e| on_train_event(view, e));
    let name = source.name();
    let manifest = train(&ctx, &*source, &name, &data, TRAIN_DATA_FILE, &run, &job)
        .await
        .map_err(s)?;
    st.results.update(|r| r.manifest = Some(manifest));
    Ok(())
}

/// Perplexity on the held-out samples of the base model, the base ternarized without training and
/// the trained ternary model (as `bitnet run` reports).
pub fn evaluate(st: Studio) {
    spawn_local(evaluate_job(st));
}

async fn evaluate_job(st: Studio) {
    st.results.update(|r| {
        r.evaluating = true;
        r.error = None;
        r.perplexities.clear();
        r.accuracies.clear();
    });
    let r = evaluate_inner(st).await;
    st.results.update(|v| {
        v.evaluating = false;
        match r {
            Ok(c) => v.comparison = Some(c),
            Err(e) => v.error = Some(e),
        }
    });
}

/// The first screen's one click: the demo model with the demo's settings, self-generation,
/// training and the results, each page shown as it works.
pub fn run_demo_flow(st: Studio) {
    spawn_local(async move {
        crate::pages::model::use_demo(st).await;
        if st.source.get_untracked().is_none() {
            return;
        }
        st.page.set(Page::Data);
        if !generate_job(st).await {
            return;
        }
        st.page.set(Page::Train);
        if !train_job(st, false).await {
            return;
        }
        st.page.set(Page::Results);
        evaluate_job(st).await;
    });
}

/// Forgets the unfinished run: its checkpoints, metrics and settings leave the store.
pub fn discard_run(st: Studio) {
    spawn_local(async move {
        let r = async {
            let store = st.store()?;
            let s = |e: bitnet_pipeline::StoreError| e.to_string();
            for key in store.list(&format!("{TRAIN_FOLDER}/")).await.map_err(s)? {
                store.remove(&key).await.map_err(s)?;
            }
            store.remove(SPEC_FILE).await.map_err(s)?;
            Ok::<(), String>(())
        }
        .await;
        st.resume.set(None);
        st.train.set(TrainView::default());
        report(st, r);
    });
}

async fn evaluate_inner(st: Studio) -> Result<bitnet_pipeline::run::Comparison, String> {
    let (store, source) = (st.store()?, st.source()?);
    let manifest = st
        .results
        .get_untracked()
        .manifest
        .ok_or("No finished training run yet.")?;
    let eval = store
        .get(EVAL_DATA_FILE)
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    if eval.iter().all(u8::is_ascii_whitespace) {
        return Err("No held-out samples: the data needs at least 2 examples.".into());
    }
    let _busy = Busy::take(st, "evaluation")?;
    let gpu = tuned_gpu(st).await?;
    let run = Prefixed::new(&*store, TRAIN_FOLDER);
    let results = st.results;
    let tasks = results.get_untracked().tasks;
    let ctx = Ctx::new(&gpu, new_control(st), move |e| match e {
        Event::Perplexity { label, result } => {
            results.update(|r| r.perplexities.push((label, result)))
        }
        Event::TaskAccuracy { label, result } => {
            results.update(|r| r.accuracies.push((label, *result)))
        }
        _ => {}
    });
    let name = source.name();
    let eval_name = store.display(EVAL_DATA_FILE);
    let s = &manifest.settings;
    let inputs = QualityInputs {
        held_out: Some((&eval, &eval_name)),
        text: None,
        tasks: named(&tasks),
        opts: EvalOptions {
            seq_len: s.seq_len,
            loss_mask: LossMask::All,
            bsz: s.bsz,
        },
    };
    let c = compare(&ctx, (&*source, &name, None), &run, &inputs, &manifest)
        .await
        .map_err(|e| e.to_string())?;
    // The training manifest records the quality report, as `bitnet run` does.
    let manifest = TrainManifest {
        quality: Some(c.quality.clone()),
        ..manifest
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| e.to_string())?;
    run.put(MANIFEST_FILE, text.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    st.results.update(|r| r.manifest = Some(manifest));
    Ok(c)
}
