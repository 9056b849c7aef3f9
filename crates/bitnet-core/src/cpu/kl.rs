//! CPU reference of shaders/kl.wgsl: distillation, KL(p_teacher ‖ p_student) at temperature T per
//! row of student and teacher logits (T, V), rows with a negative target masked out; the mean over
//! the unmasked rows, times a weight.

/// The unmasked rows: (row, student logits, teacher logits, lse of s/T, lse of t/T), in f64.
fn rows<'a>(
    student: &'a [f32],
    teacher: &'a [f32],
    targets: &'a [i32],
    v: usize,
    inv: f64,
) -> impl Iterator<Item = (usize, &'a [f32], &'a [f32], f64, f64)> + 'a {
    (0..targets.len())
        .filter(|&r| targets[r] >= 0)
        .map(move |r| {
            let (s, t) = (&student[r * v..(r + 1) * v], &teacher[r * v..(r + 1) * v]);
            (r, s, t, lse_of(s, inv), lse_of(t, inv))
        })
}

fn n_valid(targets: &[i32]) -> f64 {
    targets.iter().filter(|&&t| t >= 0).count().max(1) as f64
}

/// weight · mean over unmasked rows of KL(softmax(teacher/T) ‖ softmax(student/T)).
pub fn kl_forward(
    student: &[f32],
    teacher: &[f32],
    targets: &[i32],
    v: usize,
    temperature: f32,
    weight: f32,
) -> f32 {
    let inv = 1.0 / temperature as f64;
    let mut total = 0f64;
    for (_, s, t, lse_s, lse_t) in rows(student, teacher, targets, v, inv) {
        for j in 0..v {
            let log_t = t[j] as f64 * inv - lse_t;
            let log_s = s[j] as f64 * inv - lse_s;
            total += log_t.exp() * (log_t - log_s);
        }
    }
    (weight as f64 * total / n_valid(targets)) as f32
}

/// d kl_forward / d student: weight · (softmax(s/T) − softmax(t/T)) / (T · n_valid), 0 on masked
/// rows.
pub fn kl_backward(
    student: &[f32],
    teacher: &[f32],
    targets: &[i32],
    v: usize,
    temperature: f32,
    weight: f32,
) -> Vec<f32> {
    let inv = 1.0 / temperature as f64;
    let scale = weight as f64 * inv / n_valid(targets);
    let mut d = vec![0f32; student.len()];
    for (r, s, t, lse_s, lse_t) in rows(student, teacher, targets, v, inv) {
        for j in 0..v {
            let ps = (s[j] as f64 * inv - lse_s).exp();
            let pt = (t[j] as f64 * inv - lse_t).exp();
            d[r * v + j] = (scale * (ps - pt)) as f32;
        }
    }
    d
}

/// A teacher's K most likely next tokens per row, best first (ties: the lower id): ids (rows, K)
/// and their probabilities under the full softmax at temperature 1 (rows, K). Restricted to these
/// K and renormalized at temperature T, they are the top-K distillation target:
/// q_k = p_k^(1/T) / Σ_j p_j^(1/T) = softmax over the K of logits / T.
#[derive(Debug, Clone, PartialEq)]
pub struct TopK {
    pub k: usize,
    pub ids: Vec<u32>,
    pub probs: Vec<f32>,
}

/// The top-K of every row of `logits` (rows, V) (the CPU reference of shaders/topk.wgsl).
pub fn top_k(logits: &[f32], v: usize, k: usize) -> TopK {
    let rows = logits.len() / v;
    let (mut ids, mut probs) = (Vec::with_capacity(rows * k), Vec::with_capacity(rows * k));
    for row in logits.chunks(v) {
        let m = row
            .iter()
            .map(|&x| x as f64)
            .fold(f64::NEG_INFINITY, f64::max);
        let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
        for &j in &order[..k.min(v)] {
            ids.push(j as u32);
            probs.push((row[j] as f64 - lse).exp() as f32);
        }
    }
    TopK { k, ids, probs }
}

/// Per row: the log of the renormalized top-K target at temperature T, ln q_k (−∞ where p_k = 0).
fn log_q(probs: &[f32], inv: f64) -> Vec<f64> {
    let lt: Vec<f64> = probs.iter().map(|&p| (p as f64).ln() * inv).collect();
    let m = lt.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + lt.iter().map(|&x| (x - m).exp()).sum::<f64>().ln();
    lt.iter().map(|&x| x - lse).collect()
}

/// logsumexp(x/T) of a row of logits, in f64.
fn lse_of(s: &[f32], inv: f64) -> f64 {
    let m = s
        .iter()
        .map(|&v| v as f64 * inv)
        .fold(f64::NEG_INFINITY, f64::max);
    m + s
        .iter()
        .map(|&v| (v as f64 * inv - m).exp())
        .sum::<f64>()
        .ln()
}

