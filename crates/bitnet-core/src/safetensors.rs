//! A safetensors reader and writer over bytes (no filesystem, so the browser and the CLI share it).
//!
//! Layout: 8-byte little-endian header length N, N bytes of JSON header
//! `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}`, then the data
//! section; offsets are relative to the data section. Every way a file can lie about itself is
//! checked and reported with the file name.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{CoreError, Result};

/// Largest header we accept (the reference implementation's limit).
pub const MAX_HEADER_BYTES: usize = 100 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Dtype {
    F32,
    F16,
    BF16,
    U8,
    I8,
    I32,
    I64,
}

impl Dtype {
    pub fn parse(s: &str) -> Option<Dtype> {
        Some(match s {
            "F32" => Dtype::F32,
            "F16" => Dtype::F16,
            "BF16" => Dtype::BF16,
            "U8" => Dtype::U8,
            "I8" => Dtype::I8,
            "I32" => Dtype::I32,
            "I64" => Dtype::I64,
            _ => return None,
        })
    }
    /// A floating-point dtype by its command-line name: f32, f16 or bf16.
    pub fn float_named(s: &str) -> std::result::Result<Dtype, String> {
        match s {
            "f32" => Ok(Dtype::F32),
            "f16" => Ok(Dtype::F16),
            "bf16" => Ok(Dtype::BF16),
            _ => Err(format!("unknown dtype `{s}`; expected f32, f16 or bf16")),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::U8 => "U8",
            Dtype::I8 => "I8",
            Dtype::I32 => "I32",
            Dtype::I64 => "I64",
        }
    }
    pub fn size(self) -> usize {
        match self {
            Dtype::U8 | Dtype::I8 => 1,
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::I64 => 8,
        }
    }
}

/// One tensor's entry in the header.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    /// Byte range in the data section (u64: shards can pass 4 GiB, and wasm32's usize cannot).
    pub begin: u64,
    pub end: u64,
}

impl TensorInfo {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A validated safetensors header: tensor entries, metadata, and where the data section lies.
#[derive(Debug, Clone)]
pub struct Header {
    pub tensors: Vec<TensorInfo>,
    pub metadata: BTreeMap<String, String>,
    /// Byte offset of the data section in the file (8 + header length).
    pub data_start: u64,
    /// Length of the data section in bytes.
    pub data_len: u64,
}

impl Header {
    /// Reads the header length from the first 8 bytes and checks it against the file size.
    pub fn header_len(file: &str, first8: &[u8], file_len: u64) -> Result<usize> {
        let err = |m: String| CoreError::safetensors(file, m);
        if first8.len() < 8 || file_len < 8 {
            return Err(err(format!(
                "file is {file_len} bytes, too short for the 8-byte header length (truncated?)"
            )));
        }
        let mut len8 = [0u8; 8];
        len8.copy_from_slice(&first8[..8]);
        let header_len = u64::from_le_bytes(len8);
        if header_len > file_len - 8 {
            return Err(err(format!(
                "header length {header_len} is beyond the end of the file ({} bytes after the length field; truncated?)",
                file_len - 8
            )));
        }
        if header_len > MAX_HEADER_BYTES as u64 {
            return Err(err(format!(
                "header length {header_len} exceeds the limit of {MAX_HEADER_BYTES} bytes"
            )));
        }
        Ok(header_len as usize)
    }

    /// Parses the header from `bytes` (the file's first 8 + header-length bytes, or more) of a file
    /// that is `file_len` bytes long.
    pub fn parse(file: &str, bytes: &[u8], file_len: u64) -> Result<Self> {
        let err = |m: String| CoreError::safetensors(file, m);
        let header_len = Self::header_len(file, bytes, file_len)?;
        let json = bytes
            .get(8..8 + header_len)
            .ok_or_else(|| err("header is cut short (truncated?)".into()))?;
        let UniqueKeys(obj) = serde_json::from_slice(json)
            .map_err(|e| err(format!("header is not valid JSON: {e}")))?;
        let data_start = 8 + header_len as u64;
        let data_len = file_len - data_start;

        let mut metadata = BTreeMap::new();
        let mut tensors = Vec::new();
        for (name, entry) in &obj {
            if name == "__metadata__" {
                let m = entry
                    .as_object()
                    .ok_or_else(|| err("`__metadata__` is not an object".into()))?;
                for (k, v) in m {
                    let s = v
                        .as_str()
                        .ok_or_else(|| err(format!("`__metadata__.{k}` is not a string")))?;
                    metadata.insert(k.clone(), s.to_string());
                }
                continue;
            }
            tensors.push(parse_entry(file, name, entry, data_len)?);
        }
        // Offsets must not overlap: sort by begin and compare neighbours.
        let mut order: Vec<&TensorInfo> = tensors.iter().collect();
        order.sort_by_key(|t| (t.begin, t.end));
        for pair in order.windows(2) {
            if pair[1].begin < pair[0].end {
                return Err(CoreError::tensor(
                    file,
                    &pair[1].name,
                    format!(
                        "data_offsets [{}, {}] overlap tensor `{}` at [{}, {}]",
                        pair[1].begin, pair[1].end, pair[0].name, pair[0].begin, pair[0].end
                    ),
                ));
            }
        }
        Ok(Header {
            tensors,
            metadata,
            data_start,
            data_len,
        })
    }

    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// The header's top-level object with its keys in order, refusing a key given twice (a JSON map
/// would keep the last silently, so one tensor name could stand for two sets of bytes).
struct UniqueKeys(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Keys;
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = UniqueKeys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object of tensors")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<UniqueKeys, A::Error> {
                let mut seen = std::collections::HashSet::new();
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    if !seen.insert(k.clone()) {
                        return Err(serde::de::Error::custom(format!("`{k}` is listed twice")));
                    }
                    out.push((k, v));
                }
                Ok(UniqueKeys(out))
            }
        }
        d.deserialize_map(Keys)
    }
}

