//! Bit packing of ternary codes (DESIGN.md §3, docs/FORMAT.md).
//!
//! Both layouts store c = q + 1 ∈ {0, 1, 2} for the tensor flattened row-major, first value most
//! significant, and pad the tail with c = 1 (a zero weight):
//! - `2bit`: four codes per byte, byte = c0<<6 | c1<<4 | c2<<2 | c3 (the seed's layout).
//! - `trit5`: five codes per byte, byte = c0·81 + c1·27 + c2·9 + c3·3 + c4 (≤ 242; 1.6 bits/weight).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Packing {
    TwoBit,
    Trit5,
}

impl Packing {
    /// Codes per byte.
    pub fn per_byte(self) -> usize {
        match self {
            Packing::TwoBit => 4,
            Packing::Trit5 => 5,
        }
    }
    /// Packed size in bytes of `n` codes.
    pub fn packed_len(self, n: usize) -> usize {
        n.div_ceil(self.per_byte())
    }
    pub fn name(self) -> &'static str {
        match self {
            Packing::TwoBit => "2bit",
            Packing::Trit5 => "trit5",
        }
    }
}

impl fmt::Display for Packing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Packing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "2bit" => Ok(Packing::TwoBit),
            "trit5" => Ok(Packing::Trit5),
            _ => Err(format!("unknown packing `{s}`; expected 2bit or trit5")),
        }
    }
}

fn to_code(q: i8) -> u8 {
    (q.clamp(-1, 1) + 1) as u8
}

/// Packs codes q ∈ {−1, 0, +1}.
pub fn pack(packing: Packing, codes: &[i8]) -> Vec<u8> {
    let k = packing.per_byte();
    codes
        .chunks(k)
        .map(|chunk| {
            let mut c = [1u8; 5];
            for (slot, &q) in c.iter_mut().zip(chunk) {
                *slot = to_code(q);
            }
            match packing {
                Packing::TwoBit => c[0] << 6 | c[1] << 4 | c[2] << 2 | c[3],
                Packing::Trit5 => c[0] * 81 + c[1] * 27 + c[2] * 9 + c[3] * 3 + c[4],
            }
        })
        .collect()
}

/// Unpacks `n` codes. Fails on a byte that no packing of valid codes produces (a 2-bit code 3, or a
/// trit5 byte above 242), or on too few bytes.
pub fn unpack(packing: Packing, bytes: &[u8], n: usize) -> Result<Vec<i8>, String> {
    let need = packing.packed_len(n);
    if bytes.len() != need {
        return Err(format!(
            "{} codes need {need} bytes of {packing} packing, found {}",
            n,
            bytes.len()
        ));
    }
    let mut out = Vec::with_capacity(need * packing.per_byte());
    for (i, &b) in bytes.iter().enumerate() {
        let mut c = [0u8; 5];
        match packing {
            Packing::TwoBit => {
                for (j, slot) in c.iter_mut().take(4).enumerate() {
                    *slot = (b >> (6 - 2 * j)) & 3;
                }
            }
            Packing::Trit5 => {
                if b > 242 {
                    return Err(format!("byte {i} is {b}, above the largest trit5 byte 242"));
                }
                let mut v = b;
                for slot in c.iter_mut().rev() {
                    *slot = v % 3;
                    v /= 3;
                }
            }
        }
        for &code in c.iter().take(packing.per_byte()) {
            if code > 2 {
                return Err(format!("byte {i} holds the invalid 2-bit code 3"));
            }
            out.push(code as i8 - 1);
        }
    }
    out.truncate(n);
    Ok(out)
}

/// Codes per row group of the GPU layout: every row of a ternary weight starts a new group.
pub const GPU_ROW_CODES: usize = 64;

/// The u32 words of one row of `inp` codes in the GPU layout.
pub fn gpu_row_words(inp: usize) -> usize {
    inp.div_ceil(GPU_ROW_CODES) * GPU_ROW_CODES / 16
}