/// weight · mean over unmasked rows of KL(q ‖ softmax(student/T)), q the teacher's top-K target
/// (the CPU reference of shaders/kl_topk.wgsl).
pub fn kl_topk_forward(
    student: &[f32],
    teacher: &TopK,
    targets: &[i32],
    v: usize,
    temperature: f32,
    weight: f32,
) -> f32 {
    let inv = 1.0 / temperature as f64;
    let k = teacher.k;
    let mut total = 0f64;
    for r in (0..targets.len()).filter(|&r| targets[r] >= 0) {
        let s = &student[r * v..(r + 1) * v];
        let lse_s = lse_of(s, inv);
        let lq = log_q(&teacher.probs[r * k..(r + 1) * k], inv);
        for (i, &l) in lq.iter().enumerate() {
            if l.is_finite() {
                let id = teacher.ids[r * k + i] as usize;
                total += l.exp() * (l - (s[id] as f64 * inv - lse_s));
            }
        }
    }
    (weight as f64 * total / n_valid(targets)) as f32
}

/// d kl_topk_forward / d student: weight · (softmax(s/T) − q) / (T · n_valid), 0 on masked rows.
pub fn kl_topk_backward(
    student: &[f32],
    teacher: &TopK,
    targets: &[i32],
    v: usize,
    temperature: f32,
    weight: f32,
) -> Vec<f32> {
    let inv = 1.0 / temperature as f64;
    let scale = weight as f64 * inv / n_valid(targets);
    let k = teacher.k;
    let mut d = vec![0f32; student.len()];
    for r in (0..targets.len()).filter(|&r| targets[r] >= 0) {
        let s = &student[r * v..(r + 1) * v];
        let lse_s = lse_of(s, inv);
        let mut g: Vec<f64> = s.iter().map(|&x| (x as f64 * inv - lse_s).exp()).collect();
        for (i, l) in log_q(&teacher.probs[r * k..(r + 1) * k], inv)
            .into_iter()
            .enumerate()
        {
            g[teacher.ids[r * k + i] as usize] -= l.exp();
        }
        for (j, x) in g.into_iter().enumerate() {
            d[r * v + j] = (scale * x) as f32;
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kl_is_zero_for_equal_logits_and_positive_otherwise() {
        let s = [0.5f32, -1.0, 2.0, 0.0, 1.0, 1.0];
        let targets = [1, 0];
        assert!(kl_forward(&s, &s, &targets, 3, 2.0, 1.0).abs() < 1e-7);
        let t = [0.0f32, 0.0, 0.0, 3.0, -3.0, 0.0];
        assert!(kl_forward(&s, &t, &targets, 3, 1.0, 1.0) > 0.01);
        // A masked row counts for nothing; the weight scales.
        let k = kl_forward(&s, &t, &[1, -100], 3, 1.0, 0.5);
        let one_row = kl_forward(&s[..3], &t[..3], &[1], 3, 1.0, 1.0);
        assert!((k - 0.5 * one_row).abs() < 1e-6, "{k} {one_row}");
        assert!(
            kl_backward(&s, &t, &[1, -100], 3, 1.0, 1.0)[3..]
                .iter()
                .all(|&x| x == 0.0)
        );
    }

    #[test]
    fn top_k_with_every_token_is_the_full_distillation() {
        let s = [0.5f32, -1.0, 2.0, 0.0, 1.0, 1.0];
        let t = [0.0f32, 0.3, -2.0, 3.0, -3.0, 0.0];
        let targets = [1, 2];
        let all = top_k(&t, 3, 3);
        assert_eq!(&all.ids[..3], &[1, 0, 2]);
        assert_eq!(&all.ids[3..], &[0, 2, 1]);
        let full = kl_forward(&s, &t, &targets, 3, 2.0, 0.7);
        let sparse = kl_topk_forward(&s, &all, &targets, 3, 2.0, 0.7);
        assert!((full - sparse).abs() < 1e-6, "{full} {sparse}");
        let (a, b) = (
            kl_backward(&s, &t, &targets, 3, 2.0, 0.7),
            kl_topk_backward(&s, &all, &targets, 3, 2.0, 0.7),
        );
        assert!(
            a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6),
            "{a:?} {b:?}"
        );
        // Top 1: the target is one token, so KL = −ln p_s(that token).
        let one = top_k(&t, 3, 1);
        let lse: f64 = s[..3].iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
        let want = (lse - s[1] as f64) as f32;
        let got = kl_topk_forward(
            &s[..3],
            &TopK {
                k: 1,
                ids: one.ids[..1].to_vec(),
                probs: one.probs[..1].to_vec(),
            },
            &[0],
            3,
            1.0,
            1.0,
        );
        assert!((got - want).abs() < 1e-6, "{got} {want}");
    }
}
