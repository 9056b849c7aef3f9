//! The one seeded random generator of bitnet-studio: training's data order, token sampling,
//! self-generation and the demo model's weights all draw from it, natively and in the browser
//! alike. It is splitmix64 (Steele, Lea, Flood 2014): a counter-based generator whose whole state
//! is one u64, so a checkpoint stores it as a number and a resumed run continues the same stream.
//! Its stream is part of the checkpoint format: [`Rng::ALGORITHM`] is written beside the state, and
//! changing the generator means changing that name.

/// splitmix64, with independent streams per (seed, stream) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng(u64);

impl Rng {
    /// The name (and version) of the stream, stored in checkpoints next to [`Rng::state`].
    pub const ALGORITHM: &'static str = "splitmix64-v1";

    /// Stream 0 of `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng::stream(seed, 0)
    }

    /// Stream `stream` (e.g. a prompt's index) of a run seeded with `seed`.
    pub fn stream(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0xD134_2543_DE82_EF95));
        r.next_u64();
        r
    }

    /// The generator whose [`Rng::state`] was `state`: it continues the same sequence.
    pub fn from_state(state: u64) -> Rng {
        Rng(state)
    }

    pub fn state(&self) -> u64 {
        self.0
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n > 0), by rejection so that no value is favoured.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Roughly normal (Irwin–Hall of 4) with standard deviation `std`.
    pub fn normal(&mut self, std: f32) -> f32 {
        let s: f64 = (0..4).map(|_| self.next_f64()).sum::<f64>() - 2.0;
        (s * 3f64.sqrt()) as f32 * std
    }

    /// `n` values of [`Rng::normal`].
    pub fn normal_vec(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal(std)).collect()
    }

    /// Fisher–Yates shuffle of `v`.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_values_and_state_round_trip() {
        // splitmix64 from state 0: the published first output.
        let mut r = Rng::from_state(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        let mut a = Rng::stream(42, 3);
        a.next_u64();
        let mut b = Rng::from_state(a.state());
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(Rng::stream(42, 0).next_u64(), Rng::stream(42, 1).next_u64());
    }

    #[test]
    fn below_and_shuffle_stay_in_range_and_permute() {
        let mut r = Rng::new(7);
        assert!((0..1000).all(|_| r.below(13) < 13));
        let mut v: Vec<usize> = (0..50).collect();
        r.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(v, sorted);
        let x = r.normal_vec(10_000, 0.02);
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / 1e4;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / 1e4;
        assert!(
            mean.abs() < 1e-3 && (var.sqrt() - 0.02).abs() < 1e-3,
            "{mean} {var}"
        );
    }
}
