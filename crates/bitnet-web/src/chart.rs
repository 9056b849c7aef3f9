//! Line charts as SVG text: the λ preview, the live training charts and the workshop's overlay.
//! The same markup is shown in the page and exported, so what a user downloads is what they saw.
//! Every plot area carries its data-to-pixel mapping (`data-x0` … `data-py1`) and every line its
//! label, so a test can read the drawn values back.

use std::fmt::Write;

/// One line.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
    /// Drawn thin and pale (the other schedules behind the chosen one).
    pub faint: bool,
}

/// One plot area with its own y axis.
#[derive(Clone, Debug)]
pub struct Panel {
    pub id: &'static str,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed y range (λ is always 0..1); None: fitted to the data.
    pub y_range: Option<(f64, f64)>,
}

/// Panels stacked over one x axis, with a title and a legend.
#[derive(Clone, Debug)]
pub struct Figure {
    pub title: String,
    pub x_label: String,
    pub panels: Vec<Panel>,
    pub width: f64,
    pub panel_height: f64,
    /// Font size in pixels (the workshop's charts are read from the back of a room).
    pub font: f64,
    pub legend: bool,
}

/// Colours that stay apart on a projector, in the order runs are added.
pub const PALETTE: [&str; 6] = [
    "#7fd1b9", "#f2c14e", "#ff7b72", "#79c0ff", "#d2a8ff", "#ffa657",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A short number for an axis tick.
fn tick_label(v: f64) -> String {
    let a = v.abs();
    if v == 0.0 {
        "0".into()
    } else if !(1e-2..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .into()
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .into()
    }
}

/// A round step (1, 2 or 5 times a power of ten, at least 1: steps are whole) near `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw <= 1.0 {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

fn range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return None;
    }
    if lo == hi {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return Some((lo - pad, hi + pad));
    }
    // A little room around the data, without crossing zero when the data does not.
    let pad = (hi - lo) * 0.05;
    let low = if lo >= 0.0 {
        (lo - pad).max(0.0)
    } else {
        lo - pad
    };
    Some((low, hi + pad))
}

