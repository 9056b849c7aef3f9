//! RoPE as a `config.json` describes it: `rope_theta` and the scaling (`rope_scaling` /
//! `rope_parameters.rope_type`: `default`, `linear`, `dynamic`, `llama3`, `yarn`), parsed and
//! turned into the frequencies the model uses, as transformers' `modeling_rope_utils` does.

use serde_json::{Map, Value};

use super::{Fields, ModelConfig};
use crate::error::{CoreError, Result};

/// How RoPE's inverse frequencies are made from `rope_theta` (transformers' `modeling_rope_utils`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "rope_type", rename_all = "snake_case")]
pub enum RopeScaling {
    Default,
    /// Positions divided by `factor`.
    Linear {
        factor: f64,
    },
    /// NTK scaling that only starts past `max_position_embeddings` — which this tool refuses — so
    /// within the context it is the default RoPE, exactly as in transformers.
    Dynamic {
        factor: f64,
    },
    /// Llama 3.1/3.2: low frequencies divided by `factor`, high ones kept, the band between blended.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
    /// YaRN: interpolated and extrapolated frequencies blended over a ramp, cos and sin scaled by
    /// `attention_factor`.
    Yarn {
        factor: f64,
        attention_factor: f64,
        beta_fast: f64,
        beta_slow: f64,
        original_max_position_embeddings: f64,
        truncate: bool,
    },
}

/// RoPE as the model applies it: angle = position · `inv_freq[i]`, cos and sin times `scale`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    pub inv_freq: Vec<f64>,
    pub scale: f64,
}

impl ModelConfig {
    /// The RoPE frequencies (head_dim / 2 of them) and the cos/sin scale, in f64.
    pub fn rope(&self) -> Rope {
        let d = self.head_dim as f64;
        let base = self.rope_theta;
        let default: Vec<f64> = (0..self.head_dim / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f64 / d))
            .collect();
        match self.rope_scaling {
            RopeScaling::Default | RopeScaling::Dynamic { .. } => Rope {
                inv_freq: default,
                scale: 1.0,
            },
            RopeScaling::Linear { factor } => Rope {
                inv_freq: default.iter().map(|f| f / factor).collect(),
                scale: 1.0,
            },
            RopeScaling::Llama3 {
                factor,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: old,
            } => {
                let (low_wavelen, high_wavelen) = (old / low, old / high);
                let inv_freq = default
                    .iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f64::consts::PI / f;
                        if wavelen > low_wavelen {
                            f / factor
                        } else if wavelen < high_wavelen {
                            f
                        } else {
                            let smooth = (old / wavelen - low) / (high - low);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect();
                Rope {
                    inv_freq,
                    scale: 1.0,
                }
            }
            RopeScaling::Yarn {
                factor,
                attention_factor,
                beta_fast,
                beta_slow,
                original_max_position_embeddings: old,
                truncate,
            } => {
                let correction = |rotations: f64| {
                    d * (old / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * base.ln())
                };
                let (mut low, mut high) = (correction(beta_fast), correction(beta_slow));
                if truncate {
                    (low, high) = (low.floor(), high.ceil());
                }
                let (low, mut high) = (low.max(0.0), high.min(d - 1.0));
                if low == high {
                    high += 0.001;
                }
                let inv_freq = default
                    .iter()
                    .enumerate()
                    .map(|(i, &extrapolated)| {
                        let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                        let keep = 1.0 - ramp;
                        extrapolated / factor * (1.0 - keep) + extrapolated * keep
                    })
                    .collect();
                Rope {
                    inv_freq,
                    scale: attention_factor,
                }
            }
        }
    }
}

/// The RoPE types implemented, as `rope_type` spells them.
pub const ROPE_TYPES: [&str; 5] = ["default", "linear", "dynamic", "llama3", "yarn"];

