//! GGUF (llama.cpp's model file, version 3) over bytes: a reader that checks every count, length and
//! offset against the file and names what is wrong, a writer, the block codecs of the tensor types we
//! read and write ([`blocks`]), the import of a GGUF model as a Hugging Face folder ([`import`]) and
//! the export of a packed ternary model ([`export`]).
//!
//! Layout: magic `GGUF`, version u32, tensor count u64, metadata count u64; metadata entries (key
//! string, value type u32, value); tensor infos (name, n_dims u32, dims u64 × n_dims with the
//! innermost — a row's length — first, type u32, offset u64 relative to the data section); the data
//! section starts at the next multiple of `general.alignment` (default 32). Strings are a u64 length
//! and UTF-8 bytes; everything is little-endian.

use crate::error::{CoreError, Result};

mod bitnet_arch;
pub mod blocks;
pub mod export;
pub mod import;

pub use blocks::GgmlType;

pub const MAGIC: &[u8; 4] = b"GGUF";
pub const VERSION: u32 = 3;
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// More dimensions than ggml has.
const MAX_DIMS: u32 = 4;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    /// Element type id and the elements.
    Array(u32, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STR: u32 = 8;
const T_ARRAY: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

impl Value {
    fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => T_U8,
            Value::I8(_) => T_I8,
            Value::U16(_) => T_U16,
            Value::I16(_) => T_I16,
            Value::U32(_) => T_U32,
            Value::I32(_) => T_I32,
            Value::F32(_) => T_F32,
            Value::Bool(_) => T_BOOL,
            Value::Str(_) => T_STR,
            Value::Array(..) => T_ARRAY,
            Value::U64(_) => T_U64,
            Value::I64(_) => T_I64,
            Value::F64(_) => T_F64,
        }
    }

    /// An integer value of any width (negative ones are None).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(_, v) => Some(v),
            _ => None,
        }
    }

    /// An array of strings.
    pub fn strings(items: impl IntoIterator<Item = String>) -> Value {
        Value::Array(T_STR, items.into_iter().map(Value::Str).collect())
    }

    /// An array of i32.
    pub fn i32s(items: impl IntoIterator<Item = i32>) -> Value {
        Value::Array(T_I32, items.into_iter().map(Value::I32).collect())
    }
}

/// One tensor's entry in the header.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the length of a row.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Start in the data section.
    pub offset: u64,
    /// Bytes the tensor's blocks take.
    pub size: u64,
}

impl TensorInfo {
    /// The shape in PyTorch's row-major order (the dims reversed).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
    pub fn numel(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A parsed GGUF file.
pub struct Gguf<'a> {
    pub file: String,
    pub version: u32,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    pub tensors: Vec<TensorInfo>,
    data: &'a [u8],
}

/// A bounds-checked cursor that names the file and what it was reading when the bytes ran out.
struct Cursor<'a> {
    file: &'a str,
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, what: &str, m: impl std::fmt::Display) -> CoreError {
        CoreError::Invalid(format!(
            "{}: not a valid GGUF file: {what} at byte {}: {m}",
            self.file, self.at
        ))
    }
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        let left = (self.b.len() - self.at) as u64;
        if n > left {
            return Err(self.err(
                what,
                format!("needs {n} bytes, the file has {left} left (truncated?)"),
            ));
        }
        let s = &self.b[self.at..self.at + n as usize];
        self.at += n as usize;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        Ok(s.try_into().expect("length checked"))
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec()).map_err(|_| self.err(what, "not UTF-8"))
    }
    fn value(&mut self, ty: u32, what: &str, depth: u32) -> Result<Value> {
        Ok(match ty {
            T_U8 => Value::U8(self.arr::<1>(what)?[0]),
            T_I8 => Value::I8(self.arr::<1>(what)?[0] as i8),
            T_U16 => Value::U16(u16::from_le_bytes(self.arr(what)?)),
            T_I16 => Value::I16(i16::from_le_bytes(self.arr(what)?)),
            T_U32 => Value::U32(self.u32(what)?),
            T_I32 => Value::I32(i32::from_le_bytes(self.arr(what)?)),
            T_F32 => Value::F32(f32::from_le_bytes(self.arr(what)?)),
            T_BOOL => Value::Bool(self.arr::<1>(what)?[0] != 0),
            T_STR => Value::Str(self.string(what)?),
            T_U64 => Value::U64(self.u64(what)?),
            T_I64 => Value::I64(i64::from_le_bytes(self.arr(what)?)),
            T_F64 => Value::F64(f64::from_le_bytes(self.arr(what)?)),
            T_ARRAY if depth == 0 => {
                let ety = self.u32(what)?;
                let n = self.u64(what)?;
                // Every element takes at least one byte: a count beyond the bytes left is a lie.
                if n > (self.b.len() - self.at) as u64 {
                    return Err(self.err(
                        what,
                        format!("an array of {n} elements is longer than the file"),
                    ));
                }
                // (Capacity bounded: a lying count must not allocate before the bytes run out.)
                let mut items = Vec::with_capacity(n.min(1 << 16) as usize);
                for _ in 0..n {
                    items.push(self.value(ety, what, depth + 1)?);
                }
                Value::Array(ety, items)
            }
            T_ARRAY => return Err(self.err(what, "arrays of arrays are not supported")),
            other => return Err(self.err(what, format!("unknown value type {other}"))),
        })
    }
}

