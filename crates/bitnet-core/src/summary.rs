//! The model summary that `bitnet inspect` and the app show, with a memory plan for fine-tuning.

use crate::config::ModelConfig;
use crate::model::Model;
use crate::params::{ParamSpec, Role, param_table};

/// Default fine-tuning shape (the seed's `--bsz 2 --grad_accum 8`, 512-token samples).
pub const DEFAULT_BATCH: usize = 2;
pub const DEFAULT_SEQ_LEN: usize = 512;
pub const DEFAULT_GRAD_ACCUM: usize = 8;

#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelSummary {
    pub architecture: String,
    pub model_type: String,
    pub layers: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub attention_heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    /// Vocabulary of tokenizer.json, when present.
    pub tokenizer_vocab: Option<usize>,
    pub tied_embeddings: bool,
    /// As transformers' `num_parameters()` counts them.
    pub parameters: u64,
    /// Parameters of the linear projections, which become ternary.
    pub ternary_parameters: u64,
    /// Stored dtypes of the weights.
    pub dtypes: Vec<&'static str>,
    /// Bytes of weight data on disk.
    pub weight_bytes: u64,
    pub weight_files: Vec<String>,
    pub finetune_memory: MemoryPlan,
}

impl ModelSummary {
    pub fn new(model: &Model, tokenizer_vocab: Option<usize>) -> Self {
        let c = &model.config;
        let table: Vec<ParamSpec> = model.tensors.iter().map(|t| t.spec.clone()).collect();
        ModelSummary {
            architecture: c.architecture.clone(),
            model_type: c.model_type.clone(),
            layers: c.num_hidden_layers,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            attention_heads: c.num_attention_heads,
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            vocab_size: c.vocab_size,
            tokenizer_vocab,
            tied_embeddings: c.tie_word_embeddings,
            parameters: table.iter().map(|p| p.numel() as u64).sum(),
            ternary_parameters: table
                .iter()
                .filter(|p| p.role == Role::Projection)
                .map(|p| p.numel() as u64)
                .sum(),
            dtypes: model.dtypes(),
            weight_bytes: model.weight_bytes(),
            weight_files: model.shards.iter().map(|s| s.file.clone()).collect(),
            finetune_memory: MemoryPlan::new(c, DEFAULT_BATCH, DEFAULT_SEQ_LEN, DEFAULT_GRAD_ACCUM),
        }
    }
}

/// GPU memory a fine-tune needs, in bytes, all f32 (DESIGN.md §2): the one plan that `inspect`,
/// the app and `train` show and check, counted buffer by buffer as the GPU model, the optimizer
/// and the batches allocate them (a test holds it to `Gpu::allocated_bytes`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MemoryPlan {
    /// Sequences per micro-batch.
    pub batch: usize,
    pub seq_len: usize,
    /// Micro-batches per optimizer step: the trainer holds all of their activations at once.
    pub micro_batches: usize,
    pub weights: u64,
    pub gradients: u64,
    /// AdamW first and second moments.
    pub optimizer: u64,
    /// Activations kept for backward, logits and their gradient, of every micro-batch of a step.
    pub activations: u64,
    /// A distillation teacher's weights and batches (0 without one).
    pub teacher: u64,
    pub total: u64,
    /// The largest single buffer and what it holds.
    pub largest_buffer: u64,
    pub largest_buffer_name: String,
}

/// What the plan calls the logits buffer when it is the largest.
pub const LOGITS_BUFFER: &str = "the logits of a micro-batch";

