//! Training data (SEED.md): JSONL records `{"instruction", "input", "output", "domain"}`, the original
//! training text `### Instruction:\n{instruction}\n\n[### Input:\n{input}\n\n]### Response:\n{output}`,
//! tokenized and truncated to the sequence length, with a loss mask (`all`, the seed's, or `response`:
//! only the answer's tokens are targets), and padded batches whose padding is never a target.

use serde::{Deserialize, Serialize};

use crate::cpu::model::next_token_targets;
use crate::error::{CoreError, Result};
use crate::tokenizer::Tokenizer;

/// One record of the self-generated data (the seed's schema).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    pub instruction: String,
    #[serde(default)]
    pub input: String,
    pub output: String,
    #[serde(default)]
    pub domain: String,
}

/// Which tokens are trained on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossMask {
    /// Every token (the seed).
    #[default]
    All,
    /// Only the tokens of the response.
    Response,
}

impl std::str::FromStr for LossMask {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "all" => Ok(LossMask::All),
            "response" => Ok(LossMask::Response),
            _ => Err(format!("loss mask must be `all` or `response`, not `{s}`")),
        }
    }
}

/// Parses JSONL (blank lines skipped); an error names the file and the line.
pub fn parse_jsonl(file: &str, bytes: &[u8]) -> Result<Vec<Example>> {
    // A UTF-8 byte-order mark (some editors write one) is not part of the first record.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        let column = at
            - bytes[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1)
            + 1;
        CoreError::Config {
            file: file.into(),
            message: format!(
                "line {line}, byte {column} of the line: not UTF-8 text (save the file as UTF-8)"
            ),
        }
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let ex: Example = serde_json::from_str(line).map_err(|e| CoreError::Config {
            file: file.into(),
            message: format!(
                "line {}: not a record with instruction and output strings: {e}",
                i + 1
            ),
        })?;
        out.push(ex);
    }
    if out.is_empty() {
        return Err(CoreError::Config {
            file: file.into(),
            message: "no records".into(),
        });
    }
    Ok(out)
}

/// The prompt (everything up to and including `### Response:\n`) and the response of the training text.
pub fn training_text(ex: &Example) -> (String, String) {
    let mut prompt = format!("### Instruction:\n{}\n\n", ex.instruction);
    if !ex.input.is_empty() {
        prompt.push_str(&format!("### Input:\n{}\n\n", ex.input));
    }
    prompt.push_str("### Response:\n");
    (prompt, ex.output.clone())
}

/// A tokenized example: ids and, per token, whether it is a loss target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    pub ids: Vec<u32>,
    pub keep: Vec<bool>,
}

/// Tokenizes the whole training text at once (as the seed's tokenizer call did, special tokens
/// included), truncated to `seq_len` tokens. With `LossMask::Response`, the targets are the tokens
/// past the prompt's own token count.
pub fn tokenize(tok: &Tokenizer, ex: &Example, seq_len: usize, mask: LossMask) -> Result<Sequence> {
    let (prompt, response) = training_text(ex);
    let mut ids = tok.encode(&format!("{prompt}{response}"), true)?;
    ids.truncate(seq_len.max(1));
    let first_target = match mask {
        LossMask::All => 0,
        LossMask::Response => tok.encode(&prompt, true)?.len(),
    };
    let keep = (0..ids.len()).map(|t| t >= first_target).collect();
    Ok(Sequence { ids, keep })
}

/// Sequences padded with `pad_id` to the longest, and their next-token targets (−1 on padding,
/// on tokens the mask drops and at each sequence's end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedBatch {
    pub tokens: Vec<Vec<u32>>,
    pub targets: Vec<i32>,
}

