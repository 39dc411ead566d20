//! The onset of a firing: the break of the best "flat, then linear rise" fit over the current
//! life's last 2 days, or the start of the first growing life of a sawtooth.

use super::lives::LifeGrid;

/// Start of the growth: the break of the best "flat, then linear rise" (hinge) fit over the
/// current life (last 2 days); for a sawtooth, the start of the first steadily growing life.
pub(super) fn estimate_onset(
    life: &LifeGrid,
    d: &[f64],
    sawtooth: bool,
    ts: &[i64],
    _vs: &[f64],
    lives: &[(usize, usize)],
) -> Option<i64> {
    if sawtooth && lives.len() >= 3 {
        let (lo, _) = lives[lives.len() - 3];
        return ts.get(lo).copied();
    }
    let n = d.len();
    let from = n.saturating_sub(life.minutes(2 * 24 * 60));
    let k = hinge_break(&d[from..])?;
    Some(life.ts(from + k))
}

/// Index of the break of the least-squares fit y = a + b·max(0, i − k), b > 0.
pub(super) fn hinge_break(y: &[f64]) -> Option<usize> {
    let n = y.len();
    if n < 4 {
        return None;
    }
    let nf = n as f64;
    let sy: f64 = y.iter().sum();
    let syy: f64 = y.iter().map(|v| v * v).sum();
    // Suffix sums over i > k of 1, i, i², y, i·y.
    let mut best: Option<(f64, usize)> = None;
    let (mut c, mut s1, mut s2, mut sy_k, mut siy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for k in (0..n - 1).rev() {
        let i = (k + 1) as f64;
        let yi = y[k + 1];
        c += 1.0;
        s1 += i;
        s2 += i * i;
        sy_k += yi;
        siy += i * yi;
        if c < 2.0 {
            continue;
        }
        let kf = k as f64;
        let sx = s1 - kf * c;
        let sxx = s2 - 2.0 * kf * s1 + kf * kf * c;
        let sxy = siy - kf * sy_k;
        let vxx = sxx - sx * sx / nf;
        let vxy = sxy - sx * sy / nf;
        if vxx <= 0.0 {
            continue;
        }
        let b = vxy / vxx;
        if b <= 0.0 {
            continue;
        }
        let sse = (syy - sy * sy / nf) - vxy * vxy / vxx;
        if best.is_none_or(|(e, _)| sse < e) {
            best = Some((sse, k));
        }
    }
    best.map(|(_, k)| k)
}