impl<'a> Gguf<'a> {
    /// Parses the header of `bytes` (named `file` in errors) and checks every tensor's type, size and
    /// place in the data section.
    pub fn parse(file: &str, bytes: &'a [u8]) -> Result<Self> {
        let mut c = Cursor {
            file,
            b: bytes,
            at: 0,
        };
        if c.take(4, "magic")? != MAGIC {
            return Err(c.err("magic", "the file does not start with `GGUF`"));
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(c.err(
                "version",
                format!("version {version} is not supported (this build reads versions 2 and 3)"),
            ));
        }
        let n_tensors = c.u64("tensor count")?;
        let n_meta = c.u64("metadata count")?;
        let mut metadata = Vec::new();
        for i in 0..n_meta {
            let what = format!("metadata entry {i}");
            let key = c.string(&what)?;
            let what = format!("metadata `{key}`");
            let ty = c.u32(&what)?;
            let v = c.value(ty, &what, 0)?;
            metadata.push((key, v));
        }
        let mut tensors = Vec::new();
        for i in 0..n_tensors {
            let what = format!("tensor info {i}");
            let name = c.string(&what)?;
            let what = format!("tensor `{name}`");
            let nd = c.u32(&what)?;
            if nd == 0 || nd > MAX_DIMS {
                return Err(c.err(&what, format!("{nd} dimensions (ggml has 1 to {MAX_DIMS})")));
            }
            let mut dims = Vec::new();
            for _ in 0..nd {
                dims.push(c.u64(&what)?);
            }
            let id = c.u32(&what)?;
            let offset = c.u64(&what)?;
            let ty = GgmlType::from_id(id).ok_or_else(|| {
                CoreError::tensor(
                    file,
                    &name,
                    format!(
                        "tensor type {} is not supported; supported: {}",
                        blocks::type_name(id),
                        GgmlType::ALL.map(|t| t.name()).join(", ")
                    ),
                )
            })?;
            let size = ty
                .bytes_for(&dims)
                .map_err(|m| CoreError::tensor(file, &name, m))?;
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
                size,
            });
        }
        let mut g = Gguf {
            file: file.to_string(),
            version,
            metadata,
            tensors,
            data: &[],
        };
        let align = match g.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => return Err(c.err("general.alignment", format!("{v:?} is not a power of two"))),
            },
        };
        let start = (c.at as u64).div_ceil(align) * align;
        if start > bytes.len() as u64 {
            return Err(c.err("data section", "the file ends before its data section"));
        }
        g.data = &bytes[start as usize..];
        for t in &g.tensors {
            let end = t.offset.checked_add(t.size);
            if end.is_none_or(|e| e > g.data.len() as u64) {
                return Err(CoreError::tensor(
                    file,
                    &t.name,
                    format!(
                        "its {} bytes at offset {} run past the data section's {} bytes (truncated?)",
                        t.size,
                        t.offset,
                        g.data.len()
                    ),
                ));
            }
        }
        Ok(g)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The stored blocks of `t`.
    pub fn bytes(&self, t: &TensorInfo) -> &'a [u8] {
        &self.data[t.offset as usize..(t.offset + t.size) as usize]
    }

    /// `t`'s values, dequantized.
    pub fn to_f32(&self, t: &TensorInfo) -> Result<Vec<f32>> {
        Ok(blocks::dequantize(t.ty, self.bytes(t)))
    }
}

