//! The app's state: what the pages show and the jobs update, shared through Leptos context. The
//! forms hold the user's text as typed; they are parsed (with an error naming the field) only when a
//! job starts, into the pipeline's own settings types.

use std::rc::Rc;

use bitnet_core::quant::{DEFAULT_THRESHOLD_RATIO, Quantizer, ScaleMode};
use bitnet_core::sample::Sampling;
use bitnet_core::selfgen::{
    Counts, DEFAULT_MAX_NEW_TOKENS, DEFAULT_SEED, DEFAULT_TEMPERATURE, DEFAULT_TOP_P, Templates,
};
use bitnet_core::summary::{MemoryPlan, ModelSummary};
use bitnet_core::{ModelConfig, Schedule};
use bitnet_gpu::trainer::{LossKind, TrainSettings};
use bitnet_gpu::{AdapterReport, Gpu};
use bitnet_pipeline::Control;
use bitnet_pipeline::eval::Perplexity;
use bitnet_pipeline::events::SampleOutcome;
use bitnet_pipeline::run::Comparison;
use bitnet_pipeline::selfgen::SelfgenConfig;
use bitnet_pipeline::task::TaskAccuracy;
use bitnet_pipeline::train::{Metrics, TrainJob, TrainManifest, default_save_steps};
use leptos::prelude::*;

use crate::source::{ModelSource, SourceId};
use crate::store::OpfsStore;

/// The pages of the stepper.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Page {
    Model,
    Data,
    Train,
    Results,
    Workshop,
    Gpu,
}

impl Page {
    pub const ALL: [Page; 6] = [
        Page::Model,
        Page::Data,
        Page::Train,
        Page::Results,
        Page::Workshop,
        Page::Gpu,
    ];
    pub fn title(self) -> &'static str {
        match self {
            Page::Model => "1 · Model",
            Page::Data => "2 · Data",
            Page::Train => "3 · Train",
            Page::Results => "4 · Results",
            Page::Workshop => "Workshop",
            Page::Gpu => "GPU",
        }
    }
    pub fn id(self) -> &'static str {
        match self {
            Page::Model => "model",
            Page::Data => "data",
            Page::Train => "train",
            Page::Results => "results",
            Page::Workshop => "workshop",
            Page::Gpu => "gpu",
        }
    }
}

#[derive(Clone)]
pub enum AdapterState {
    Probing,
    Missing(String),
    Ready {
        report: AdapterReport,
        max_buffer: u64,
        max_binding: u64,
    },
}

#[derive(Clone)]
pub enum ModelState {
    Empty,
    Loading(String),
    Loaded(Box<ModelSummary>, Box<ModelConfig>),
    Failed(String),
}

/// A packed file the user picked, to try in the Results page.
#[derive(Clone)]
pub struct PackedPick {
    pub name: String,
    pub bytes: Rc<Vec<u8>>,
    pub summary: String,
}

/// The dataset of the run: data.jsonl in the store, split into train.jsonl and eval.jsonl.
#[derive(Clone, Debug, PartialEq)]
pub struct DataInfo {
    /// Where it came from (self-generation, a file's name, an earlier session).
    pub origin: String,
    pub examples: usize,
    pub train: usize,
    pub held_out: usize,
}

/// Self-generation as it goes.
#[derive(Clone, Default)]
pub struct SelfgenView {
    pub running: bool,
    pub counts: Counts,
    pub num: u64,
    pub max_attempts: u64,
    pub tokens_per_s: f64,
    /// The latest samples, newest first.
    pub latest: Vec<SampleOutcome>,
    pub message: Option<String>,
}

/// The training run as it goes.
#[derive(Clone, Default)]
pub struct TrainView {
    pub running: bool,
    pub paused: bool,
    pub steps: u64,
    /// One entry per optimizer step seen (a resumed run starts with the logged steps before it).
    pub metrics: Vec<Metrics>,
    pub eta_s: f64,
    pub gpu_bytes: u64,
    pub plan: Option<(MemoryPlan, u64)>,
    pub kernels: Option<String>,
    pub checkpoint: Option<u64>,
    pub status: String,
    pub error: Option<String>,
}

/// The results of the finished run.
#[derive(Clone, Default)]
pub struct ResultsView {
    pub manifest: Option<TrainManifest>,
    pub comparison: Option<Comparison>,
    pub perplexities: Vec<(String, Perplexity)>,
    /// The task file the evaluation scores answers on (name, JSONL), when one is chosen.
    pub tasks: Option<(String, Vec<u8>)>,
    pub accuracies: Vec<(String, TaskAccuracy)>,
    pub evaluating: bool,
    pub error: Option<String>,
}

