//! SHA-256 checksums: of a file's data section (packed files and checkpoints carry one) and of what
//! a training run was made from (its base weights and its tokenized dataset), so that a resume can
//! tell a corrupt checkpoint, another base model or another dataset from the run it continues.

use sha2::{Digest, Sha256};

use crate::dataset::Sequence;

fn hex(digest: &[u8]) -> String {
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// `sha256:` and the lowercase hex SHA-256 of `data`.
pub fn checksum(data: &[u8]) -> String {
    checksum_parts(&[data])
}

/// The checksum of `parts` one after the other (without joining them in memory).
pub fn checksum_parts(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    hex(&h.finalize())
}

/// The checksum of a set of named f32 tensors: every name, length and value (little-endian), in
/// the order given (name order for a map) — the same for the same weights whatever file or dtype
/// they were read from.
pub fn weights_checksum<'a>(
    weights: impl IntoIterator<Item = (&'a String, &'a Vec<f32>)>,
) -> String {
    let mut h = Sha256::new();
    for (name, values) in weights {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((values.len() as u64).to_le_bytes());
        for v in values {
            h.update(v.to_le_bytes());
        }
    }
    hex(&h.finalize())
}

/// The checksum of a tokenized dataset: every sequence's token ids and loss mask, in order.
pub fn sequences_checksum(seqs: &[Sequence]) -> String {
    let mut h = Sha256::new();
    for s in seqs {
        h.update((s.ids.len() as u64).to_le_bytes());
        for (id, keep) in s.ids.iter().zip(&s.keep) {
            h.update(id.to_le_bytes());
            h.update([*keep as u8]);
        }
    }
    hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn checksum_is_sha256_of_the_bytes() {
        // The standard SHA-256 test vector.
        assert_eq!(
            checksum(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(checksum_parts(&[b"a", b"", b"bc"]), checksum(b"abc"));
    }

    #[test]
    fn any_change_to_weights_or_data_changes_the_checksum() {
        let w = |v: f32| BTreeMap::from([("a".to_string(), vec![1.0, v])]);
        assert_eq!(weights_checksum(&w(2.0)), weights_checksum(&w(2.0)));
        assert_ne!(weights_checksum(&w(2.0)), weights_checksum(&w(2.5)));
        let renamed = BTreeMap::from([("b".to_string(), vec![1.0, 2.0])]);
        assert_ne!(weights_checksum(&w(2.0)), weights_checksum(&renamed));

        let seq = |id: u32, keep: bool| Sequence {
            ids: vec![1, id],
            keep: vec![false, keep],
        };
        let a = sequences_checksum(&[seq(2, true)]);
        assert_ne!(a, sequences_checksum(&[seq(3, true)]));
        assert_ne!(a, sequences_checksum(&[seq(2, false)]));
        assert_ne!(a, sequences_checksum(&[seq(2, true), seq(2, true)]));
    }
}
