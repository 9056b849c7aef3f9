//! The packed ternary model file (DESIGN.md §3; the full spec is docs/FORMAT.md).
//!
//! A safetensors file: every ternary tensor `NAME` is stored as a U8 tensor `NAME` of packed codes
//! (1-D) plus an F32 tensor `NAME.scale` of shape [1]; every other tensor is stored as it was.
//! `__metadata__` carries the format name and version, packing, quantizer, the original shapes of
//! the ternary tensors, `config.json`, `tokenizer.json` and a SHA-256 of the data section.

use std::collections::BTreeMap;

use crate::cpu::model::{is_extra_norm, post_attn_norm_name};
use crate::error::{CoreError, Result};
use crate::pack::{Packing, pack, unpack};
use crate::quant::{Quantizer, ScaleMode, Ternary};
use crate::safetensors::{
    Dtype, OwnedTensor, SafeTensors, data_order, data_section, serialize, serialize_with_data,
};

pub const FORMAT_NAME: &str = "bitnet-studio-ternary";
pub const FORMAT_VERSION: u32 = 1;
/// Suffix of the scale tensor of a ternary tensor.
pub const SCALE_SUFFIX: &str = ".scale";

/// Accumulates the tensors of a packed file.
pub struct PackedWriter {
    packing: Packing,
    quantizer: Quantizer,
    tensors: Vec<OwnedTensor>,
    shapes: BTreeMap<String, Vec<usize>>,
    act8: bool,
}

impl PackedWriter {
    pub fn new(packing: Packing, quantizer: Quantizer) -> Self {
        PackedWriter {
            packing,
            quantizer,
            tensors: Vec::new(),
            shapes: BTreeMap::new(),
            act8: false,
        }
    }

    /// Marks the model W1.58A8: trained with every projection's input rounded to 8 bits per token
    /// (metadata `activation_bits` = 8), which running it must do too.
    pub fn set_act8(&mut self, act8: bool) {
        self.act8 = act8;
    }

    /// Adds a ternary tensor from its codes.
    pub fn add_ternary(&mut self, name: &str, shape: Vec<usize>, t: &Ternary) {
        let bytes = pack(self.packing, &t.codes);
        self.add_packed(name, shape, bytes, t.scale);
    }

    /// Adds a ternary tensor already packed in this writer's packing.
    pub fn add_packed(&mut self, name: &str, shape: Vec<usize>, bytes: Vec<u8>, scale: f32) {
        self.tensors.push(OwnedTensor {
            name: name.to_string(),
            dtype: Dtype::U8,
            shape: vec![bytes.len()],
            bytes,
        });
        self.tensors.push(OwnedTensor::f32(
            format!("{name}{SCALE_SUFFIX}"),
            vec![1],
            &[scale],
        ));
        self.shapes.insert(name.to_string(), shape);
    }

    /// Adds a tensor kept as stored (embeddings, norms, biases, lm_head).
    pub fn add_plain(&mut self, t: OwnedTensor) {
        self.tensors.push(t);
    }

    /// The finished file.
    pub fn finish(mut self, config_json: &str, tokenizer_json: Option<&[u8]>) -> Result<Vec<u8>> {
        data_order(&mut self.tensors);
        let (data, header) = data_section(&self.tensors);
        let mut meta = BTreeMap::new();
        meta.insert("format".to_string(), FORMAT_NAME.to_string());
        meta.insert("format_version".to_string(), FORMAT_VERSION.to_string());
        meta.insert("packing".to_string(), self.packing.name().to_string());
        meta.insert("quantizer".to_string(), self.quantizer.name().to_string());
        if let Quantizer::Threshold { ratio, scale } = self.quantizer {
            meta.insert("threshold_ratio".to_string(), ratio.to_string());
            meta.insert("scale_mode".to_string(), scale.to_string());
        }
        meta.insert(
            "ternary_shapes".to_string(),
            serde_json::to_string(&self.shapes).map_err(|e| CoreError::Invalid(e.to_string()))?,
        );
        meta.insert("config".to_string(), config_json.to_string());
        if let Some(tok) = tokenizer_json {
            let text = std::str::from_utf8(tok).map_err(|_| CoreError::Tokenizer {
                file: "tokenizer.json".into(),
                message: "not UTF-8 text".into(),
            })?;
            meta.insert("tokenizer".to_string(), text.to_string());
        }
        if self.act8 {
            meta.insert("activation_bits".to_string(), "8".to_string());
        }
        meta.insert("checksum".to_string(), checksum(&data));
        Ok(serialize_with_data(header, &meta, &data))
    }
}