impl MemoryPlan {
    pub fn new(c: &ModelConfig, batch: usize, seq_len: usize, micro_batches: usize) -> Self {
        let table = param_table(c);
        let params: u64 = table.iter().map(|p| p.numel() as u64).sum();
        let (h, i, v) = (
            c.hidden_size as u64,
            c.intermediate_size as u64,
            c.vocab_size as u64,
        );
        let kv = (c.num_key_value_heads * c.head_dim) as u64;
        let q = (c.num_attention_heads * c.head_dim) as u64;
        let heads = c.num_attention_heads as u64;
        let layers = c.num_hidden_layers as u64;
        let tokens = (batch * seq_len) as u64;
        // Per token, as `Batch::new` allocates: in each layer the norms' inputs and 1/rms, q/k/v
        // before and after RoPE, the attention output and its softmax statistics, o_proj's output
        // (and normed), the residual, gate/up/SwiGLU; once: the residual stream, the final norm,
        // logits and their gradient, the backward pass's scratch, loss, ids and targets.
        let per_layer = 5 * h + 3 * q + 3 * kv + 3 * i + 2 * heads + 3;
        let once = (layers + 6) * h + 2 * v + 3 * i + 3 * q + 5 * kv + 8;
        let rope = seq_len as u64 * c.head_dim as u64; // cos and sin, half a head each
        let activations =
            4 * micro_batches.max(1) as u64 * (tokens * (layers * per_layer + once) + rope);
        let (largest_name, largest) = table
            .iter()
            .map(|p| (p.name.clone(), 4 * p.numel() as u64))
            .chain(std::iter::once((LOGITS_BUFFER.to_string(), 4 * tokens * v)))
            .max_by_key(|(_, b)| *b)
            .unwrap_or_default();
        let weights = 4 * params;
        MemoryPlan {
            batch,
            seq_len,
            micro_batches,
            weights,
            gradients: weights,
            optimizer: 2 * weights,
            activations,
            teacher: 0,
            total: 4 * weights + activations,
            largest_buffer: largest,
            largest_buffer_name: largest_name,
        }
    }

    /// The plan of a model with SubLN: its gains (with their gradients and moments) and, per layer
    /// and token, the normed inputs of o_proj and down_proj and their 1/rms.
    pub fn with_subln(mut self, c: &ModelConfig) -> Self {
        let layers = c.num_hidden_layers as u64;
        let width = (c.num_attention_heads * c.head_dim + c.intermediate_size) as u64;
        let gains = 4 * layers * width;
        let tokens = (self.batch * self.seq_len) as u64;
        let acts = 4 * self.micro_batches.max(1) as u64 * tokens * layers * (width + 2);
        self.weights += gains;
        self.gradients += gains;
        self.optimizer += 2 * gains;
        self.activations += acts;
        self.total += 4 * gains + acts;
        self
    }

    /// The plan of a W1.58A8 model: per batch, a projection's input rounded to 8 bits (rows of the
    /// widest input).
    pub fn with_act8(mut self, c: &ModelConfig) -> Self {
        let width = c
            .hidden_size
            .max(c.num_attention_heads * c.head_dim)
            .max(c.intermediate_size) as u64;
        let tokens = (self.batch * self.seq_len) as u64;
        let acts = 4 * self.micro_batches.max(1) as u64 * tokens * width;
        self.activations += acts;
        self.total += acts;
        self
    }

    /// The plan of a run that distills from the base model: the frozen teacher's weights and the
    /// buffers of its batches (as many as the student's, without SubLN).
    pub fn with_teacher(mut self, c: &ModelConfig) -> Self {
        let plain = MemoryPlan::new(c, self.batch, self.seq_len, self.micro_batches);
        self.teacher = plain.weights + plain.activations;
        self.total += self.teacher;
        self
    }

    /// Weights, gradients and AdamW moments together.
    pub fn state(&self) -> u64 {
        self.weights + self.gradients + self.optimizer
    }

    /// The largest buffer when it exceeds one storage binding of `max_binding` bytes (the GPU model
    /// binds every tensor whole, so such a run cannot start).
    pub fn too_large(&self, max_binding: u64) -> Option<(&str, u64)> {
        (self.largest_buffer > max_binding)
            .then_some((self.largest_buffer_name.as_str(), self.largest_buffer))
    }

    /// What the plan means against an adapter's limits (`maxBufferSize`,
    /// `maxStorageBufferBindingSize`), one sentence per finding.
    pub fn limit_notes(&self, max_buffer_size: u64, max_binding: u64) -> Vec<String> {
        let limit = max_binding.min(max_buffer_size);
        let name = if limit == max_binding {
            "maxStorageBufferBindingSize"
        } else {
            "maxBufferSize"
        };
        match self.too_large(limit) {
            Some((buffer, bytes)) => vec![format!(
                "`{buffer}` needs {}, over this adapter's {name} of {}: training cannot start; lower the batch or the sequence length{}",
                human_bytes(bytes),
                human_bytes(limit),
                if buffer == LOGITS_BUFFER {
                    ""
                } else {
                    ", or use a GPU with larger bindings"
                }
            )],
            None => vec![format!(
                "every buffer fits this adapter's limits (largest: `{}`, {})",
                self.largest_buffer_name,
                human_bytes(self.largest_buffer)
            )],
        }
    }
}

/// 1536 → "1.5 KiB".
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_units() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
