//! The soft-label sidecar (docs/FORMAT.md): a teacher's K most likely next tokens and their
//! probabilities at every position of each example's training text, written by
//! `bitnet selfgen --soft-labels K` beside the JSONL, so that top-K distillation (`--kd-topk`)
//! needs no teacher forward while it trains.
//!
//! Layout (little-endian): `BNSOFT01`, u32 K, u32 examples; per example a u64 key (the first 8
//! bytes of the SHA-256 of its training text), u32 positions P, then P·K entries (u32 id, f32
//! probability at temperature 1), each position's best first. A position costs 8·K bytes.

use sha2::{Digest, Sha256};

use crate::dataset::{Example, training_text};
use crate::error::{CoreError, Result};

pub const MAGIC: &[u8; 8] = b"BNSOFT01";
/// The largest K a sidecar (and `--kd-topk`) may hold.
pub const MAX_K: usize = 1024;

/// One example's soft labels: P positions × K (id, probability), best first.
#[derive(Debug, Clone, PartialEq)]
pub struct SoftLabels {
    pub k: usize,
    pub ids: Vec<u32>,
    pub probs: Vec<f32>,
}

impl SoftLabels {
    pub fn positions(&self) -> usize {
        self.ids.len() / self.k.max(1)
    }

    /// The first `k` (≤ self.k) entries of every position: the top `k`, since each position's
    /// entries are sorted best first.
    pub fn truncated(&self, k: usize) -> SoftLabels {
        SoftLabels {
            k,
            ids: first_k(&self.ids, self.k, k),
            probs: first_k(&self.probs, self.k, k),
        }
    }
}

/// The first `k` of every run of `of` values.
fn first_k<T: Copy>(v: &[T], of: usize, k: usize) -> Vec<T> {
    v.chunks(of).flat_map(|c| c[..k].iter().copied()).collect()
}

/// The key of an example in a sidecar: the first 8 bytes of the SHA-256 of its training text.
pub fn example_key(ex: &Example) -> u64 {
    let (prompt, response) = training_text(ex);
    let mut h = Sha256::new();
    h.update(prompt.as_bytes());
    h.update(response.as_bytes());
    let d = h.finalize();
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

/// The bytes of a sidecar holding `labels` (each with the same K) for `examples`, in order.
pub fn encode(k: usize, examples: &[Example], labels: &[SoftLabels]) -> Vec<u8> {
    let positions: usize = labels.iter().map(|l| l.positions()).sum();
    let mut out = Vec::with_capacity(16 + 12 * labels.len() + 8 * k * positions);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(k as u32).to_le_bytes());
    out.extend_from_slice(&(labels.len() as u32).to_le_bytes());
    for (ex, l) in examples.iter().zip(labels) {
        debug_assert_eq!(l.k, k);
        out.extend_from_slice(&example_key(ex).to_le_bytes());
        out.extend_from_slice(&(l.positions() as u32).to_le_bytes());
        for (id, p) in l.ids.iter().zip(&l.probs) {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&p.to_le_bytes());
        }
    }
    out
}

/// A decoded sidecar: K and every example's labels by key.
#[derive(Debug, Clone)]
pub struct Sidecar {
    pub file: String,
    pub k: usize,
    pub labels: std::collections::HashMap<u64, SoftLabels>,
}

impl Sidecar {
    /// Reads a sidecar; an error names the file and what is wrong with it.
    pub fn decode(file: &str, bytes: &[u8]) -> Result<Sidecar> {
        let bad = |message: String| CoreError::Config {
            file: file.into(),
            message,
        };
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(bad(
                "not a soft-label sidecar (it does not start with BNSOFT01); write one with `bitnet selfgen --soft-labels K`".into(),
            ));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
        let (k, count) = (u32_at(8) as usize, u32_at(12) as usize);
        if k == 0 || k > MAX_K {
            return Err(bad(format!("K is {k}; it must be 1 to {MAX_K}")));
        }
        let mut labels = std::collections::HashMap::with_capacity(count);
        let mut at = 16;
        for i in 0..count {
            if bytes.len() < at + 12 {
                return Err(bad(format!(
                    "cut short in the header of example {} of {count}",
                    i + 1
                )));
            }
            let key = u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
            let positions = u32_at(at + 8) as usize;
            at += 12;
            let len = positions * k * 8;
            if bytes.len() < at + len {
                return Err(bad(format!(
                    "cut short in example {} of {count} ({positions} positions of {k} labels need {len} bytes, {} are left)",
                    i + 1,
                    bytes.len() - at
                )));
            }
            let (mut ids, mut probs) = (Vec::with_capacity(positions * k), Vec::new());
            probs.reserve(positions * k);
            for e in bytes[at..at + len].chunks_exact(8) {
                ids.push(u32::from_le_bytes(e[..4].try_into().expect("4")));
                let p = f32::from_le_bytes(e[4..].try_into().expect("4"));
                if !(0.0..=1.0).contains(&p) {
                    return Err(bad(format!(
                        "example {}: probability {p} is not in [0, 1]",
                        i + 1
                    )));
                }
                probs.push(p);
            }
            at += len;
            labels.insert(key, SoftLabels { k, ids, probs });
        }
        if at != bytes.len() {
            return Err(bad(format!(
                "{} bytes after the last of its {count} examples",
                bytes.len() - at
            )));
        }
        Ok(Sidecar {
            file: file.into(),
            k,
            labels,
        })
    }