pub use crate::checksum::checksum;

/// A packed file, parsed and verified.
pub struct PackedModel<'a> {
    pub file: String,
    pub st: SafeTensors<'a>,
    pub packing: Packing,
    pub quantizer: Quantizer,
    /// Original shape of every ternary tensor.
    pub shapes: BTreeMap<String, Vec<usize>>,
    pub config_json: String,
    pub tokenizer_json: Option<String>,
    /// W1.58A8 (metadata `activation_bits` = 8): projection inputs rounded to 8 bits per token.
    pub act8: bool,
}

impl<'a> PackedModel<'a> {
    /// Parses a packed file and checks its format, version and checksum.
    pub fn parse(file: &str, bytes: &'a [u8]) -> Result<Self> {
        let st = SafeTensors::parse(file, bytes)?;
        let err = |m: String| CoreError::packed(file, m);
        let meta = &st.header.metadata;
        let get = |k: &str| {
            meta.get(k)
                .ok_or_else(|| err(format!("metadata has no `{k}` entry")))
        };
        if get("format")? != FORMAT_NAME {
            return Err(err(format!(
                "metadata `format` is `{}`, expected `{FORMAT_NAME}`",
                meta["format"]
            )));
        }
        let version = get("format_version")?;
        if version != &FORMAT_VERSION.to_string() {
            return Err(err(format!(
                "format_version `{version}` is not supported (this build reads version {FORMAT_VERSION})"
            )));
        }
        let want = get("checksum")?;
        let got = checksum(st.data);
        if &got != want {
            return Err(err(format!(
                "checksum mismatch: metadata says {want}, data hashes to {got} (file corrupted?)"
            )));
        }
        let packing: Packing = get("packing")?.parse().map_err(err)?;
        let quantizer = match get("quantizer")?.as_str() {
            "absmean" => Quantizer::Absmean,
            "threshold" => {
                let ratio = get("threshold_ratio")?
                    .parse::<f32>()
                    .map_err(|_| err("threshold_ratio is not a number".into()))?;
                let scale: ScaleMode = get("scale_mode")?.parse().map_err(err)?;
                Quantizer::Threshold { ratio, scale }
            }
            other => return Err(err(format!("unknown quantizer `{other}`"))),
        };
        let shapes: BTreeMap<String, Vec<usize>> = serde_json::from_str(get("ternary_shapes")?)
            .map_err(|e| {
                err(format!(
                    "ternary_shapes is not a JSON object of shapes: {e}"
                ))
            })?;
        for name in shapes.keys() {
            for n in [name.clone(), format!("{name}{SCALE_SUFFIX}")] {
                if st.get(&n).is_none() {
                    return Err(err(format!(
                        "ternary tensor `{n}` is listed in ternary_shapes but not stored"
                    )));
                }
            }
        }
        let act8 = match meta.get("activation_bits").map(String::as_str) {
            None | Some("16") => false,
            Some("8") => true,
            Some(other) => {
                return Err(err(format!(
                    "activation_bits `{other}` is not supported (8, or none for full-precision activations)"
                )));
            }
        };
        Ok(PackedModel {
            act8,
            file: file.to_string(),
            config_json: get("config")?.clone(),
            tokenizer_json: meta.get("tokenizer").cloned(),
            st,
            packing,
            quantizer,
            shapes,
        })
    }

