//! `bitnet selfgen`: the model writes its own training data (SEED.md). Attempt n asks the
//! instruction `Templates::pick(seed, n)` and samples from its own seeded stream, so a run is
//! reproducible whatever the batch size. Each kept line is appended and flushed as it passes the
//! filters; the counts go to `<out>.state.json` after every batch, so an interrupted run keeps its
//! work and `--resume` continues to `--num` without writing any output twice (the interrupted batch
//! runs again and finds its lines already written, so a resumed run ends with the lines and counts
//! of an uninterrupted one).

use std::io::Write;
use std::path::{Path, PathBuf};

use bitnet_core::dataset::Example;
use bitnet_core::quant::Quantizer;
use bitnet_core::sample::Sampling;
use bitnet_core::selfgen::{
    Counts, Dedup, PROMPT_TOKENS, Rejection, Templates, check, extract_response, prompt_text,
};
use bitnet_gpu::generate::{GenerateOptions, Generator};

use crate::files::{io, write_atomic};
use crate::infer::{self, Loaded};

pub struct SelfgenArgs {
    pub model: PathBuf,
    pub out: PathBuf,
    pub num: u64,
    pub max_new_tokens: usize,
    pub seed: u64,
    pub batch: usize,
    pub resume: bool,
    pub max_attempts: Option<u64>,
    pub templates: Option<PathBuf>,
    pub chat: bool,
    pub sampling: Sampling,
    pub ternary: bool,
    pub quantizer: Quantizer,
}

/// What `<out>.state.json` holds: the settings a resumed run must share, and the counts so far.
#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct State {
    seed: u64,
    max_new_tokens: usize,
    chat: bool,
    templates: Option<String>,
    counts: Counts,
}

/// The closing report.
#[derive(serde::Serialize, Debug, Clone)]
pub struct SelfgenReport {
    pub out: String,
    pub num: u64,
    pub max_attempts: u64,
    pub counts: Counts,
    /// "num" (enough samples kept) or "max_attempts" (the attempt budget ran out).
    pub stopped_by: String,
}

pub fn state_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".state.json");
    PathBuf::from(s)
}

/// The kept lines of an earlier run: a last line cut short by a kill is dropped from the file (it
/// was never counted), every other line must parse.
fn existing(out: &Path) -> Result<Vec<Example>, String> {
    let mut bytes = std::fs::read(out).map_err(|e| io(out, e))?;
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if whole < bytes.len() {
        bytes.truncate(whole);
        std::fs::write(out, &bytes).map_err(|e| io(out, e))?;
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new()); // nothing kept yet
    }
    bitnet_core::dataset::parse_jsonl(&out.display().to_string(), &bytes).map_err(|e| e.to_string())
}

fn write_state(path: &Path, state: &State) -> Result<(), String> {
    let text = serde_json::to_string_pretty(state).map_err(|e| e.to_string())?;
    write_atomic(path, text.as_bytes())
}

fn progress(c: &Counts, num: u64, max_attempts: u64, tok_s: f64) {
    let width = 24;
    let filled = ((c.kept.min(num) * width) / num.max(1)) as usize;
    eprint!(
        "\r[{}{}] kept {}/{num} · rejected {} (short {}, long {}, disclaimer {}, words {}, instruction longer {}, duplicates {}) · attempts {}/{max_attempts} · {tok_s:.1} tokens/s ",
        "#".repeat(filled),
        "-".repeat(width as usize - filled),
        c.kept,
        c.rejected(),
        c.too_short,
        c.too_long,
        c.disclaimer,
        c.too_few_words,
        c.instruction_longer,
        c.duplicates,
        c.attempts,
    );
    let _ = std::io::stderr().flush();
}

