//! ggml's tensor types that we read (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K, TQ1_0, TQ2_0) and
//! write (F32, F16, TQ1_0, TQ2_0): block sizes, dequantization, and the ternary encoders, written to
//! produce llama.cpp's `quantize_row_tq{1,2}_0_ref` bytes for γ·q values (tests/fixtures/gguf holds
//! blocks dequantized by the `gguf` Python package to check every decoder against).

use half::{bf16, f16};

/// Values of a K-quant or ternary block.
pub const QK_K: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q8_0,
    Q4_K,
    Q6_K,
    TQ1_0,
    TQ2_0,
}

impl GgmlType {
    pub const ALL: [GgmlType; 10] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
    ];

    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4_K => 12,
            GgmlType::Q6_K => 14,
            GgmlType::BF16 => 30,
            GgmlType::TQ1_0 => 34,
            GgmlType::TQ2_0 => 35,
        }
    }

    pub fn from_id(id: u32) -> Option<GgmlType> {
        Self::ALL.into_iter().find(|t| t.id() == id)
    }

    pub fn name(self) -> &'static str {
        type_name(self.id())
    }

    /// (values per block, bytes per block).
    pub fn block(self) -> (usize, usize) {
        match self {
            GgmlType::F32 => (1, 4),
            GgmlType::F16 | GgmlType::BF16 => (1, 2),
            GgmlType::Q4_0 => (32, 18),
            GgmlType::Q4_1 => (32, 20),
            GgmlType::Q8_0 => (32, 34),
            GgmlType::Q4_K => (QK_K, 144),
            GgmlType::Q6_K => (QK_K, 210),
            GgmlType::TQ1_0 => (QK_K, 54),
            GgmlType::TQ2_0 => (QK_K, 66),
        }
    }

    /// Bytes a tensor of ggml `dims` takes; refuses rows that are no whole number of blocks and
    /// sizes that overflow.
    pub fn bytes_for(self, dims: &[u64]) -> Result<u64, String> {
        let (vals, bytes) = self.block();
        if !dims[0].is_multiple_of(vals as u64) {
            return Err(format!(
                "rows of {} values are not a whole number of {}'s {vals}-value blocks",
                dims[0],
                self.name()
            ));
        }
        dims.iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .and_then(|n| (n / vals as u64).checked_mul(bytes as u64))
            .ok_or_else(|| format!("dims {dims:?} are too large"))
    }
}

/// ggml's name of tensor type `id` (also for the types we do not read, so errors can name them).
pub fn type_name(id: u32) -> &'static str {
    const NAMES: [&str; 40] = [
        "F32",
        "F16",
        "Q4_0",
        "Q4_1",
        "Q4_2",
        "Q4_3",
        "Q5_0",
        "Q5_1",
        "Q8_0",
        "Q8_1",
        "Q2_K",
        "Q3_K",
        "Q4_K",
        "Q5_K",
        "Q6_K",
        "Q8_K",
        "IQ2_XXS",
        "IQ2_XS",
        "IQ3_XXS",
        "IQ1_S",
        "IQ4_NL",
        "IQ3_S",
        "IQ2_S",
        "IQ4_XS",
        "I8",
        "I16",
        "I32",
        "I64",
        "F64",
        "IQ1_M",
        "BF16",
        "Q4_0_4_4",
        "Q4_0_4_8",
        "Q4_0_8_8",
        "TQ1_0",
        "TQ2_0",
        "IQ4_NL_4_4",
        "IQ4_NL_4_8",
        "IQ4_NL_8_8",
        "MXFP4",
    ];
    NAMES.get(id as usize).copied().unwrap_or("unknown")
}

