//! Task accuracy: how many of a task file's instructions a model answers exactly. A task file is
//! JSONL in the training data's schema (`{"instruction", "input", "output", "domain"}`); `output`
//! is the expected answer. Each instruction is asked in the training text's format (the prompt
//! part of `### Instruction:\n…\n\n### Response:\n`, what `train` teaches), answered greedily, and
//! scored by exact match: the continuation up to the end token, at most the expected answer's
//! token count plus [`SLACK_TOKENS`] tokens, up to its first newline, trimmed, must equal the
//! expected output trimmed. Batching never changes a score.

use std::collections::BTreeMap;

use bitnet_core::dataset::{Example, parse_jsonl, training_text};
use bitnet_core::limits::at_least;
use bitnet_core::sample::Sampling;
use bitnet_gpu::generate::GenerateOptions;

use crate::Ctx;
use crate::error::{PipelineError, Result};
use crate::load::Loaded;

/// Tokens a model may write past the expected answer's length before its answer is cut.
pub const SLACK_TOKENS: usize = 8;

/// One task and the model's answer.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskAnswer {
    pub domain: String,
    pub instruction: String,
    pub expected: String,
    pub answer: String,
    pub correct: bool,
}

/// Accuracy over the tasks of one domain.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DomainAccuracy {
    pub domain: String,
    pub tasks: usize,
    pub correct: usize,
    pub accuracy: f64,
}

/// Exact-match accuracy of a model over a task file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskAccuracy {
    pub model: String,
    pub ternary: bool,
    pub file: String,
    pub tasks: usize,
    pub correct: usize,
    pub accuracy: f64,
    /// Per domain, in name order (tasks without a domain count under "").
    pub domains: Vec<DomainAccuracy>,
    pub answers: Vec<TaskAnswer>,
}

/// The answer in a decoded continuation: its first line, trimmed.
pub fn answer_of(continuation: &str) -> &str {
    continuation.split('\n').next().unwrap_or("").trim()
}

/// The tasks of a task file; an error names the file and the line.
pub fn parse_tasks(file: &str, bytes: &[u8]) -> Result<Vec<Example>> {
    let tasks = parse_jsonl(file, bytes).map_err(|e| PipelineError::input(file, e))?;
    if let Some(i) = tasks.iter().position(|t| t.output.trim().is_empty()) {
        return Err(PipelineError::Invalid(format!(
            "{file}: task {} has an empty output (the expected answer)",
            i + 1
        )));
    }
    Ok(tasks)
}

/// The exact-match accuracy of `m` over the task file `tasks` (named `file`), `bsz` prompts at a
/// time.
pub async fn task_accuracy(
    ctx: &Ctx<'_>,
    m: &Loaded,
    tasks: &[u8],
    file: &str,
    bsz: usize,
) -> Result<TaskAccuracy> {
    at_least(&[("--bsz", bsz as u64, 1)]).map_err(PipelineError::Invalid)?;
    let tasks = parse_tasks(file, tasks)?;
    let mut prompts = Vec::with_capacity(tasks.len());
    for (i, t) in tasks.iter().enumerate() {
        let (prompt, _) = training_text(t);
        let ids = m
            .tokenizer
            .encode(&prompt, true)
            .map_err(|e| PipelineError::input(&m.name, e))?;
        let budget = m
            .tokenizer
            .encode(t.output.trim(), false)
            .map_err(|e| PipelineError::input(&m.name, e))?
            .len()
            + SLACK_TOKENS;
        m.check_context(ids.len(), budget)
            .map_err(|e| PipelineError::Invalid(format!("{file}, task {}: {e}", i + 1)))?;
        prompts.push((ids, budget));
    }
    let generator = m.generator(ctx.gpu)?;
    let mut answers = Vec::with_capacity(tasks.len());
    for (chunk, batch) in tasks.chunks(bsz).zip(prompts.chunks(bsz)) {
        ctx.control.between_steps().await?;
        let opts = GenerateOptions {
            max_new_tokens: batch.iter().map(|p| p.1).max().unwrap_or(1),
            sampling: Sampling::Greedy,
            seed: 0,
            first_stream: 0,
            eos: m.eos.clone(),
            keep_logits: false,
        };
        let ids: Vec<Vec<u32>> = batch.iter().map(|p| p.0.clone()).collect();
        let out = generator
            .generate(ctx.gpu, &ids, &opts, &crate::clock(), &mut |_, _| {})
            .await?;
        for ((t, (_, budget)), tokens) in chunk.iter().zip(batch).zip(&out.tokens) {
            // Each answer is cut at its own budget, whatever the batch's longest.
            let own = &tokens[..tokens.len().min(*budget)];
            let answer = answer_of(&m.decode(own)?).to_string();
            let expected = t.output.trim().to_string();
            answers.push(TaskAnswer {
                domain: t.domain.clone(),
                instruction: t.instruction.clone(),
                correct: answer == expected,
                expected,
                answer,
            });
        }
    }
    let mut per: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for a in &answers {
        let e = per.entry(&a.domain).or_default();
        e.0 += 1;
        e.1 += a.correct as usize;
    }
    let share = |c: usize, n: usize| c as f64 / n.max(1) as f64;
    let domains = per
        .into_iter()
        .map(|(d, (n, c))| DomainAccuracy {
            domain: d.to_string(),
            tasks: n,
            correct: c,
            accuracy: share(c, n),
        })
        .collect();
    let correct = answers.iter().filter(|a| a.correct).count();
    Ok(TaskAccuracy {
        model: m.name.clone(),
        ternary: m.ternary,
        file: file.to_string(),
        tasks: answers.len(),
        correct,
        accuracy: share(correct, answers.len()),
        domains,
        answers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_the_first_line_trimmed() {
        assert_eq!(
            answer_of("  7 plus 5 equals 12.\nInstruction: more"),
            "7 plus 5 equals 12."
        );
        assert_eq!(answer_of("\nsecond line"), "");
        assert_eq!(answer_of(" all of it "), "all of it");
    }

    #[test]
    fn a_task_file_names_its_bad_lines() {
        let e = parse_tasks(
            "t.jsonl",
            b"{\"instruction\":\"a\",\"output\":\"b\"}\n{\"instruction\":\"a\"}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("t.jsonl") && e.contains("line 2"), "{e}");
        let e = parse_tasks("t.jsonl", b"{\"instruction\":\"a\",\"output\":\"  \"}\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("t.jsonl") && e.contains("task 1") && e.contains("empty output"),
            "{e}"
        );
        assert_eq!(
            parse_tasks("t.jsonl", b"{\"instruction\":\"a\",\"output\":\"b\"}")
                .unwrap()
                .len(),
            1
        );
    }
}
