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
    let lse = move |x: &[f32]| {
        let m = x
            .iter()
            .map(|&v| v as f64 * inv)
            .fold(f64::NEG_INFINITY, f64::max);
        m + x
            .iter()
            .map(|&v| (v as f64 * inv - m).exp())
            .sum::<f64>()
            .ln()
    };
    (0..targets.len())
        .filter(|&r| targets[r] >= 0)
        .map(move |r| {
            let (s, t) = (&student[r * v..(r + 1) * v], &teacher[r * v..(r + 1) * v]);
            (r, s, t, lse(s), lse(t))
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
}