fn h(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// The values of `bytes`, whole blocks of type `ty` (the caller checked the length).
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
    let (vals, size) = ty.block();
    let mut out = Vec::with_capacity(bytes.len() / size * vals);
    for b in bytes.chunks_exact(size) {
        match ty {
            GgmlType::F32 => out.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            GgmlType::F16 => out.push(h(b, 0)),
            GgmlType::BF16 => out.push(bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            GgmlType::Q8_0 => {
                let d = h(b, 0);
                out.extend(b[2..34].iter().map(|&q| d * f32::from(q as i8)));
            }
            GgmlType::Q4_0 | GgmlType::Q4_1 => {
                let d = h(b, 0);
                let (m, qs, off) = match ty {
                    GgmlType::Q4_1 => (h(b, 2), &b[4..20], 0.0),
                    _ => (0.0, &b[2..18], 8.0),
                };
                let v = |q: u8| (f32::from(q) - off) * d + m;
                out.extend(qs.iter().map(|&q| v(q & 0xF)));
                out.extend(qs.iter().map(|&q| v(q >> 4)));
            }
            GgmlType::Q4_K => q4_k(b, &mut out),
            GgmlType::Q6_K => q6_k(b, &mut out),
            GgmlType::TQ1_0 | GgmlType::TQ2_0 => {
                let d = h(b, size - 2);
                out.extend(tq_codes(ty, b).into_iter().map(|q| f32::from(q) * d));
            }
        }
    }
    out
}

/// The 6-bit scale and min `j` of a Q4_K block's 12 packed bytes.
fn scale_min_k4(j: usize, q: &[u8]) -> (f32, f32) {
    let (d, m) = if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    };
    (f32::from(d), f32::from(m))
}

/// Q4_K: d, dmin (f16), 12 bytes of 6-bit scales and mins for 8 sub-blocks of 32, 128 bytes of
/// 4-bit values (each 32 bytes: the low nibbles are one sub-block, the high nibbles the next).
fn q4_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (h(b, 0), h(b, 2));
    let scales = &b[4..16];
    for (c, q) in b[16..144].chunks_exact(32).enumerate() {
        let (s1, m1) = scale_min_k4(2 * c, scales);
        let (s2, m2) = scale_min_k4(2 * c + 1, scales);
        let (d1, m1, d2, m2) = (d * s1, dmin * m1, d * s2, dmin * m2);
        out.extend(q.iter().map(|&x| d1 * f32::from(x & 0xF) - m1));
        out.extend(q.iter().map(|&x| d2 * f32::from(x >> 4) - m2));
    }
}

/// Q6_K: 128 bytes of low 4 bits, 64 of high 2 bits, 16 signed 8-bit sub-block scales, f16 d; two
/// halves of 128 values, each from 64 low bytes and 32 high bytes.
fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let d = h(b, 208);
    for half in 0..2 {
        let ql = &b[half * 64..half * 64 + 64];
        let qh = &b[128 + half * 32..128 + half * 32 + 32];
        let sc = &b[192 + half * 8..192 + half * 8 + 8];
        let mut y = [0f32; 128];
        for l in 0..32 {
            let is = l / 16;
            let q = [
                (ql[l] & 0xF) | ((qh[l] & 3) << 4),
                (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4),
                (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
            ];
            for (k, q) in q.into_iter().enumerate() {
                let s = f32::from(sc[is + 2 * k] as i8);
                y[l + 32 * k] = d * s * f32::from(q as i8 - 32);
            }
        }
        out.extend(y);
    }
}

const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];

/// The 256 ternary codes (−1, 0, +1) of one TQ1_0 or TQ2_0 block, in value order.
pub fn tq_codes(ty: GgmlType, b: &[u8]) -> Vec<i8> {
    let mut out = Vec::with_capacity(QK_K);
    if ty == GgmlType::TQ2_0 {
        // Two chunks of 32 bytes, each 4 runs of 32 values: value 32·l + m of a chunk is bits 2l
        // of byte m.
        for chunk in b[..64].chunks_exact(32) {
            for l in 0..4 {
                out.extend(chunk.iter().map(|&q| ((q >> (2 * l)) & 3) as i8 - 1));
            }
        }
        return out;
    }
    // TQ1_0: 5 trits per byte (first trit most significant, the byte is ⌈t·256/243⌉): 32 bytes × 5,
    // then 16 bytes × 5, then 4 bytes × 4.
    let trit = |q: u8, n: usize| ((u16::from(q.wrapping_mul(POW3[n])) * 3) >> 8) as i8 - 1;
    for (range, trits) in [(0..32, 5), (32..48, 5), (48..52, 4)] {
        for n in 0..trits {
            out.extend(b[range.clone()].iter().map(|&q| trit(q, n)));
        }
    }
    out
}