/// A parsed safetensors file borrowing its bytes.
#[derive(Debug)]
pub struct SafeTensors<'a> {
    pub file: String,
    pub header: Header,
    /// The data section (everything after the header).
    pub data: &'a [u8],
}

impl<'a> SafeTensors<'a> {
    /// Parses and validates a whole file held in memory; `file` names it in errors.
    pub fn parse(file: &str, bytes: &'a [u8]) -> Result<Self> {
        let header = Header::parse(file, bytes, bytes.len() as u64)?;
        let data = &bytes[header.data_start as usize..];
        Ok(SafeTensors {
            file: file.to_string(),
            header,
            data,
        })
    }

    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.header.get(name)
    }

    /// The raw bytes of a tensor.
    pub fn bytes(&self, t: &TensorInfo) -> &'a [u8] {
        // In range: Header::parse checked end <= data_len == data.len().
        &self.data[t.begin as usize..t.end as usize]
    }

    /// A tensor converted to f32 (F32, F16 and BF16 only).
    pub fn to_f32(&self, t: &TensorInfo) -> Result<Vec<f32>> {
        decode_f32(&self.file, t, self.bytes(t))
    }
}

fn parse_entry(file: &str, name: &str, entry: &Value, data_len: u64) -> Result<TensorInfo> {
    let terr = |m: String| CoreError::tensor(file, name, m);
    let o = entry
        .as_object()
        .ok_or_else(|| terr("header entry is not an object".into()))?;
    let dtype_s = o
        .get("dtype")
        .and_then(|v| v.as_str())
        .ok_or_else(|| terr("header entry has no string `dtype`".into()))?;
    let dtype = Dtype::parse(dtype_s).ok_or_else(|| {
        terr(format!(
            "unknown dtype `{dtype_s}` (supported: F32, F16, BF16, U8, I8, I32, I64)"
        ))
    })?;
    let shape = o
        .get("shape")
        .and_then(|v| v.as_array())
        .ok_or_else(|| terr("header entry has no `shape` list".into()))?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<Vec<usize>>>()
        .ok_or_else(|| terr("`shape` must be a list of non-negative integers".into()))?;
    let offs = o
        .get("data_offsets")
        .and_then(|v| v.as_array())
        .filter(|a| a.len() == 2)
        .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
        .ok_or_else(|| terr("`data_offsets` must be two non-negative integers".into()))?;
    if offs.0 > offs.1 {
        return Err(terr(format!(
            "data_offsets [{}, {}] end before they begin (the header is corrupt)",
            offs.0, offs.1
        )));
    }
    if offs.1 > data_len {
        let (begin, end) = offs;
        return Err(terr(format!(
            "data_offsets [{begin}, {end}] out of range: the data section has {data_len} bytes (truncated?)"
        )));
    }
    let (begin, end) = offs;
    let numel = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_mul(dtype.size()))
        .ok_or_else(|| terr(format!("shape {shape:?} is too large")))?;
    if end - begin != numel as u64 {
        return Err(terr(format!(
            "data_offsets [{begin}, {end}] hold {} bytes but shape {shape:?} of {} needs {numel}",
            end - begin,
            dtype.name()
        )));
    }
    Ok(TensorInfo {
        name: name.to_string(),
        dtype,
        shape,
        begin,
        end,
    })
}