/// Builds a GGUF file: metadata in insertion order, tensors in insertion order, each aligned.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend(x.to_le_bytes()),
        Value::I16(x) => out.extend(x.to_le_bytes()),
        Value::U32(x) => out.extend(x.to_le_bytes()),
        Value::I32(x) => out.extend(x.to_le_bytes()),
        Value::F32(x) => out.extend(x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::Str(s) => put_str(out, s),
        Value::Array(ty, items) => {
            out.extend(ty.to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for i in items {
                put_value(out, i);
            }
        }
        Value::U64(x) => out.extend(x.to_le_bytes()),
        Value::I64(x) => out.extend(x.to_le_bytes()),
        Value::F64(x) => out.extend(x.to_le_bytes()),
    }
}

impl GgufWriter {
    pub fn set(&mut self, key: &str, v: Value) {
        self.metadata.retain(|(k, _)| k != key);
        self.metadata.push((key.to_string(), v));
    }

    /// Adds a tensor of row-major `shape` whose blocks are `bytes` (already in type `ty`).
    pub fn add(&mut self, name: &str, shape: &[usize], ty: GgmlType, bytes: Vec<u8>) {
        let dims = shape.iter().rev().map(|&d| d as u64).collect();
        self.tensors.push((name.to_string(), dims, ty, bytes));
    }

    pub fn finish(self) -> Vec<u8> {
        let align = DEFAULT_ALIGNMENT as usize;
        let mut out = Vec::new();
        out.extend(MAGIC);
        out.extend(VERSION.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut out, k);
            out.extend(v.type_id().to_le_bytes());
            put_value(&mut out, v);
        }
        let mut offset = 0usize;
        for (name, dims, ty, bytes) in &self.tensors {
            put_str(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(ty.id().to_le_bytes());
            out.extend((offset as u64).to_le_bytes());
            offset = (offset + bytes.len()).div_ceil(align) * align;
        }
        out.resize(out.len().div_ceil(align) * align, 0);
        for (_, _, _, bytes) in &self.tensors {
            out.extend(bytes);
            out.resize(out.len().div_ceil(align) * align, 0);
        }
        out
    }
}

/// A metadata lookup that names the file and the key in its errors.
pub(crate) struct Meta<'g, 'a>(pub &'g Gguf<'a>);

impl Meta<'_, '_> {
    fn err(&self, key: &str, m: impl std::fmt::Display) -> CoreError {
        CoreError::Invalid(format!("{}: metadata `{key}`: {m}", self.0.file))
    }
    pub fn u64(&self, key: &str) -> Result<Option<u64>> {
        self.0
            .get(key)
            .map(|v| {
                v.as_u64().ok_or_else(|| {
                    self.err(key, format!("expected an unsigned integer, found {v:?}"))
                })
            })
            .transpose()
    }
    pub fn req_u64(&self, key: &str) -> Result<u64> {
        self.u64(key)?.ok_or_else(|| self.err(key, "missing"))
    }
    pub fn f64(&self, key: &str) -> Result<Option<f64>> {
        self.0
            .get(key)
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| self.err(key, format!("expected a number, found {v:?}")))
            })
            .transpose()
    }
    pub fn str(&self, key: &str) -> Result<Option<&str>> {
        self.0
            .get(key)
            .map(|v| v.as_str().ok_or_else(|| self.err(key, "expected a string")))
            .transpose()
    }
    /// The elements of the array `key`, each through `item` (None: not an element of the kind).
    fn array<'v, T>(
        &'v self,
        key: &str,
        kind: &str,
        item: impl Fn(&'v Value) -> Option<T>,
    ) -> Result<Option<Vec<T>>> {
        let Some(v) = self.0.get(key) else {
            return Ok(None);
        };
        let items = v
            .as_array()
            .ok_or_else(|| self.err(key, "expected an array"))?;
        items
            .iter()
            .map(|i| item(i).ok_or_else(|| self.err(key, format!("expected an array of {kind}"))))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
    pub fn strings(&self, key: &str) -> Result<Option<Vec<&str>>> {
        self.array(key, "strings", Value::as_str)
    }
    pub fn ints(&self, key: &str) -> Result<Option<Vec<i64>>> {
        self.array(key, "integers", |i| match *i {
            Value::I32(x) => Some(x.into()),
            Value::I64(x) => Some(x),
            Value::U32(x) => Some(x.into()),
            Value::U8(x) => Some(x.into()),
            Value::I8(x) => Some(x.into()),
            _ => None,
        })
    }
}

