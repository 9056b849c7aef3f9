//! λ schedules (DESIGN.md §2): how far each linear weight is blended toward its ternary value at
//! optimizer step `s`. Every schedule is a pure function of (s, steps, warmup_frac), shared by the
//! trainer, the CLI and the UI charts. With w = floor(steps × warmup_frac), λ reaches 1 at s = w and
//! stays there; w = 0 means λ = 1 from step 0.

use std::fmt;
use std::str::FromStr;

/// Serialized as `bitnet schedule --shape` spells it (`linear`, `sigmoid:8`, …).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Schedule {
    /// The seed's ramp: λ = s / w.
    Linear,
    /// A logistic ramp of steepness k, rescaled to be exactly 0 at s = 0 and 1 at s = w.
    Sigmoid { k: f64 },
    /// 1 − (1 − s/w)^k: fast at first, slow at the end.
    Exp { k: f64 },
    /// n equal plateaus: λ = floor(n·s/w)/n.
    Step { n: u32 },
    /// λ = v at every step: a constant schedule is constant, whatever the warmup.
    Const { v: f64 },
}

impl Schedule {
    /// Number of warmup steps: floor(steps × warmup_frac).
    pub fn warmup_steps(steps: u64, warmup_frac: f64) -> u64 {
        (steps as f64 * warmup_frac).floor().max(0.0) as u64
    }

    /// λ at optimizer step `s`.
    pub fn lambda(&self, s: u64, steps: u64, warmup_frac: f64) -> f64 {
        if let Schedule::Const { v } = *self {
            return v;
        }
        let w = Self::warmup_steps(steps, warmup_frac);
        if w == 0 || s >= w {
            return 1.0;
        }
        let x = s as f64 / w as f64; // in [0, 1)
        let l = match *self {
            Schedule::Linear => x,
            Schedule::Sigmoid { k } => {
                let sig = |t: f64| 1.0 / (1.0 + (-k * (t - 0.5)).exp());
                let (lo, hi) = (sig(0.0), sig(1.0));
                (sig(x) - lo) / (hi - lo)
            }
            Schedule::Exp { k } => 1.0 - (1.0 - x).powf(k),
            Schedule::Step { n } => (x * n as f64).floor() / n as f64,
            Schedule::Const { v } => v,
        };
        l.clamp(0.0, 1.0)
    }

    /// λ at every step 0..=steps.
    pub fn trace(&self, steps: u64, warmup_frac: f64) -> Vec<f64> {
        (0..=steps)
            .map(|s| self.lambda(s, steps, warmup_frac))
            .collect()
    }
}

/// The learning rate at optimizer step `s` (0-based) of `steps`: a linear warmup over
/// ceil(steps × warmup_ratio) steps, then a cosine decay to 0 — Hugging Face's
/// `get_cosine_schedule_with_warmup` with the Trainer's warmup-step rounding.
pub fn cosine_lr(peak: f64, s: u64, steps: u64, warmup_ratio: f64) -> f64 {
    let warmup = (steps as f64 * warmup_ratio).ceil().max(0.0) as u64;
    if s < warmup {
        return peak * s as f64 / warmup.max(1) as f64;
    }
    let progress = (s - warmup) as f64 / (steps.saturating_sub(warmup)).max(1) as f64;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Linear => write!(f, "linear"),
            Schedule::Sigmoid { k } => write!(f, "sigmoid:{k}"),
            Schedule::Exp { k } => write!(f, "exp:{k}"),
            Schedule::Step { n } => write!(f, "step:{n}"),
            Schedule::Const { v } => write!(f, "const:{v}"),
        }
    }
}