/// A floating-point tensor (F32/F16/BF16, little-endian) as f32; a NaN or infinite value is refused, naming the tensor and the
/// element (weights, scales and checkpoints never hold one: such a file is corrupt, or was written
/// from a diverged run).
pub fn decode_f32(file: &str, t: &TensorInfo, b: &[u8]) -> Result<Vec<f32>> {
    let values = decode_any_f32(file, t, b)?;
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(CoreError::tensor(
            file,
            &t.name,
            format!(
                "element {i} is {} (not a finite number): the file is corrupt or was written from a diverged run",
                values[i]
            ),
        ));
    }
    Ok(values)
}

fn decode_any_f32(file: &str, t: &TensorInfo, b: &[u8]) -> Result<Vec<f32>> {
    Ok(match t.dtype {
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        Dtype::BF16 => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(CoreError::tensor(
                file,
                &t.name,
                format!(
                    "dtype {} cannot be read as floating point (expected F32, F16 or BF16)",
                    other.name()
                ),
            ));
        }
    })
}

/// A tensor to write: name, dtype, shape and little-endian bytes.
#[derive(Debug, Clone)]
pub struct OwnedTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl OwnedTensor {
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, values: &[f32]) -> Self {
        OwnedTensor {
            name: name.into(),
            dtype: Dtype::F32,
            shape,
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

impl OwnedTensor {
    /// `values` stored as the floating-point `dtype` (F32, F16 or BF16; 16-bit values rounded to
    /// nearest even). A finite value that the dtype cannot hold (above F16's 65504) is refused,
    /// naming the tensor and the element.
    pub fn float(
        name: impl Into<String>,
        shape: Vec<usize>,
        values: &[f32],
        dtype: Dtype,
    ) -> Result<Self> {
        let name = name.into();
        if dtype == Dtype::F16
            && let Some(i) = values
                .iter()
                .position(|&v| v.is_finite() && !half::f16::from_f32(v).is_finite())
        {
            return Err(CoreError::Invalid(format!(
                "tensor `{name}`: element {i} is {}, outside F16's range (±65504); store it as bf16 or f32",
                values[i]
            )));
        }
        let bytes = float_bytes(values, dtype).ok_or_else(|| {
            CoreError::Invalid(format!(
                "tensor `{name}`: {} is not a floating-point dtype",
                dtype.name()
            ))
        })?;
        Ok(OwnedTensor {
            name,
            dtype,
            shape,
            bytes,
        })
    }
}

/// `values` as little-endian F32, F16 or BF16 bytes (16-bit values rounded to nearest even); None
/// for a dtype that is not floating-point.
pub fn float_bytes(values: &[f32], dtype: Dtype) -> Option<Vec<u8>> {
    Some(match dtype {
        Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect(),
        _ => return None,
    })
}

/// `values` rounded to `dtype` and back (F16, BF16; other dtypes leave them as they are): what a
/// 16-bit copy of them holds.
pub fn rounded_to(values: &[f32], dtype: Dtype) -> Vec<f32> {
    match dtype {
        Dtype::F16 => values
            .iter()
            .map(|&v| half::f16::from_f32(v).to_f32())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .map(|&v| half::bf16::from_f32(v).to_f32())
            .collect(),
        _ => values.to_vec(),
    }
}

/// Orders tensors as the data section will hold them: widest dtype first (so every multi-byte tensor
/// stays aligned to its element size), then by name.
pub fn data_order(tensors: &mut [OwnedTensor]) {
    tensors.sort_by(|a, b| {
        b.dtype
            .size()
            .cmp(&a.dtype.size())
            .then_with(|| a.name.cmp(&b.name))
    });
}

/// The data section of `tensors` in the given order, and their header entries.
pub fn data_section(tensors: &[OwnedTensor]) -> (Vec<u8>, Map<String, Value>) {
    let mut data = Vec::with_capacity(tensors.iter().map(|t| t.bytes.len()).sum());
    let mut header = Map::new();
    for t in tensors {
        let begin = data.len();
        data.extend_from_slice(&t.bytes);
        header.insert(
            t.name.clone(),
            serde_json::json!({"dtype": t.dtype.name(), "shape": t.shape, "data_offsets": [begin, data.len()]}),
        );
    }
    (data, header)
}

/// Serializes a safetensors file: header (padded with spaces to a multiple of 8) and `data`.
pub fn serialize_with_data(
    mut header: Map<String, Value>,
    metadata: &BTreeMap<String, String>,
    data: &[u8],
) -> Vec<u8> {
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::json!(metadata));
    }
    let mut json = Value::Object(header).to_string().into_bytes();
    while !(8 + json.len()).is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + data.len());
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(data);
    out
}