/// Runs self-generation with an already loaded model (shared by `bitnet run` and `bitnet demo`).
pub fn run_with(
    gpu: &bitnet_gpu::Gpu,
    m: &Loaded,
    a: &SelfgenArgs,
    quiet: bool,
) -> Result<SelfgenReport, String> {
    if a.num == 0 || a.batch == 0 || a.max_new_tokens == 0 {
        return Err("--num, --batch and --max-new-tokens must be positive".into());
    }
    let max_attempts = a.max_attempts.unwrap_or(4 * a.num);
    let templates = match &a.templates {
        Some(p) => {
            let b = std::fs::read(p).map_err(|e| io(p, e))?;
            Templates::from_json(&p.display().to_string(), &b).map_err(|e| e.to_string())?
        }
        None => Templates::builtin(),
    };
    let mut state = State {
        seed: a.seed,
        max_new_tokens: a.max_new_tokens,
        chat: a.chat,
        templates: a.templates.as_ref().map(|p| p.display().to_string()),
        counts: Counts::default(),
    };
    let state_file = state_path(&a.out);
    let mut dedup = Dedup::new();
    let mut pending = std::collections::HashSet::new();
    if a.out.exists() {
        if !a.resume {
            return Err(format!(
                "{} exists: pass --resume to continue it, or choose another --out",
                a.out.display()
            ));
        }
        let lines = existing(&a.out)?;
        if let Ok(text) = std::fs::read_to_string(&state_file) {
            let saved: State = serde_json::from_str(&text)
                .map_err(|e| format!("{}: {e}", state_file.display()))?;
            let same = State {
                counts: saved.counts.clone(),
                ..state
            };
            if saved != same {
                return Err(format!(
                    "{}: written with other settings (seed {}, max new tokens {}, chat {}, templates {:?}); resume with those",
                    state_file.display(),
                    saved.seed,
                    saved.max_new_tokens,
                    saved.chat,
                    saved.templates
                ));
            }
            state = saved;
        }
        // The counts are saved after each batch; lines written after that belong to the batch a
        // kill interrupted. It runs again from its first attempt (each attempt draws from its own
        // stream, so it gives the same outputs) and finds them already written.
        let counted = (state.counts.kept as usize).min(lines.len());
        state.counts.kept = counted as u64;
        for ex in &lines[..counted] {
            dedup.insert(&ex.output);
        }
        pending.extend(lines[counted..].iter().map(|ex| ex.output.clone()));
    } else if let Some(dir) = a.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&a.out)
        .map_err(|e| io(&a.out, e))?;
    let generator = Generator::new(gpu, &m.model.config, &m.weights).map_err(|e| e.to_string())?;
    let now = infer::clock();
    let (mut tokens, mut ms) = (0usize, 0f64);
    while state.counts.kept < a.num && state.counts.attempts < max_attempts {
        let c = &mut state.counts;
        let n = (a.batch as u64).min(max_attempts - c.attempts);
        let first = c.attempts;
        let picks: Vec<_> = (first..first + n)
            .map(|i| templates.pick(a.seed, i))
            .collect();
        let mut prompts = Vec::with_capacity(picks.len());
        for p in &picks {
            let text = if a.chat {
                p.instruction.clone()
            } else {
                prompt_text(&p.instruction)
            };
            prompts.push(infer::prompt_ids(m, &text, a.chat, PROMPT_TOKENS)?);
        }
        let opts = GenerateOptions {
            max_new_tokens: a.max_new_tokens,
            sampling: a.sampling,
            seed: a.seed,
            first_stream: first,
            eos: m.eos.clone(),
            keep_logits: false,
        };
        let t0 = now();
        let out =
            pollster::block_on(generator.generate(gpu, &prompts, &opts, &now, &mut |_, _| {}))
                .map_err(|e| e.to_string())?;
        ms += now() - t0;
        tokens += out.tokens.iter().map(Vec::len).sum::<usize>();
        for (i, pick) in picks.iter().enumerate() {
            if c.kept >= a.num {
                break;
            }
            c.attempts += 1;
            // The seed's answer: the decoded prompt and continuation, after the first "Response:".
            let response = if a.chat {
                m.tokenizer.decode(&out.tokens[i], true)
            } else {
                let mut all = prompts[i].clone();
                all.extend_from_slice(&out.tokens[i]);
                m.tokenizer.decode(&all, true).map(|t| extract_response(&t))
            }
            .map_err(|e| format!("{}: {e}", m.name))?;
            let response = response.trim().to_string();
            if let Err(r) = check(&pick.instruction, &response) {
                c.reject(r);
                continue;
            }
            if !dedup.insert(&response) {
                c.duplicates += 1;
                continue;
            }
            if pending.remove(&response) {
                c.kept += 1; // written before the interruption
                continue;
            }
            let ex = Example {
                instruction: pick.instruction.clone(),
                input: String::new(),
                output: response,
                domain: pick.domain.clone(),
            };
            let mut line = serde_json::to_string(&ex).map_err(|e| e.to_string())?;
            line.push('\n');
            file.write_all(line.as_bytes())
                .and_then(|_| file.flush())
                .map_err(|e| io(&a.out, e))?;
            c.kept += 1;
        }
        write_state(&state_file, &state)?;
        if !quiet {
            let speed = tokens as f64 * 1e3 / ms.max(1e-9);
            progress(&state.counts, a.num, max_attempts, speed);
        }
    }
    if !quiet {
        eprintln!();
    }
    let counts = state.counts.clone();
    let stopped_by = if counts.kept >= a.num {
        "num"
    } else {
        "max_attempts"
    };
    Ok(SelfgenReport {
        out: a.out.display().to_string(),
        num: a.num,
        max_attempts,
        counts,
        stopped_by: stopped_by.into(),
    })
}

pub fn print_report(r: &SelfgenReport) {
    let c = &r.counts;
    match r.stopped_by.as_str() {
        "num" => println!("stopped: {} samples kept (--num {})", c.kept, r.num),
        _ => println!(
            "stopped: the attempt budget ran out (--max-attempts {}) with {} of {} samples kept",
            r.max_attempts, c.kept, r.num
        ),
    }
    println!("generated  {}", c.attempts);
    println!("kept       {}  → {}", c.kept, r.out);
    for (rej, n) in Rejection::ALL.iter().zip([
        c.too_short,
        c.too_long,
        c.disclaimer,
        c.too_few_words,
        c.instruction_longer,
    ]) {
        println!("rejected   {n:<6} {}", rej.label());
    }
    println!("duplicates {}", c.duplicates);
}

pub fn selfgen(a: &SelfgenArgs, json: bool) -> Result<(), String> {
    let gpu = infer::gpu()?;
    let m = infer::load(&gpu, &a.model, a.ternary, a.quantizer)?;
    if !a.chat && m.chat.is_some() && !json {
        eprintln!(
            "note: {} has a chat template; --chat prompts through it (the seed used the plain `Instruction: …\\nResponse:` format)",
            m.name
        );
    }
    let report = run_with(&gpu, &m, a, json)?;
    if json {
        return crate::print_json(&report);
    }
    print_report(&report);
    Ok(())
}