/// `rope_theta` and the RoPE scaling, from the 4.x fields (`rope_theta`, `rope_scaling`) or the 5.x
/// `rope_parameters`.
pub(super) fn rope_fields(f: &Fields, max_positions: usize) -> Result<(f64, RopeScaling)> {
    let (key, params) = match (f.get("rope_parameters"), f.get("rope_scaling")) {
        (Some(v), _) => ("rope_parameters", v),
        (None, Some(v)) => ("rope_scaling", v),
        (None, None) => ("rope_parameters", &Value::Null),
    };
    let empty = Map::new();
    let params = match params {
        Value::Null => &empty,
        Value::Object(m) => m,
        other => return Err(f.wrong(key, "an object", other)),
    };
    if let Some((layer, _)) = params.iter().find(|(_, v)| v.is_object()) {
        return Err(CoreError::config(
            f.file,
            format!(
                "`{key}` gives RoPE per layer type (`{layer}`), which this tool does not implement"
            ),
        ));
    }
    let p = Fields {
        file: f.file,
        obj: params,
        prefix: format!("{key}."),
    };
    // As transformers' standardize_rope_params: the nested value first.
    let theta = match p.f64("rope_theta")? {
        Some(t) => t,
        None => f.f64("rope_theta")?.unwrap_or(10000.0),
    };
    if !(theta > 1.0 && theta.is_finite()) {
        return Err(CoreError::config(
            f.file,
            format!("`rope_theta` is {theta}; it must be a finite number greater than 1"),
        ));
    }
    for (fields, field) in [(f, "partial_rotary_factor"), (&p, "partial_rotary_factor")] {
        if let Some(v) = fields.f64(field)?.filter(|&v| v != 1.0) {
            return Err(CoreError::config(
                f.file,
                format!(
                    "`{}{field}` is {v}; this tool implements RoPE over the whole head (1.0) only",
                    fields.prefix
                ),
            ));
        }
    }
    let rope_type = match p.string("rope_type")? {
        Some(t) => t,
        None => p.string("type")?.unwrap_or_else(|| "default".into()),
    };
    let original = || -> Result<f64> {
        Ok(match p.f64("original_max_position_embeddings")? {
            Some(v) => v,
            None => f
                .usize("original_max_position_embeddings")?
                .unwrap_or(max_positions) as f64,
        })
    };
    let scaling = match rope_type.as_str() {
        "default" => RopeScaling::Default,
        "linear" => RopeScaling::Linear {
            factor: p.positive("factor")?,
        },
        "dynamic" => RopeScaling::Dynamic {
            factor: p.positive("factor")?,
        },
        "llama3" => {
            let (low, high) = (
                p.positive("low_freq_factor")?,
                p.positive("high_freq_factor")?,
            );
            if high <= low {
                return Err(CoreError::config(
                    f.file,
                    format!(
                        "`{key}.high_freq_factor` ({high}) must be greater than `low_freq_factor` ({low})"
                    ),
                ));
            }
            RopeScaling::Llama3 {
                factor: p.positive("factor")?,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: original()?,
            }
        }
        "yarn" => {
            let old = original()?;
            let factor = match p.f64("factor")? {
                Some(_) => p.positive("factor")?,
                None => max_positions as f64 / old,
            };
            let mscale = |scale: f64, m: f64| {
                if scale <= 1.0 {
                    1.0
                } else {
                    0.1 * m * scale.ln() + 1.0
                }
            };
            let attention_factor = match p.f64("attention_factor")? {
                Some(a) => a,
                None => match (p.f64("mscale")?, p.f64("mscale_all_dim")?) {
                    (Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                        mscale(factor, m) / mscale(factor, all)
                    }
                    _ => mscale(factor, 1.0),
                },
            };
            // transformers reads `beta_fast or 32`: a 0 is the default too.
            let or = |v: Option<f64>, d: f64| v.filter(|&v| v != 0.0).unwrap_or(d);
            RopeScaling::Yarn {
                factor,
                attention_factor,
                beta_fast: or(p.f64("beta_fast")?, 32.0),
                beta_slow: or(p.f64("beta_slow")?, 1.0),
                original_max_position_embeddings: old,
                truncate: p.bool("truncate")?.unwrap_or(true),
            }
        }
        other => {
            return Err(CoreError::config(
                f.file,
                format!(
                    "`{key}.rope_type` is `{other}`, which this tool does not implement; supported: {}",
                    ROPE_TYPES.join(", ")
                ),
            ));
        }
    };
    if let RopeScaling::Yarn {
        attention_factor, ..
    } = scaling
        && !(attention_factor > 0.0 && attention_factor.is_finite())
    {
        return Err(CoreError::config(
            f.file,
            format!("`{key}.attention_factor` is {attention_factor}; it must be a positive number"),
        ));
    }
    Ok((theta, scaling))
}