/// Serializes tensors (in data order) with optional metadata.
pub fn serialize(mut tensors: Vec<OwnedTensor>, metadata: &BTreeMap<String, String>) -> Vec<u8> {
    data_order(&mut tensors);
    let (data, header) = data_section(&tensors);
    serialize_with_data(header, metadata, &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_tensors_round_to_their_dtype_and_refuse_f16_overflow() {
        let v = [1.0f32, -0.1, 3.0e4, 1.0e-3];
        for d in [Dtype::F32, Dtype::F16, Dtype::BF16] {
            let t = OwnedTensor::float("t", vec![4], &v, d).unwrap();
            assert_eq!(t.bytes.len(), 4 * d.size());
            let info = TensorInfo {
                name: "t".into(),
                dtype: d,
                shape: vec![4],
                begin: 0,
                end: t.bytes.len() as u64,
            };
            let back = decode_f32("f", &info, &t.bytes).unwrap();
            for (a, b) in back.iter().zip(&v) {
                let tol = if d == Dtype::F32 { 0.0 } else { 4e-3 * b.abs() };
                assert!((a - b).abs() <= tol, "{d:?}: {a} vs {b}");
            }
        }
        let e = OwnedTensor::float("emb", vec![1], &[7.0e4], Dtype::F16).unwrap_err();
        assert!(
            e.to_string().contains("emb") && e.to_string().contains("65504"),
            "{e}"
        );
        assert!(OwnedTensor::float("x", vec![1], &[1.0], Dtype::U8).is_err());
    }

    fn sample() -> Vec<u8> {
        serialize(
            vec![
                OwnedTensor::f32("a", vec![2, 2], &[1.0, 2.0, 3.0, 4.0]),
                OwnedTensor {
                    name: "b".into(),
                    dtype: Dtype::BF16,
                    shape: vec![1],
                    bytes: half::bf16::from_f32(0.5).to_le_bytes().to_vec(),
                },
            ],
            &BTreeMap::from([("k".to_string(), "v".to_string())]),
        )
    }

    #[test]
    fn roundtrip() {
        let bytes = sample();
        let st = SafeTensors::parse("x.safetensors", &bytes).unwrap();
        assert_eq!(st.header.metadata["k"], "v");
        let a = st.get("a").unwrap();
        assert_eq!(st.to_f32(a).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(st.to_f32(st.get("b").unwrap()).unwrap(), vec![0.5]);
    }

    fn expect_err(bytes: &[u8], needle: &str) {
        let e = SafeTensors::parse("m/model.safetensors", bytes)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("m/model.safetensors") && e.contains(needle),
            "`{e}` lacks `{needle}`"
        );
    }

    fn with_header(h: &str, data: usize) -> Vec<u8> {
        let mut b = (h.len() as u64).to_le_bytes().to_vec();
        b.extend_from_slice(h.as_bytes());
        b.extend(std::iter::repeat_n(0u8, data));
        b
    }

    #[test]
    fn a_non_finite_value_is_refused_by_tensor_and_element() {
        for (dtype, bytes) in [
            (
                Dtype::F32,
                [1f32, f32::NAN]
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<u8>>(),
            ),
            (
                Dtype::BF16,
                [0.5f32, f32::INFINITY]
                    .iter()
                    .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                    .collect(),
            ),
        ] {
            let file = serialize(
                vec![OwnedTensor {
                    name: "model.norm.weight".into(),
                    dtype,
                    shape: vec![2],
                    bytes,
                }],
                &BTreeMap::new(),
            );
            let st = SafeTensors::parse("w.safetensors", &file).unwrap();
            let e = st
                .to_f32(st.get("model.norm.weight").unwrap())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("w.safetensors")
                    && e.contains("model.norm.weight")
                    && e.contains("element 1"),
                "{e}"
            );
        }
    }

    #[test]
    fn truncated_file() {
        let b = sample();
        expect_err(&b[..5], "too short");
        expect_err(&b[..b.len() - 3], "out of range");
    }

    #[test]
    fn header_length_beyond_file() {
        let mut b = sample();
        b[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        expect_err(&b, "beyond the end of the file");
    }

    #[test]
    fn overlapping_offsets() {
        let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#;
        expect_err(&with_header(h, 12), "overlap");
    }

    #[test]
    fn out_of_range_offsets() {
        let h = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
        expect_err(&with_header(h, 8), "out of range");
    }

    #[test]
    fn unknown_dtype() {
        let h = r#"{"a":{"dtype":"F8_E9","shape":[4],"data_offsets":[0,4]}}"#;
        expect_err(&with_header(h, 4), "unknown dtype `F8_E9`");
    }

    #[test]
    fn size_mismatch() {
        let h = r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
        expect_err(&with_header(h, 8), "needs 12");
    }

    #[test]
    fn invalid_header_json() {
        expect_err(&with_header("{\"a\":", 0), "not valid JSON");
        expect_err(&with_header("[1, 2]", 0), "a JSON object of tensors");
    }

    #[test]
    fn a_tensor_listed_twice_is_refused() {
        let h = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#;
        expect_err(&with_header(h, 8), "`a` is listed twice");
    }
}
