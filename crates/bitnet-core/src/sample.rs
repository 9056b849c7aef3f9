//! Choosing the next token from a row of logits: greedy (the first largest logit, like
//! `torch.argmax`), or sampling after temperature, top-k and top-p in that order (transformers'
//! order of logits warpers), from a small seeded generator so that every run is reproducible.

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    Greedy,
    /// `top_k` 0 keeps every token; `top_p` 1 keeps the whole distribution.
    Random {
        temperature: f32,
        top_p: f32,
        top_k: usize,
    },
}

impl Sampling {
    /// Checks the parameters; temperature 0 means greedy, as in transformers' `do_sample=False`.
    pub fn new(temperature: f32, top_p: f32, top_k: usize) -> Result<Sampling, String> {
        if !(temperature >= 0.0 && temperature.is_finite()) {
            return Err(format!(
                "temperature must be a finite number ≥ 0, not {temperature}"
            ));
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(format!("top-p must be in (0, 1], not {top_p}"));
        }
        Ok(if temperature == 0.0 {
            Sampling::Greedy
        } else {
            Sampling::Random {
                temperature,
                top_p,
                top_k,
            }
        })
    }
}

/// The generator of a sampled token: stream i of the run's seed is prompt i's (see [`crate::rng`]).
pub type SampleRng = crate::rng::Rng;

/// The index of the first largest value (NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] || logits[best].is_nan() {
            best = i;
        }
    }
    best as u32
}

/// The next token of `logits` under `sampling`.
pub fn sample(logits: &[f32], sampling: &Sampling, rng: &mut SampleRng) -> u32 {
    let (temperature, top_p, top_k) = match *sampling {
        Sampling::Greedy => return argmax(logits),
        Sampling::Random {
            temperature,
            top_p,
            top_k,
        } => (temperature as f64, top_p as f64, top_k),
    };
    // Candidates by descending logit (ties: lower id first), cut to top-k.
    let mut order: Vec<usize> = (0..logits.len()).filter(|&i| !logits[i].is_nan()).collect();
    if order.is_empty() {
        return 0;
    }
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if top_k > 0 {
        order.truncate(top_k);
    }
    let top = logits[order[0]] as f64 / temperature;
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| (logits[i] as f64 / temperature - top).exp())
        .collect();
    let z: f64 = weights.iter().sum();
    // Top-p: the smallest prefix whose probability reaches top_p (at least one token).
    let mut keep = weights.len();
    if top_p < 1.0 {
        let mut cum = 0.0;
        for (n, w) in weights.iter().enumerate() {
            cum += w / z;
            if cum >= top_p {
                keep = n + 1;
                break;
            }
        }
    }
    let total: f64 = weights[..keep].iter().sum();
    let mut u = rng.next_f64() * total;
    for (n, w) in weights[..keep].iter().enumerate() {
        if u < *w {
            return order[n] as u32;
        }
        u -= w;
    }
    order[keep - 1] as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_largest_logit() {
        assert_eq!(argmax(&[0.5, 2.0, -1.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -3.0, -4.0]), 1);
        let mut rng = SampleRng::stream(1, 0);
        assert_eq!(sample(&[0.0, 1.0, 3.0], &Sampling::Greedy, &mut rng), 2);
        assert_eq!(Sampling::new(0.0, 0.9, 0).unwrap(), Sampling::Greedy);
        assert!(Sampling::new(-1.0, 0.9, 0).is_err());
        assert!(Sampling::new(0.7, 0.0, 0).is_err());
        assert!(Sampling::new(0.7, 1.5, 0).is_err());
    }

    #[test]
    fn top_k_and_top_p_cut_the_candidates() {
        let logits = [0.0f32, 3.0, 2.9, -2.0, 2.8];
        let mut rng = SampleRng::stream(42, 7);
        // top-k 1 is greedy whatever the temperature.
        let k1 = Sampling::Random {
            temperature: 5.0,
            top_p: 1.0,
            top_k: 1,
        };
        assert!((0..50).all(|_| sample(&logits, &k1, &mut rng) == 1));
        // top-k 3 never leaves the three largest.
        let k3 = Sampling::Random {
            temperature: 10.0,
            top_p: 1.0,
            top_k: 3,
        };
        let seen: std::collections::BTreeSet<u32> =
            (0..300).map(|_| sample(&logits, &k3, &mut rng)).collect();
        assert_eq!(seen, [1, 2, 4].into());
        // A tiny top-p keeps only the most likely token.
        let p = Sampling::Random {
            temperature: 1.0,
            top_p: 0.01,
            top_k: 0,
        };
        assert!((0..50).all(|_| sample(&logits, &p, &mut rng) == 1));
        // top-p 0.5 of probabilities ≈ (0.36, 0.33, 0.30, …) keeps the first two.
        let p2 = Sampling::Random {
            temperature: 1.0,
            top_p: 0.5,
            top_k: 0,
        };
        let seen: std::collections::BTreeSet<u32> =
            (0..300).map(|_| sample(&logits, &p2, &mut rng)).collect();
        assert_eq!(seen, [1, 2].into());
    }

    #[test]
    fn sampling_follows_the_distribution_and_the_seed() {
        let logits = [0.0f32, (3f32).ln()]; // p = 1/4, 3/4
        let s = Sampling::Random {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
        };
        let mut rng = SampleRng::stream(42, 0);
        let ones = (0..4000)
            .filter(|_| sample(&logits, &s, &mut rng) == 1)
            .count();
        assert!((2850..3150).contains(&ones), "{ones} of 4000");
        let draw = |seed| {
            let mut r = SampleRng::stream(seed, 3);
            (0..20)
                .map(|_| sample(&logits, &s, &mut r))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
    }
}