/// The HF name of a GGUF tensor (llama.cpp's names: `token_embd`, `blk.N.attn_q`, …) and back.
pub(crate) const NAME_MAP: [(&str, &str); 15] = [
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_sub_norm", "self_attn.attn_sub_norm"),
    ("ffn_sub_norm", "mlp.ffn_sub_norm"),
    // Top-level tensors (no layer).
    ("token_embd", "model.embed_tokens"),
    ("output_norm", "model.norm"),
    ("output", "lm_head"),
    ("rope_freqs", "rope_freqs"),
];

/// GGUF name of the HF tensor `name`, or None when it has no GGUF counterpart.
pub fn gguf_name(name: &str) -> Option<String> {
    let (stem, suffix) = name.rsplit_once('.')?;
    if let Some(rest) = stem.strip_prefix("model.layers.") {
        let (l, part) = rest.split_once('.')?;
        let (g, _) = NAME_MAP[..11].iter().find(|(_, h)| *h == part)?;
        return Some(format!("blk.{l}.{g}.{suffix}"));
    }
    let (g, _) = NAME_MAP[11..].iter().find(|(_, h)| *h == stem)?;
    Some(format!("{g}.{suffix}"))
}

/// HF name of the GGUF tensor `name`, or None when it is not one we know.
pub fn hf_name(name: &str) -> Option<String> {
    let (stem, suffix) = name.rsplit_once('.')?;
    if let Some(rest) = stem.strip_prefix("blk.") {
        let (l, part) = rest.split_once('.')?;
        l.parse::<usize>().ok()?;
        let (_, h) = NAME_MAP[..11].iter().find(|(g, _)| *g == part)?;
        return Some(format!("model.layers.{l}.{h}.{suffix}"));
    }
    let (_, h) = NAME_MAP[11..].iter().find(|(g, _)| *g == stem)?;
    Some(format!("{h}.{suffix}"))
}