impl From<Schedule> for String {
    fn from(s: Schedule) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for Schedule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl FromStr for Schedule {
    type Err = String;
    /// `linear`, `sigmoid:K`, `exp:K`, `step:N` or `const:V`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let num = |what: &str| -> Result<f64, String> {
            let a =
                arg.ok_or_else(|| format!("schedule `{name}` needs a value: `{name}:{what}`"))?;
            a.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("schedule `{s}`: `{a}` is not a number"))
        };
        let sched = match name {
            "linear" if arg.is_none() => Schedule::Linear,
            "sigmoid" => Schedule::Sigmoid { k: num("K")? },
            "exp" => Schedule::Exp { k: num("K")? },
            "step" => {
                let n = num("N")?;
                if n < 1.0 || n.fract() != 0.0 || n > u32::MAX as f64 {
                    return Err(format!(
                        "schedule `{s}`: the number of plateaus must be a positive integer"
                    ));
                }
                Schedule::Step { n: n as u32 }
            }
            "const" => Schedule::Const { v: num("V")? },
            _ => {
                return Err(format!(
                    "unknown schedule `{s}`; expected linear, sigmoid:K, exp:K, step:N or const:V"
                ));
            }
        };
        match sched {
            Schedule::Sigmoid { k } | Schedule::Exp { k } if k <= 0.0 => {
                Err(format!("schedule `{s}`: K must be positive"))
            }
            Schedule::Const { v } if !(0.0..=1.0).contains(&v) => {
                Err(format!("schedule `{s}`: V must be in [0, 1]"))
            }
            ok => Ok(ok),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_lr_warms_up_then_decays_like_hugging_face() {
        // 100 steps, ratio 0.1: 10 warmup steps (0, 0.1, …, 0.9 of the peak), then a half cosine.
        let lr = |s| cosine_lr(5e-5, s, 100, 0.1);
        assert_eq!(lr(0), 0.0);
        assert!((lr(5) - 2.5e-5).abs() < 1e-18);
        assert!((lr(10) - 5e-5).abs() < 1e-18);
        assert!((lr(55) - 2.5e-5).abs() < 1e-12);
        assert!(lr(99) > 0.0 && lr(99) < 1e-7);
        // ceil: 1000 × 0.1 = 100 warmup steps; 15 × 0.1 rounds up to 2.
        assert!((cosine_lr(1.0, 1, 15, 0.1) - 0.5).abs() < 1e-15);
        assert_eq!(cosine_lr(1.0, 0, 10, 0.0), 1.0);
    }

    #[test]
    fn linear_matches_the_seed_trace() {
        let l = Schedule::Linear;
        let got: Vec<f64> = [0, 100, 200, 300, 400, 500]
            .iter()
            .map(|&s| l.lambda(s, 1000, 0.4))
            .collect();
        assert_eq!(got, vec![0.0, 0.25, 0.5, 0.75, 1.0, 1.0]);
    }

    #[test]
    fn zero_warmup_is_one_from_the_start() {
        for s in ["linear", "sigmoid:8", "exp:3", "step:4"] {
            let sched: Schedule = s.parse().unwrap();
            assert_eq!(sched.lambda(0, 1000, 0.0), 1.0, "{s}");
        }
    }

    #[test]
    fn a_constant_schedule_is_constant_whatever_the_warmup() {
        for v in [0.0, 0.3, 1.0] {
            let sched = Schedule::Const { v };
            for (steps, frac) in [(1000, 0.0), (2, 0.4), (100, 0.5), (100, 1.0)] {
                assert!(
                    sched.trace(steps, frac).iter().all(|&l| l == v),
                    "{v} {steps} {frac}"
                );
            }
        }
        let json = serde_json::to_string(&Schedule::Sigmoid { k: 8.0 }).unwrap();
        assert_eq!(json, "\"sigmoid:8\"");
        assert_eq!(
            serde_json::from_str::<Schedule>(&json).unwrap(),
            Schedule::Sigmoid { k: 8.0 }
        );
        assert!(serde_json::from_str::<Schedule>("\"cubic\"").is_err());
    }

    #[test]
    fn shapes_are_monotone_and_hit_the_ends() {
        for s in ["linear", "sigmoid:10", "exp:2", "step:5"] {
            let sched: Schedule = s.parse().unwrap();
            let t = sched.trace(100, 0.5);
            assert_eq!(t[0], 0.0, "{s}");
            assert_eq!(t[50], 1.0, "{s}");
            assert!(t.windows(2).all(|w| w[1] >= w[0]), "{s} not monotone");
        }
        assert_eq!(Schedule::Step { n: 4 }.lambda(26, 100, 1.0), 0.25);
        assert_eq!(Schedule::Const { v: 0.3 }.lambda(10, 100, 0.5), 0.3);
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        assert!(
            "cubic"
                .parse::<Schedule>()
                .unwrap_err()
                .contains("unknown schedule")
        );
        assert!(
            "step:0"
                .parse::<Schedule>()
                .unwrap_err()
                .contains("positive integer")
        );
        assert!(
            "sigmoid"
                .parse::<Schedule>()
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            "const:2"
                .parse::<Schedule>()
                .unwrap_err()
                .contains("[0, 1]")
        );
    }
}