/// Values per group of one TQ1_0 byte layout pass: (first byte, bytes, trits).
const TQ1_GROUPS: [(usize, usize, usize); 3] = [(0, 32, 5), (32, 16, 5), (48, 4, 4)];

/// One TQ1_0 or TQ2_0 block of `codes` (256 of −1, 0, +1) with block scale `d`, byte for byte what
/// llama.cpp's reference quantizer writes for the values d·q (d = their absmax; 0 for a block of
/// zeros).
pub fn tq_block(ty: GgmlType, codes: &[i8], d: f16) -> Vec<u8> {
    let d = if codes.iter().all(|&q| q == 0) {
        f16::ZERO
    } else {
        d
    };
    let c = |i: usize| (codes[i] + 1) as u8;
    let mut out = Vec::with_capacity(ty.block().1);
    if ty == GgmlType::TQ2_0 {
        for j in 0..2 {
            for m in 0..32 {
                out.push((0..4).map(|n| c(128 * j + m + 32 * n) << (2 * n)).sum());
            }
        }
    } else {
        let mut base = 0;
        for (_, bytes, trits) in TQ1_GROUPS {
            for m in 0..bytes {
                let mut q: u16 =
                    (0..trits).fold(0, |q, n| q * 3 + u16::from(c(base + m + n * bytes)));
                if trits == 4 {
                    q *= 3; // the first value in the most significant of 5 trits
                }
                out.push((q * 256).div_ceil(243) as u8);
            }
            base += bytes * trits;
        }
    }
    out.extend(d.to_le_bytes());
    out
}

/// Every block's scale of a TQ1_0/TQ2_0 tensor.
pub fn tq_scales(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
    let size = ty.block().1;
    bytes.chunks_exact(size).map(|b| h(b, size - 2)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn random_codes(n: usize, seed: u64) -> Vec<i8> {
        let mut r = Rng::new(seed);
        (0..n).map(|_| (r.next_u64() % 3) as i8 - 1).collect()
    }

    #[test]
    fn ternary_blocks_roundtrip() {
        for ty in [GgmlType::TQ1_0, GgmlType::TQ2_0] {
            let mut codes = random_codes(3 * QK_K, 5);
            codes[QK_K..2 * QK_K].fill(0);
            let d = f16::from_f32(0.0371);
            let bytes: Vec<u8> = codes
                .chunks(QK_K)
                .flat_map(|c| tq_block(ty, c, d))
                .collect();
            assert_eq!(bytes.len(), 3 * ty.block().1);
            let back: Vec<i8> = bytes
                .chunks(ty.block().1)
                .flat_map(|b| tq_codes(ty, b))
                .collect();
            assert_eq!(back, codes, "{ty:?}");
            assert_eq!(tq_scales(ty, &bytes), vec![d.to_f32(), 0.0, d.to_f32()]);
            let v = dequantize(ty, &bytes);
            let want: Vec<f32> = codes.iter().map(|&q| f32::from(q) * d.to_f32()).collect();
            assert_eq!(v, want);
        }
    }

    #[test]
    fn tq2_0_layout_is_llama_cpps() {
        // Value 32·l + m of the first 128 sits in bits 2l of byte m: +1 at value 33 → byte 1 = 2<<2.
        let mut codes = vec![-1i8; QK_K];
        codes[33] = 1;
        let b = tq_block(GgmlType::TQ2_0, &codes, f16::ONE);
        assert_eq!(b[1], 0b0000_1000);
        assert_eq!(b[0], 0);
        // TQ1_0, all zeros (trit 1 everywhere): 121 → ⌈121·256/243⌉ = 128 for 5 trits; 4 trits
        // shifted up one: 120 → 127; and the scale of a block of zeros is 0.
        let b = tq_block(GgmlType::TQ1_0, &[0; QK_K], f16::ONE);
        assert!(b[..48].iter().all(|&x| x == 128), "{b:?}");
        assert!(b[48..52].iter().all(|&x| x == 127), "{b:?}");
        assert_eq!(b[52..], [0, 0]);
    }
}