    /// Codes and scale of a ternary tensor.
    pub fn ternary(&self, name: &str) -> Result<Ternary> {
        let shape = self.shapes.get(name).ok_or_else(|| {
            CoreError::tensor(&self.file, name, "not a ternary tensor of this file")
        })?;
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| {
                CoreError::tensor(&self.file, name, format!("shape {shape:?} is too large"))
            })?;
        let info = self
            .st
            .get(name)
            .ok_or_else(|| CoreError::tensor(&self.file, name, "not stored"))?;
        let codes = unpack(self.packing, self.st.bytes(info), n)
            .map_err(|m| CoreError::tensor(&self.file, name, m))?;
        let sname = format!("{name}{SCALE_SUFFIX}");
        let sinfo = self
            .st
            .get(&sname)
            .ok_or_else(|| CoreError::tensor(&self.file, &sname, "not stored"))?;
        let scale = self.st.to_f32(sinfo)?;
        if scale.len() != 1 {
            return Err(CoreError::tensor(
                &self.file,
                &sname,
                format!("expected one scale, found {}", scale.len()),
            ));
        }
        Ok(Ternary {
            codes,
            scale: scale[0],
        })
    }

    /// Whether a stored tensor is part of a ternary tensor (its codes or its scale).
    pub fn is_ternary_part(&self, name: &str) -> bool {
        self.shapes.contains_key(name)
            || name
                .strip_suffix(SCALE_SUFFIX)
                .is_some_and(|n| self.shapes.contains_key(n))
    }

    /// The same model in another packing: the same codes, scales and other tensors.
    pub fn repack(&self, packing: Packing) -> Result<Vec<u8>> {
        let mut w = PackedWriter::new(packing, self.quantizer);
        w.set_act8(self.act8);
        for info in &self.st.header.tensors {
            if let Some(shape) = self.shapes.get(&info.name) {
                w.add_ternary(&info.name, shape.clone(), &self.ternary(&info.name)?);
            } else if !self.is_ternary_part(&info.name) {
                w.add_plain(OwnedTensor {
                    name: info.name.clone(),
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    bytes: self.st.bytes(info).to_vec(),
                });
            }
        }
        w.finish(
            &self.config_json,
            self.tokenizer_json.as_deref().map(str::as_bytes),
        )
    }

    /// The trained gains of the norms a base model does not have (the post-attention norm's and
    /// SubLN's), stored as plain F32 tensors beside the ternary weights; empty when there are none.
    pub fn extra_norms(&self) -> Result<BTreeMap<String, Vec<f32>>> {
        let mut out = BTreeMap::new();
        for info in &self.st.header.tensors {
            if is_extra_norm(&info.name) {
                out.insert(info.name.clone(), self.st.to_f32(info)?);
            }
        }
        Ok(out)
    }

    /// A Hugging Face folder with every weight as F32 (ternary ones dequantized to γ·q), `config.json`
    /// (dtype set to float32) and `tokenizer.json`: file name → bytes. A model with extra norms
    /// carries their gains and the modeling file that applies them ([`crate::hf_extra`]).
    pub fn unpack_to_hf(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut tensors = Vec::new();
        for (name, shape) in &self.shapes {
            tensors.push(OwnedTensor::f32(
                name.clone(),
                shape.clone(),
                &self.ternary(name)?.dequantize(),
            ));
        }
        for info in &self.st.header.tensors {
            if self.is_ternary_part(&info.name) {
                continue;
            }
            tensors.push(OwnedTensor::f32(
                info.name.clone(),
                info.shape.clone(),
                &self.st.to_f32(info)?,
            ));
        }
        let mut files = BTreeMap::new();
        let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
        files.insert("model.safetensors".to_string(), serialize(tensors, &meta));
        let mut config: serde_json::Value = serde_json::from_str(&self.config_json)
            .map_err(|e| CoreError::json(&format!("{} (config)", self.file), e))?;
        if let Some(obj) = config.as_object_mut() {
            let key = if obj.contains_key("dtype") {
                "dtype"
            } else {
                "torch_dtype"
            };
            obj.insert(key.to_string(), "float32".into());
            let norms = self.extra_norms()?;
            if !norms.is_empty() {
                let post = norms.contains_key(&post_attn_norm_name(0));
                let subln = norms.keys().any(|n| n.ends_with("_sub_norm.weight"));
                crate::hf_extra::annotate(obj, post, subln);
                files.insert(
                    crate::hf_extra::MODELING_FILE.to_string(),
                    crate::hf_extra::MODELING_SOURCE.as_bytes().to_vec(),
                );
            }
        }
        let text =
            serde_json::to_string_pretty(&config).map_err(|e| CoreError::Invalid(e.to_string()))?;
        files.insert("config.json".to_string(), text.into_bytes());
        if let Some(tok) = &self.tokenizer_json {
            files.insert("tokenizer.json".to_string(), tok.clone().into_bytes());
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(packing: Packing) -> Vec<u8> {
        let q = Quantizer::Threshold {
            ratio: 0.7,
            scale: ScaleMode::Absmean,
        };
        let mut w = PackedWriter::new(packing, q);
        w.add_ternary(
            "l.weight",
            vec![1, 5],
            &q.quantize(&[1.0, -1.0, 0.0, 0.5, 2.0]),
        );
        w.add_plain(OwnedTensor::f32("n.weight", vec![2], &[1.0, 2.0]));
        w.finish(r#"{"model_type":"llama"}"#, Some(b"{}")).unwrap()
    }

    #[test]
    fn roundtrip_and_check_vector_bytes() {
        let bytes = sample(Packing::TwoBit);
        let p = PackedModel::parse("m.bitnet.safetensors", &bytes).unwrap();
        let info = p.st.get("l.weight").unwrap();
        assert_eq!(p.st.bytes(info), &[0x85, 0x95]);
        let t = p.ternary("l.weight").unwrap();
        assert_eq!(t.codes, vec![1, -1, 0, 0, 1]);
        assert!((t.scale - 0.9).abs() < 1e-7);
        let hf = p.unpack_to_hf().unwrap();
        let st = SafeTensors::parse("model.safetensors", &hf["model.safetensors"]).unwrap();
        let w = st.to_f32(st.get("l.weight").unwrap()).unwrap();
        assert_eq!(w, vec![0.9, -0.9, 0.0, 0.0, 0.9]);
        assert!(String::from_utf8_lossy(&hf["config.json"]).contains("float32"));
    }

    #[test]
    fn repacking_keeps_codes_scales_and_plain_tensors() {
        let two = sample(Packing::TwoBit);
        let p = PackedModel::parse("m.bitnet.safetensors", &two).unwrap();
        let five = p.repack(Packing::Trit5).unwrap();
        let q = PackedModel::parse("m.trit5.safetensors", &five).unwrap();
        assert_eq!(q.packing, Packing::Trit5);
        assert_eq!(q.quantizer, p.quantizer);
        assert_eq!(q.shapes, p.shapes);
        assert_eq!(q.config_json, p.config_json);
        let (a, b) = (
            p.ternary("l.weight").unwrap(),
            q.ternary("l.weight").unwrap(),
        );
        assert_eq!((a.codes, a.scale), (b.codes, b.scale));
        let n = |m: &PackedModel| m.st.to_f32(m.st.get("n.weight").unwrap()).unwrap();
        assert_eq!(n(&p), n(&q));
        assert_eq!(q.repack(Packing::TwoBit).unwrap(), two);
    }

    #[test]
    fn wrong_checksum_is_refused() {
        let mut bytes = sample(Packing::Trit5);
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        let e = PackedModel::parse("m.bitnet.safetensors", &bytes)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("m.bitnet.safetensors") && e.contains("checksum mismatch"),
            "{e}"
        );
    }

    #[test]
    fn wrong_version_is_refused() {
        let mut bytes = sample(Packing::TwoBit);
        let key = b"\"format_version\":\"1\"";
        let at = bytes.windows(key.len()).position(|w| w == key).unwrap();
        bytes[at + key.len() - 2] = b'9';
        let e = PackedModel::parse("m.bitnet.safetensors", &bytes)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("format_version `9` is not supported"), "{e}");
    }
}