/// One side of the side-by-side generation.
#[derive(Clone, Default)]
pub struct GenSide {
    pub label: String,
    pub text: String,
    pub tokens: usize,
    pub tokens_per_s: Option<f64>,
    /// Bytes of the model's weights on the GPU while it generated.
    pub gpu_weight_bytes: Option<u64>,
    pub error: Option<String>,
}

/// One run of the workshop.
#[derive(Clone)]
pub struct WorkshopRun {
    pub schedule: Schedule,
    pub label: String,
    pub metrics: Vec<Metrics>,
    pub done: bool,
}

/// What an earlier session left: a training run that did not finish.
#[derive(Clone, PartialEq, Debug)]
pub struct ResumeOffer {
    pub step: u64,
    pub steps: u64,
    pub spec: RunSpec,
}

/// app.json in the store: what a reloaded page needs to resume the run.
#[derive(Clone, PartialEq, Debug, serde::Serialize, serde::Deserialize)]
pub struct RunSpec {
    pub source: SourceId,
    /// SHA-256 of the training data (train.jsonl) the run started with.
    pub data_checksum: String,
    pub settings: TrainSettings,
    pub save_steps: u64,
    pub save_total_limit: usize,
    pub log_every: u64,
}

impl RunSpec {
    pub fn job(&self, resume: bool) -> TrainJob {
        TrainJob {
            settings: self.settings.clone(),
            save_steps: self.save_steps,
            save_total_limit: self.save_total_limit,
            log_every: self.log_every,
            resume,
            overwrite: !resume,
            soft_labels: None,
        }
    }
}

fn parse<T: std::str::FromStr>(label: &str, text: &str, what: &str) -> Result<T, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{label}: `{}` is not {what}", text.trim()))
}

/// The self-generation form (the CLI's `bitnet selfgen` flags and defaults).
#[derive(Clone, Copy)]
pub struct SelfgenForm {
    pub num: RwSignal<String>,
    pub max_new_tokens: RwSignal<String>,
    pub batch: RwSignal<String>,
    pub temperature: RwSignal<String>,
    pub top_p: RwSignal<String>,
    pub top_k: RwSignal<String>,
    pub seed: RwSignal<String>,
    pub chat: RwSignal<bool>,
    pub templates: RwSignal<String>,
}

pub fn builtin_templates_json() -> String {
    serde_json::to_string_pretty(&Templates::builtin()).unwrap_or_default()
}

impl SelfgenForm {
    fn new() -> Self {
        let s = |v: String| RwSignal::new(v);
        SelfgenForm {
            num: s("1000".into()),
            max_new_tokens: s(DEFAULT_MAX_NEW_TOKENS.to_string()),
            batch: s("8".into()),
            temperature: s(DEFAULT_TEMPERATURE.to_string()),
            top_p: s(DEFAULT_TOP_P.to_string()),
            top_k: s("50".into()),
            seed: s(DEFAULT_SEED.to_string()),
            chat: RwSignal::new(false),
            templates: s(builtin_templates_json()),
        }
    }

    /// The templates as typed, checked.
    pub fn templates(&self) -> Result<(Templates, Option<String>), String> {
        let text = self.templates.get_untracked();
        let t = Templates::from_json("templates", text.as_bytes()).map_err(|e| e.to_string())?;
        let name = if t == Templates::builtin() {
            None
        } else if bitnet_pipeline::demo::demo_templates().is_ok_and(|d| d == t) {
            Some(bitnet_pipeline::demo::DEMO_TEMPLATES_NAME.to_string())
        } else {
            Some("templates edited in the app".to_string())
        };
        Ok((t, name))
    }

    pub fn config(&self) -> Result<SelfgenConfig, String> {
        let g = |s: RwSignal<String>| s.get_untracked();
        let num: u64 = parse("samples", &g(self.num), "a whole number")?;
        if num == 0 {
            return Err("samples: must be at least 1".into());
        }
        let sampling = Sampling::new(
            parse("temperature", &g(self.temperature), "a number")?,
            parse("top-p", &g(self.top_p), "a number")?,
            parse("top-k", &g(self.top_k), "a whole number")?,
        )?;
        let (templates, templates_name) = self.templates()?;
        Ok(SelfgenConfig {
            num,
            max_new_tokens: parse("max new tokens", &g(self.max_new_tokens), "a whole number")?,
            seed: parse("seed", &g(self.seed), "a whole number")?,
            batch: parse::<usize>("batch", &g(self.batch), "a whole number")?.max(1),
            resume: false,
            max_attempts: None,
            templates,
            templates_name,
            chat: self.chat.get_untracked(),
            sampling,
            soft_labels: None,
        })
    }

