//! `tokenizer.json` through the `tokenizers` crate (pure Rust, also on wasm32).

use crate::error::{CoreError, Result};

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

/// serde's text for a JSON that fits none of an untagged enum's shapes says nothing to a user.
fn readable(serde: &str) -> String {
    if serde.contains("untagged enum") {
        "its structure matches no tokenizer model that library knows".into()
    } else {
        serde.to_string()
    }
}

impl Tokenizer {
    /// Parses `tokenizer.json` bytes; `file` names the file in errors.
    pub fn from_bytes(file: &str, bytes: &[u8]) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| CoreError::Tokenizer {
            file: file.to_string(),
            message: format!(
                "not a tokenizer the Hugging Face tokenizers library can read ({}); use the tokenizer.json saved with the model",
                readable(&e.to_string())
            ),
        })?;
        Ok(Tokenizer { inner })
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.inner
            .encode(text, add_special_tokens)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| CoreError::Tokenizer {
                file: "tokenizer.json".into(),
                message: format!("cannot encode text: {e}"),
            })
    }

    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| CoreError::Tokenizer {
                file: "tokenizer.json".into(),
                message: format!("cannot decode ids: {e}"),
            })
    }
}