/// A ternary weight W (out, inp) in the layout the GPU kernels read (shaders/matvec.wgsl): 16
/// codes c = q + 1 per u32, least significant bits first, each row padded with c = 1 (a zero
/// weight) to a multiple of [`GPU_ROW_CODES`] codes, so that every row starts on a vec4 of words.
pub fn gpu_words(codes: &[i8], out: usize, inp: usize) -> Vec<u32> {
    debug_assert_eq!(codes.len(), out * inp);
    let row_words = gpu_row_words(inp);
    let mut words = vec![0x5555_5555u32; out * row_words];
    for (r, row) in codes.chunks(inp.max(1)).enumerate().take(out) {
        for (k, &q) in row.iter().enumerate() {
            let w = &mut words[r * row_words + k / 16];
            let shift = 2 * (k % 16);
            *w = (*w & !(3 << shift)) | (to_code(q) as u32) << shift;
        }
    }
    words
}

/// The code q of weight (j, k) of `words` in the GPU layout with rows of `inp` codes.
pub fn gpu_code(words: &[u32], inp: usize, j: usize, k: usize) -> i8 {
    let w = words[j * gpu_row_words(inp) + k / 16];
    ((w >> (2 * (k % 16))) & 3) as i8 - 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{Quantizer, ScaleMode};

    #[test]
    fn design_check_vector_packs_to_85_95() {
        let q = Quantizer::Threshold {
            ratio: 0.7,
            scale: ScaleMode::Absmean,
        };
        let t = q.quantize(&[1.0, -1.0, 0.0, 0.5, 2.0]);
        assert_eq!(pack(Packing::TwoBit, &t.codes), vec![0x85, 0x95]);
        assert!((t.scale - 0.9).abs() < 1e-7);
    }

    #[test]
    fn roundtrip_both_packings_all_tail_lengths() {
        for n in 0..23 {
            let codes: Vec<i8> = (0..n).map(|i| ((i * 7 + 3) % 3) as i8 - 1).collect();
            for p in [Packing::TwoBit, Packing::Trit5] {
                let b = pack(p, &codes);
                assert_eq!(b.len(), p.packed_len(n));
                assert_eq!(unpack(p, &b, n).unwrap(), codes, "{p} n={n}");
            }
        }
    }

    #[test]
    fn trit5_layout_first_value_most_significant() {
        // Codes 2 0 1 1 2: 2·81 + 0·27 + 1·9 + 1·3 + 2 = 176.
        assert_eq!(pack(Packing::Trit5, &[1, -1, 0, 0, 1]), vec![176]);
        // Code 2 then four padding codes 1: 162 + 27 + 9 + 3 + 1 = 202.
        assert_eq!(pack(Packing::Trit5, &[1]), vec![202]);
    }

    #[test]
    fn gpu_layout_pads_rows_and_reads_back() {
        // Rows of 70 codes take 128 codes (8 words); the padding is code 1 (bits 01).
        let (out, inp) = (3, 70);
        let codes: Vec<i8> = (0..out * inp)
            .map(|i| ((i * 5 + 1) % 3) as i8 - 1)
            .collect();
        let words = gpu_words(&codes, out, inp);
        assert_eq!(gpu_row_words(inp), 8);
        assert_eq!(words.len(), out * 8);
        for j in 0..out {
            for k in 0..inp {
                assert_eq!(gpu_code(&words, inp, j, k), codes[j * inp + k]);
            }
            for k in inp..128 {
                assert_eq!(gpu_code(&words, inp, j, k), 0);
            }
        }
        // First code in the least significant bits: q = (+1, −1, 0, …) → 0b..01_00_10.
        assert_eq!(
            gpu_words(&[1, -1], 1, 2),
            vec![0x5555_5552, 0x5555_5555, 0x5555_5555, 0x5555_5555]
        );
    }

    #[test]
    fn rejects_invalid_bytes() {
        assert!(
            unpack(Packing::TwoBit, &[0xFF], 4)
                .unwrap_err()
                .contains("code 3")
        );
        assert!(
            unpack(Packing::Trit5, &[243], 5)
                .unwrap_err()
                .contains("242")
        );
        assert!(
            unpack(Packing::TwoBit, &[0x55], 9)
                .unwrap_err()
                .contains("need 3 bytes")
        );
    }
}