    pub fn set(&self, num: u64, max_new_tokens: usize, batch: usize, seed: u64, t: &Templates) {
        self.templates
            .set(serde_json::to_string_pretty(t).unwrap_or_default());
        self.num.set(num.to_string());
        self.max_new_tokens.set(max_new_tokens.to_string());
        self.batch.set(batch.to_string());
        self.seed.set(seed.to_string());
    }
}

/// The schedule shapes the form offers, with the parameter each starts with.
pub const SHAPES: [(&str, &str); 5] = [
    ("linear", ""),
    ("sigmoid", "8"),
    ("exp", "3"),
    ("step", "4"),
    ("const", "1"),
];

/// The training form (the CLI's `bitnet train` flags and defaults).
#[derive(Clone, Copy)]
pub struct TrainForm {
    pub steps: RwSignal<String>,
    pub bsz: RwSignal<String>,
    pub grad_accum: RwSignal<String>,
    pub lr: RwSignal<String>,
    pub warmup_ratio: RwSignal<String>,
    pub lambda_warmup_frac: RwSignal<String>,
    pub shape: RwSignal<String>,
    pub shape_param: RwSignal<String>,
    pub quantizer: RwSignal<String>,
    pub threshold: RwSignal<String>,
    pub scale: RwSignal<String>,
    pub post_attn_norm: RwSignal<bool>,
    pub subln: RwSignal<bool>,
    /// W1.58A8: projection inputs rounded to 8 bits per token.
    pub act8: RwSignal<bool>,
    pub norm_init: RwSignal<String>,
    pub loss: RwSignal<String>,
    pub kd_temperature: RwSignal<String>,
    pub kd_weight: RwSignal<String>,
    /// Distill from the teacher's top K only ("" or "all": the whole vocabulary).
    pub kd_topk: RwSignal<String>,
    pub quantize_lm_head: RwSignal<bool>,
    pub freeze_embeddings: RwSignal<bool>,
    pub seq_len: RwSignal<String>,
    pub seed: RwSignal<String>,
    pub weight_decay: RwSignal<String>,
    pub max_grad_norm: RwSignal<String>,
    pub save_steps: RwSignal<String>,
    pub save_total_limit: RwSignal<String>,
    pub log_every: RwSignal<String>,
}

impl TrainForm {
    fn new() -> Self {
        let s = |v: &str| RwSignal::new(v.to_string());
        let form = TrainForm {
            steps: s(""),
            bsz: s(""),
            grad_accum: s(""),
            lr: s(""),
            warmup_ratio: s(""),
            lambda_warmup_frac: s(""),
            shape: s("linear"),
            shape_param: s(""),
            quantizer: s("absmean"),
            threshold: s(&DEFAULT_THRESHOLD_RATIO.to_string()),
            scale: s("optimal"),
            post_attn_norm: RwSignal::new(true),
            subln: RwSignal::new(false),
            act8: RwSignal::new(false),
            norm_init: s(""),
            loss: s(""),
            kd_temperature: s(""),
            kd_weight: s(""),
            kd_topk: s(""),
            quantize_lm_head: RwSignal::new(false),
            freeze_embeddings: RwSignal::new(false),
            seq_len: s(""),
            seed: s(""),
            weight_decay: s(""),
            max_grad_norm: s(""),
            save_steps: s(""),
            save_total_limit: s(""),
            log_every: s(""),
        };
        form.set(&TrainJob::defaults());
        form
    }