impl Figure {
    /// The figure as a standalone SVG document (with its own background, for export).
    pub fn svg(&self) -> String {
        let f = self.font;
        let left = f * 4.6;
        let right = self.width - f * 1.2;
        let legend_rows = if self.legend {
            self.panels
                .iter()
                .flat_map(|p| p.series.iter())
                .filter(|s| !s.faint)
                .map(|s| s.label.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        } else {
            0
        };
        let top0 = f * 2.4;
        let gap = f * 2.2;
        let bottom_axis = f * 2.8;
        let legend_h = if legend_rows > 0 {
            f * 1.5 * legend_rows as f64 + f * 0.6
        } else {
            0.0
        };
        let n = self.panels.len().max(1) as f64;
        let height = top0 + n * self.panel_height + (n - 1.0) * gap + bottom_axis + legend_h;
        // x from 0 to the last point (at least 1): steps are counted from 0.
        let x1 = self
            .panels
            .iter()
            .flat_map(|p| p.series.iter())
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .fold(1.0f64, f64::max);
        let x0 = 0.0;
        let mut out = String::new();
        let _ = write!(
            out,
            r##"<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{w}" height="{height}" viewBox="0 0 {w} {height}" font-family="system-ui, sans-serif" font-size="{f}"><rect width="100%" height="100%" fill="#172233"/><text x="{left}" y="{ty}" fill="#e6edf3" font-weight="600">{title}</text>"##,
            w = self.width,
            ty = f * 1.4,
            title = esc(&self.title)
        );
        for (i, panel) in self.panels.iter().enumerate() {
            let top = top0 + i as f64 * (self.panel_height + gap);
            let bottom = top + self.panel_height;
            let (y0, y1) = panel
                .y_range
                .or_else(|| {
                    range(
                        panel
                            .series
                            .iter()
                            .flat_map(|s| s.points.iter().map(|p| p.1)),
                    )
                })
                .unwrap_or((0.0, 1.0));
            let px = |x: f64| left + (x - x0) / (x1 - x0).max(1e-12) * (right - left);
            let py = |y: f64| bottom - (y - y0) / (y1 - y0).max(1e-12) * (bottom - top);
            let _ = write!(
                out,
                r##"<g class="plot" id="{id}" data-x0="{x0}" data-x1="{x1}" data-y0="{y0}" data-y1="{y1}" data-px0="{left}" data-px1="{right}" data-py0="{bottom}" data-py1="{top}"><rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#0f1722"/>"##,
                id = panel.id,
                pw = right - left,
                ph = bottom - top
            );
            for k in 0..=4 {
                let v = y0 + (y1 - y0) * k as f64 / 4.0;
                let y = py(v);
                let _ = write!(
                    out,
                    r##"<line x1="{left}" x2="{right}" y1="{y:.2}" y2="{y:.2}" stroke="#24344d"/><text x="{tx}" y="{ty:.2}" fill="#9fb0c3" text-anchor="end">{label}</text>"##,
                    tx = left - f * 0.4,
                    ty = y + f * 0.35,
                    label = tick_label(v)
                );
            }
            let _ = write!(
                out,
                r##"<text x="{x}" y="{y}" fill="#9fb0c3" transform="rotate(-90 {x} {y})" text-anchor="middle">{label}</text>"##,
                x = f * 0.9,
                y = (top + bottom) / 2.0,
                label = esc(&panel.y_label)
            );
            // Faint lines first, so the chosen ones are drawn over them.
            let mut order: Vec<&Series> = panel.series.iter().collect();
            order.sort_by_key(|s| !s.faint);
            for s in order {
                let mut pts = String::new();
                for &(x, y) in &s.points {
                    if y.is_finite() {
                        let _ = write!(pts, "{:.3},{:.3} ", px(x), py(y));
                    }
                }
                let (width, opacity) = if s.faint {
                    (f * 0.12, 0.35)
                } else {
                    (f * 0.18, 1.0)
                };
                let _ = write!(
                    out,
                    r##"<polyline class="series{faint}" data-label="{label}" fill="none" stroke="{color}" stroke-width="{width:.2}" stroke-opacity="{opacity}" stroke-linejoin="round" points="{pts}"/>"##,
                    faint = if s.faint { " faint" } else { "" },
                    label = esc(&s.label),
                    color = s.color,
                    pts = pts.trim_end()
                );
                if s.points.len() == 1 {
                    let (x, y) = s.points[0];
                    let _ = write!(
                        out,
                        r##"<circle cx="{:.3}" cy="{:.3}" r="{}" fill="{}"/>"##,
                        px(x),
                        py(y),
                        f * 0.25,
                        s.color
                    );
                }
            }
            out.push_str("</g>");
            if i + 1 == self.panels.len() {
                let step = nice_step((x1 - x0) / 5.0);
                let ticks = ((x1 - x0) / step).floor() as usize;
                for k in 0..=ticks {
                    let v = x0 + step * k as f64;
                    let _ = write!(
                        out,
                        r##"<text x="{x:.2}" y="{y}" fill="#9fb0c3" text-anchor="middle">{label}</text>"##,
                        x = px(v),
                        y = bottom + f * 1.3,
                        label = tick_label(v)
                    );
                }
                let _ = write!(
                    out,
                    r##"<text x="{x}" y="{y}" fill="#9fb0c3" text-anchor="middle">{label}</text>"##,
                    x = (left + right) / 2.0,
                    y = bottom + f * 2.5,
                    label = esc(&self.x_label)
                );
            }
        }
        if legend_rows > 0 {
            let mut seen = std::collections::BTreeSet::new();
            let mut y = height - legend_h + f * 1.2;
            for s in self.panels.iter().flat_map(|p| p.series.iter()) {
                if s.faint || !seen.insert(s.label.clone()) {
                    continue;
                }
                let _ = write!(
                    out,
                    r##"<g class="legend" data-label="{label}"><line x1="{left}" x2="{lx}" y1="{ly:.2}" y2="{ly:.2}" stroke="{color}" stroke-width="{sw}"/><text x="{tx}" y="{y:.2}" fill="#e6edf3">{label}</text></g>"##,
                    label = esc(&s.label),
                    lx = left + f * 2.0,
                    ly = y - f * 0.35,
                    color = s.color,
                    sw = f * 0.25,
                    tx = left + f * 2.6
                );
                y += f * 1.5;
            }
        }
        out.push_str("</svg>");
        out
    }
}

/// The λ trace of `schedule` over `steps` optimizer steps, as chart points (x: the step as the
/// metrics number it, 0 … steps − 1).
pub fn lambda_points(
    schedule: bitnet_core::Schedule,
    steps: u64,
    warmup_frac: f64,
) -> Vec<(f64, f64)> {
    (0..steps)
        .map(|s| (s as f64, schedule.lambda(s, steps, warmup_frac)))
        .collect()
}