    /// The top `k` labels of each of `examples` (named `data_name`; in order), each covering at
    /// least `positions[i]` positions with ids below `vocab`; an error names the sidecar, the
    /// dataset and the example.
    pub fn for_examples(
        &self,
        data_name: &str,
        examples: &[Example],
        positions: &[usize],
        k: usize,
        vocab: usize,
    ) -> Result<Vec<SoftLabels>> {
        let bad = |message: String| CoreError::Config {
            file: self.file.clone(),
            message,
        };
        if k > self.k {
            return Err(bad(format!(
                "holds the top {} tokens per position; --kd-topk {k} asks for more (write it again with `bitnet selfgen --soft-labels {k}`, or lower --kd-topk)",
                self.k
            )));
        }
        let mut out = Vec::with_capacity(examples.len());
        for (i, (ex, &need)) in examples.iter().zip(positions).enumerate() {
            let l = self.labels.get(&example_key(ex)).ok_or_else(|| {
                bad(format!(
                    "has no labels for example {} of {data_name} (the sidecar belongs to another dataset, or the dataset was edited after it was written)",
                    i + 1
                ))
            })?;
            if l.positions() < need {
                return Err(bad(format!(
                    "example {} of {data_name}: {} positions, training needs {need}",
                    i + 1,
                    l.positions()
                )));
            }
            if let Some(&id) = l.ids.iter().find(|&&id| id as usize >= vocab) {
                return Err(bad(format!(
                    "example {} of {data_name}: token id {id} is outside the model's vocabulary of {vocab}",
                    i + 1
                )));
            }
            out.push(if k == self.k {
                l.clone()
            } else {
                l.truncated(k)
            });
        }
        Ok(out)
    }
}

/// The sidecar's name beside a JSONL file: `data.jsonl` → `data.soft`.
pub fn sidecar_name(jsonl: &str) -> String {
    let stem = jsonl.strip_suffix(".jsonl").unwrap_or(jsonl);
    format!("{stem}.soft")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(i: &str) -> Example {
        Example {
            instruction: i.into(),
            input: String::new(),
            output: "yes".into(),
            domain: String::new(),
        }
    }

    #[test]
    fn a_sidecar_round_trips_costs_8k_bytes_a_position_and_names_what_is_wrong() {
        let examples = [ex("a"), ex("b")];
        let labels = [
            SoftLabels {
                k: 2,
                ids: vec![3, 1, 0, 2, 4, 3],
                probs: vec![0.5, 0.25, 0.9, 0.05, 0.6, 0.3],
            },
            SoftLabels {
                k: 2,
                ids: vec![1, 2],
                probs: vec![0.7, 0.2],
            },
        ];
        let bytes = encode(2, &examples, &labels);
        assert_eq!(bytes.len(), 16 + 2 * 12 + 4 * 8 * 2);
        let s = Sidecar::decode("d.soft", &bytes).unwrap();
        let got = s.for_examples("d.jsonl", &examples, &[3, 1], 2, 5).unwrap();
        assert_eq!(got, labels);
        let top1 = s.for_examples("d.jsonl", &examples, &[3, 1], 1, 5).unwrap();
        assert_eq!(top1[0].ids, vec![3, 0, 4]);
        assert_eq!(top1[0].probs, vec![0.5, 0.9, 0.6]);

        let err = |r: Result<Vec<SoftLabels>>| r.unwrap_err().to_string();
        assert!(
            err(s.for_examples("d.jsonl", &[ex("c")], &[1], 2, 5)).contains("example 1 of d.jsonl")
        );
        assert!(
            err(s.for_examples("d.jsonl", &examples, &[4, 1], 2, 5)).contains("training needs 4")
        );
        assert!(err(s.for_examples("d.jsonl", &examples, &[3, 1], 3, 5)).contains("--kd-topk 3"));
        assert!(
            err(s.for_examples("d.jsonl", &examples, &[3, 1], 2, 4)).contains("vocabulary of 4")
        );
        let cut = Sidecar::decode("d.soft", &bytes[..bytes.len() - 1])
            .unwrap_err()
            .to_string();
        assert!(cut.contains("d.soft") && cut.contains("cut short"), "{cut}");
        assert!(
            Sidecar::decode("d.soft", b"{\"instruction\": 1}")
                .unwrap_err()
                .to_string()
                .contains("BNSOFT01")
        );
        assert_eq!(sidecar_name("out/data.jsonl"), "out/data.soft");
    }
}