    /// Fills the form from a job (the defaults, the demo's preset, a run to resume).
    pub fn set(&self, job: &TrainJob) {
        let s = &job.settings;
        self.steps.set(s.steps.to_string());
        self.bsz.set(s.bsz.to_string());
        self.grad_accum.set(s.grad_accum.to_string());
        self.lr.set(s.lr.to_string());
        self.warmup_ratio.set(s.warmup_ratio.to_string());
        self.lambda_warmup_frac
            .set(s.lambda_warmup_frac.to_string());
        let text = s.schedule.to_string();
        let (shape, param) = text.split_once(':').unwrap_or((&text, ""));
        self.shape.set(shape.to_string());
        self.shape_param.set(param.to_string());
        match s.setup.quantizer {
            Quantizer::Absmean => self.quantizer.set("absmean".into()),
            Quantizer::Threshold { ratio, scale } => {
                self.quantizer.set("threshold".into());
                self.threshold.set(ratio.to_string());
                self.scale.set(scale.to_string());
            }
        }
        self.post_attn_norm.set(s.setup.post_attn_norm);
        self.subln.set(s.setup.subln);
        self.act8.set(s.setup.act8);
        self.norm_init.set(s.norm_init.name().into());
        self.loss.set(s.loss.name().into());
        self.kd_temperature.set(s.kd_temperature.to_string());
        self.kd_weight.set(s.kd_weight.to_string());
        self.kd_topk
            .set(s.kd_topk.map_or("all".into(), |k| k.to_string()));
        self.quantize_lm_head.set(s.setup.quantize_lm_head);
        self.freeze_embeddings.set(s.freeze_embeddings);
        self.seq_len.set(s.seq_len.to_string());
        self.seed.set(s.seed.to_string());
        self.weight_decay.set(s.adam.weight_decay.to_string());
        self.max_grad_norm.set(s.adam.max_grad_norm.to_string());
        self.save_steps.set(job.save_steps.to_string());
        self.save_total_limit.set(job.save_total_limit.to_string());
        self.log_every.set(job.log_every.to_string());
    }

    /// The chosen schedule (tracked: the preview chart follows it).
    pub fn schedule(&self) -> Result<Schedule, String> {
        let shape = self.shape.get();
        let param = self.shape_param.get();
        let text = if param.trim().is_empty() {
            shape
        } else {
            format!("{shape}:{}", param.trim())
        };
        text.parse().map_err(|e| format!("λ schedule: {e}"))
    }

    /// The run the form describes, checked as the trainer checks it.
    pub fn job(&self) -> Result<TrainJob, String> {
        let g = |s: RwSignal<String>| s.get_untracked();
        let mut job = TrainJob::defaults();
        let steps: u64 = parse("steps", &g(self.steps), "a whole number")?;
        let quantizer = match g(self.quantizer).as_str() {
            "threshold" => Quantizer::Threshold {
                ratio: parse("threshold ratio", &g(self.threshold), "a number")?,
                scale: match g(self.scale).as_str() {
                    "absmean" => ScaleMode::Absmean,
                    _ => ScaleMode::Optimal,
                },
            },
            _ => Quantizer::Absmean,
        };
        let s = &mut job.settings;
        s.steps = steps;
        s.bsz = parse("batch", &g(self.bsz), "a whole number")?;
        s.grad_accum = parse(
            "gradient accumulation",
            &g(self.grad_accum),
            "a whole number",
        )?;
        s.lr = parse("learning rate", &g(self.lr), "a number")?;
        s.warmup_ratio = parse("lr warmup ratio", &g(self.warmup_ratio), "a number")?;
        s.lambda_warmup_frac = parse("λ warmup fraction", &g(self.lambda_warmup_frac), "a number")?;
        s.schedule = self.schedule()?;
        s.setup.quantizer = quantizer;
        s.setup.post_attn_norm = self.post_attn_norm.get_untracked();
        s.setup.subln = self.subln.get_untracked();
        s.setup.act8 = self.act8.get_untracked();
        s.norm_init = g(self.norm_init).parse()?;
        s.loss = g(self.loss).parse()?;
        s.kd_temperature = parse("KD temperature", &g(self.kd_temperature), "a number")?;
        s.kd_weight = parse("KD weight", &g(self.kd_weight), "a number")?;
        s.kd_topk = match g(self.kd_topk).trim() {
            "" | "all" => None,
            k => Some(parse("KD top K", k, "a whole number or `all`")?),
        };
        if s.loss == LossKind::Ce {
            s.kd_topk = None;
        }
        s.setup.quantize_lm_head = self.quantize_lm_head.get_untracked();
        s.freeze_embeddings = self.freeze_embeddings.get_untracked();
        s.seq_len = parse("sequence length", &g(self.seq_len), "a whole number")?;
        s.seed = parse("seed", &g(self.seed), "a whole number")?;
        s.adam.weight_decay = parse("weight decay", &g(self.weight_decay), "a number")?;
        s.adam.max_grad_norm = parse("max grad norm", &g(self.max_grad_norm), "a number")?;
        s.validate().map_err(|e| e.to_string())?;
        let save = g(self.save_steps);
        job.save_steps = if save.trim().is_empty() {
            default_save_steps(steps)
        } else {
            parse("checkpoint every", &save, "a whole number")?
        };
        job.save_total_limit = parse(
            "checkpoints kept",
            &g(self.save_total_limit),
            "a whole number",
        )?;
        job.log_every = parse("log every", &g(self.log_every), "a whole number")?;
        if job.save_steps == 0 || job.log_every == 0 {
            return Err("checkpoint every and log every must be at least 1".into());
        }
        Ok(job)
    }
}