/// llama.cpp's converter reorders the rows of q_proj and k_proj of Llama-architecture models so that
/// ggml's RoPE (rotating adjacent pairs) computes what transformers' `rotate_half` does: within each
/// head, row `2i + j` of the result is row `j·d/2 + i` of the original (d = head dim). `heads` is
/// the number of heads of the tensor (num_key_value_heads for k_proj).
pub fn permute_rows(
    values: &[f32],
    rows: usize,
    heads: usize,
    inverse: bool,
) -> std::result::Result<Vec<f32>, String> {
    if rows == 0 || heads == 0 || !rows.is_multiple_of(heads) || !(rows / heads).is_multiple_of(2) {
        return Err(format!("{rows} rows are not {heads} heads of an even size"));
    }
    if !values.len().is_multiple_of(rows) {
        return Err(format!("{} values are not {rows} rows", values.len()));
    }
    let cols = values.len() / rows;
    let d = rows / heads;
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for i in 0..d / 2 {
            for j in 0..2 {
                let ggml = h * d + 2 * i + j;
                let hf = h * d + j * (d / 2) + i;
                let (to, from) = if inverse { (hf, ggml) } else { (ggml, hf) };
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&values[from * cols..(from + 1) * cols]);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_names() {
        let mut w = GgufWriter::default();
        w.set("general.architecture", Value::Str("llama".into()));
        w.set(
            "a.list",
            Value::strings(["x".to_string(), "y z".to_string()]),
        );
        w.set("a.n", Value::U32(7));
        w.add("t.weight", &[2, 3], GgmlType::F32, vec![0; 24]);
        w.add("u.weight", &[5], GgmlType::F16, vec![1; 10]);
        let b = w.finish();
        let g = Gguf::parse("m.gguf", &b).unwrap();
        assert_eq!(g.get("a.n").and_then(Value::as_u64), Some(7));
        assert_eq!(
            Meta(&g).strings("a.list").unwrap().unwrap(),
            vec!["x", "y z"]
        );
        let u = g.tensor("u.weight").unwrap();
        assert_eq!(u.shape(), vec![5]);
        assert_eq!(g.bytes(u), &[1; 10]);
        assert_eq!(g.tensor("t.weight").unwrap().dims, vec![3, 2]);
        for n in [
            "model.layers.3.self_attn.q_proj.weight",
            "model.layers.0.mlp.ffn_sub_norm.weight",
            "model.embed_tokens.weight",
            "lm_head.weight",
            "model.layers.1.self_attn.k_proj.bias",
        ] {
            assert_eq!(hf_name(&gguf_name(n).unwrap()).unwrap(), n);
        }
        assert_eq!(
            gguf_name("model.layers.3.self_attn.o_proj.weight").unwrap(),
            "blk.3.attn_output.weight"
        );
    }

    #[test]
    fn broken_files_are_named() {
        let mut w = GgufWriter::default();
        w.add("t.weight", &[4, 32], GgmlType::F32, vec![0; 512]);
        let b = w.finish();
        let e = |b: &[u8]| Gguf::parse("m.gguf", b).err().unwrap().to_string();
        assert!(
            e(&b[..b.len() - 4]).contains("tensor `t.weight`"),
            "{}",
            e(&b[..b.len() - 4])
        );
        assert!(e(&b[..20]).contains("truncated"), "{}", e(&b[..20]));
        assert!(e(b"GGML....").contains("does not start with `GGUF`"));
        let mut odd = b.clone();
        // The type id of the only tensor: after name, n_dims, 2 dims.
        let at = 4 + 4 + 8 + 8 + 8 + "t.weight".len() + 4 + 16;
        odd[at..at + 4].copy_from_slice(&6u32.to_le_bytes());
        let m = e(&odd);
        assert!(
            m.contains("t.weight") && m.contains("Q5_0") && m.contains("not supported"),
            "{m}"
        );
    }

    #[test]
    fn decoders_match_gguf_py() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/gguf/blocks.gguf"
        );
        let b = std::fs::read(path).unwrap();
        let g = Gguf::parse("blocks.gguf", &b).unwrap();
        for ty in GgmlType::ALL.into_iter().filter(|&t| t != GgmlType::F32) {
            let got = g.to_f32(g.tensor(ty.name()).unwrap()).unwrap();
            let want = g
                .to_f32(g.tensor(&format!("{}.expected", ty.name())).unwrap())
                .unwrap();
            assert_eq!(got.len(), want.len(), "{ty:?}");
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                    "{ty:?} value {i}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn permutation_is_llama_cpps_and_inverts() {
        // 2 heads of dim 4, one column: HF rows [a0 a1 | b0 b1] per head → ggml [a0 b0 a1 b1].
        let v: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let p = permute_rows(&v, 8, 2, false).unwrap();
        assert_eq!(p, vec![0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
        assert_eq!(permute_rows(&p, 8, 2, true).unwrap(), v);
        assert!(permute_rows(&v, 0, 2, false).is_err());
        assert!(permute_rows(&v, 8, 3, false).is_err());
        assert!(permute_rows(&v, 6, 3, false).is_err());
    }
}