pub fn pad_batch(seqs: &[Sequence], pad_id: u32) -> PaddedBatch {
    let len = seqs.iter().map(|s| s.ids.len()).max().unwrap_or(0);
    let mut tokens = Vec::with_capacity(seqs.len());
    let mut keep = Vec::with_capacity(seqs.len());
    for s in seqs {
        let mut ids = s.ids.clone();
        let mut k = s.keep.clone();
        ids.resize(len, pad_id);
        k.resize(len, false);
        tokens.push(ids);
        keep.push(k);
    }
    let targets = next_token_targets(&tokens, Some(&keep));
    PaddedBatch { tokens, targets }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> Tokenizer {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/tokenizer/tokenizer.json"
        );
        Tokenizer::from_bytes("tokenizer.json", &std::fs::read(path).unwrap()).unwrap()
    }

    fn example(input: &str) -> Example {
        Example {
            instruction: "Write a haiku about the sea.".into(),
            input: input.into(),
            output: "Waves fold into foam.".into(),
            domain: "writing".into(),
        }
    }

    #[test]
    fn training_text_is_the_seed_format() {
        let (p, r) = training_text(&example(""));
        assert_eq!(
            p,
            "### Instruction:\nWrite a haiku about the sea.\n\n### Response:\n"
        );
        assert_eq!(r, "Waves fold into foam.");
        let (p, _) = training_text(&example("short"));
        assert_eq!(
            p,
            "### Instruction:\nWrite a haiku about the sea.\n\n### Input:\nshort\n\n### Response:\n"
        );
    }

    #[test]
    fn jsonl_parses_the_seed_schema_and_names_bad_lines() {
        let good = br#"{"instruction": "a", "input": "", "output": "b", "domain": "math"}

{"instruction": "c", "output": "d"}
"#;
        let v = parse_jsonl("data.jsonl", good).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].input, "");
        let err = parse_jsonl(
            "data.jsonl",
            b"{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": 3}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("data.jsonl") && err.contains("line 2"),
            "{err}"
        );
        let bom = b"\xEF\xBB\xBF{\"instruction\": \"a\", \"output\": \"b\"}\n";
        assert_eq!(parse_jsonl("bom.jsonl", bom).unwrap()[0].instruction, "a");
        let err = parse_jsonl(
            "latin1.jsonl",
            b"{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"caf\xE9\"}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("latin1.jsonl")
                && err.contains("line 2, byte 21")
                && err.contains("UTF-8"),
            "{err}"
        );
        assert!(
            parse_jsonl("empty.jsonl", b"\n")
                .unwrap_err()
                .to_string()
                .contains("no records")
        );
    }

    #[test]
    fn masks_truncation_and_padding() {
        let tok = tokenizer();
        let ex = example("");
        let all = tokenize(&tok, &ex, 512, LossMask::All).unwrap();
        assert!(all.keep.iter().all(|&k| k));
        let resp = tokenize(&tok, &ex, 512, LossMask::Response).unwrap();
        assert_eq!(resp.ids, all.ids);
        let prompt_len = tok.encode(&training_text(&ex).0, true).unwrap().len();
        assert!(prompt_len > 0 && prompt_len < resp.ids.len());
        assert!(resp.keep[..prompt_len].iter().all(|&k| !k));
        assert!(resp.keep[prompt_len..].iter().all(|&k| k));
        let short = tokenize(&tok, &ex, 5, LossMask::All).unwrap();
        assert_eq!(short.ids, all.ids[..5]);

        let b = pad_batch(&[short.clone(), resp.clone()], 2);
        let len = resp.ids.len();
        assert_eq!(b.tokens[0].len(), len);
        assert_eq!(b.tokens[0][5..], vec![2; len - 5]);
        // The short sequence predicts its own next tokens, never padding; the response-masked one
        // only its answer.
        assert_eq!(
            b.targets[..4],
            short.ids[1..5]
                .iter()
                .map(|&i| i as i32)
                .collect::<Vec<_>>()
        );
        assert!(b.targets[4..len].iter().all(|&t| t == -1));
        let second = &b.targets[len..];
        assert!(second[..prompt_len - 1].iter().all(|&t| t == -1));
        assert_eq!(second[prompt_len - 1], resp.ids[prompt_len] as i32);
        assert_eq!(second[len - 1], -1);
    }
}