/// Everything the pages share.
#[derive(Clone, Copy)]
pub struct Studio {
    pub page: RwSignal<Page>,
    pub adapter: RwSignal<AdapterState>,
    pub gpu: StoredValue<Option<Rc<Gpu>>, LocalStorage>,
    pub tuned: StoredValue<bool>,
    pub store: StoredValue<Option<Rc<OpfsStore>>, LocalStorage>,
    pub store_error: RwSignal<Option<String>>,
    pub source: RwSignal<Option<Rc<ModelSource>>, LocalStorage>,
    pub model: RwSignal<ModelState>,
    pub packed: RwSignal<Option<PackedPick>, LocalStorage>,
    pub packed_error: RwSignal<Option<String>>,
    pub data: RwSignal<Option<DataInfo>>,
    pub data_error: RwSignal<Option<String>>,
    pub sg: SelfgenForm,
    pub selfgen: RwSignal<SelfgenView>,
    pub tr: TrainForm,
    pub train: RwSignal<TrainView>,
    pub resume: RwSignal<Option<ResumeOffer>>,
    pub results: RwSignal<ResultsView>,
    pub generation: RwSignal<(GenSide, GenSide)>,
    pub workshop: RwSignal<Vec<WorkshopRun>>,
    pub workshop_error: RwSignal<Option<String>>,
    pub download_error: RwSignal<Option<String>>,
    /// The job that holds the GPU now (one at a time).
    pub busy: RwSignal<Option<&'static str>>,
    pub control: StoredValue<Control, LocalStorage>,
}

impl Studio {
    pub fn new() -> Studio {
        Studio {
            page: RwSignal::new(Page::Model),
            adapter: RwSignal::new(AdapterState::Probing),
            gpu: StoredValue::new_local(None),
            tuned: StoredValue::new(false),
            store: StoredValue::new_local(None),
            store_error: RwSignal::new(None),
            source: RwSignal::new_local(None),
            model: RwSignal::new(ModelState::Empty),
            packed: RwSignal::new_local(None),
            packed_error: RwSignal::new(None),
            data: RwSignal::new(None),
            data_error: RwSignal::new(None),
            sg: SelfgenForm::new(),
            selfgen: RwSignal::new(SelfgenView::default()),
            tr: TrainForm::new(),
            train: RwSignal::new(TrainView::default()),
            resume: RwSignal::new(None),
            results: RwSignal::new(ResultsView::default()),
            generation: RwSignal::new(Default::default()),
            workshop: RwSignal::new(Vec::new()),
            workshop_error: RwSignal::new(None),
            download_error: RwSignal::new(None),
            busy: RwSignal::new(None),
            control: StoredValue::new_local(Control::new()),
        }
    }

    pub fn gpu(&self) -> Result<Rc<Gpu>, String> {
        self.gpu
            .get_value()
            .ok_or_else(|| "No WebGPU adapter: see the GPU page.".to_string())
    }

    pub fn store(&self) -> Result<Rc<OpfsStore>, String> {
        self.store.get_value().ok_or_else(|| {
            self.store_error
                .get_untracked()
                .unwrap_or_else(|| "The browser store is not open yet.".into())
        })
    }

    pub fn source(&self) -> Result<Rc<ModelSource>, String> {
        self.source
            .get_untracked()
            .ok_or_else(|| "Choose a model first (page 1), or the demo model.".to_string())
    }

    pub fn max_binding(&self) -> Option<u64> {
        match self.adapter.get() {
            AdapterState::Ready { max_binding, .. } => Some(max_binding),
            _ => None,
        }
    }
}

impl Default for Studio {
    fn default() -> Self {
        Studio::new()
    }
}
