//! STL's inner loops (Cleveland et al. 1990), ported from `stlrs` 0.4.0 `src/stl_impl.rs`
//! (itself ported from the netlib Fortran; MIT OR Unlicense, Copyright (c) 2021-2026 stlrs
//! contributors), specialised to `f64`. Why not `stlrs` itself: the performance goal of issue 5
//! (≥ 20x statsmodels) — `stlrs::est` was 66% of the bench's profile. Two changes, both in `est`,
//! the local weighted fit where nearly all the time goes:
//!
//! - its weighted sums are taken in one pass over the window instead of four (and without a
//!   division per point);
//! - the tricube weights, which depend only on where the fit is and how long the window is, not
//!   on the data, are computed once per series length and STL setting ([`Plans`], cached per
//!   thread: a batch of equal-length series builds them once) instead of at every point of every
//!   one of the 32 inner passes of a robust fit. Identical windows share one table (every
//!   interior point of a smoother has the same symmetric window), so the tables stay small
//!   (~80 kB for a week of 5-minute points) and in cache. The hot loop is then a branch-free
//!   multiply-add over three slices.
//!
//! The weights are the same numbers as before, and the sums are taken in the same order, so the
//! result is the same to the bit as the previous version (which is equal to `stlrs` to ≤ 1e-9
//! relative, unit test in `stl.rs`, and to statsmodels, `analyze/tests/anomaly_pyref.rs`).
//!
//! Indices follow the Fortran (1-based) as in the original where the port is kept line by line.
#![allow(clippy::too_many_arguments)]

use std::cell::RefCell;
use std::collections::HashMap;

/// What a set of [`Plans`] depends on: the series length and every STL setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PlanKey {
    n: usize,
    np: usize,
    ns: usize,
    nt: usize,
    nl: usize,
    isdeg: i32,
    itdeg: i32,
    ildeg: i32,
    nsjump: usize,
    ntjump: usize,
    nljump: usize,
}

thread_local! {
    /// The plans of the last series length and settings this thread decomposed.
    static PLANS: RefCell<Option<Plans>> = const { RefCell::new(None) };
}

pub(crate) fn stl(
    y: &[f64],
    np: usize,
    ns: usize,
    nt: usize,
    nl: usize,
    isdeg: i32,
    itdeg: i32,
    ildeg: i32,
    nsjump: usize,
    ntjump: usize,
    nljump: usize,
    ni: usize,
    no: usize,
    rw: &mut [f64],
    season: &mut [f64],
    trend: &mut [f64],
    work: &mut [f64],
) {
    let key = PlanKey {
        n: y.len(),
        np,
        ns,
        nt,
        nl,
        isdeg,
        itdeg,
        ildeg,
        nsjump,
        ntjump,
        nljump,
    };
    PLANS.with_borrow_mut(|cached| {
        let plans = match cached {
            Some(p) if p.key == key => p,
            _ => cached.insert(Plans::new(key)),
        };
        stl_planned(y, plans, ni, no, rw, season, trend, work);
    });
}

fn stl_planned(
    y: &[f64],
    plans: &Plans,
    ni: usize,
    no: usize,
    rw: &mut [f64],
    season: &mut [f64],
    trend: &mut [f64],
    work: &mut [f64],
) {
    let n = y.len();
    let np = plans.key.np;
    let work_size = n + 2 * np;
    let (work1, work) = work.split_at_mut(work_size);
    let (work2, work) = work.split_at_mut(work_size);
    let (work3, work) = work.split_at_mut(work_size);
    let (work4, work5) = work.split_at_mut(work_size);

    let mut userw = false;
    let mut k = 0;

    loop {
        onestp(
            y, plans, ni, userw, rw, season, trend, work1, work2, work3, work4, work5,
        );
        k += 1;
        if k > no {
            break;
        }
        for i in 0..n {
            work1[i] = trend[i] + season[i];
        }
        rwts(y, n, work1, rw);
        userw = true;
    }

    if no == 0 {
        for v in rw.iter_mut() {
            *v = 1.0;
        }
    }
}

/// The data-independent part of a series' STL: every local fit (`est`) of every smoother, with
/// its tricube weights.
struct Plans {
    key: PlanKey,
    weights: Weights,
    /// Per cycle-subseries length (at most two: `n / np` and one more).
    seasonal: Vec<SeasonalPlan>,
    low_pass: EssPlan,
    trend: EssPlan,
}

impl Plans {
    fn new(key: PlanKey) -> Self {
        let mut weights = Weights::default();
        let mut seasonal: Vec<SeasonalPlan> = Vec::new();
        for j in 1..=key.np {
            let k = (key.n - j) / key.np + 1;
            if seasonal.iter().all(|p| p.ess.n != k) {
                seasonal.push(SeasonalPlan::new(
                    &mut weights,
                    k,
                    key.ns,
                    key.isdeg,
                    key.nsjump,
                ));
            }
        }
        let low_pass = EssPlan::new(&mut weights, key.n, key.nl, key.ildeg, key.nljump);
        let trend = EssPlan::new(&mut weights, key.n, key.nt, key.itdeg, key.ntjump);
        Self {
            key,
            weights,
            seasonal,
            low_pass,
            trend,
        }
    }
}

/// Tricube weights of the distinct windows, one after the other.
#[derive(Default)]
struct Weights {
    table: Vec<f64>,
    /// (window length, offset of its first point from the fitted x, h) → offset in `table`.
    index: HashMap<(usize, u64, u64), usize>,
}

/// One local fit: the window `y[lo..lo + m]` around the fitted x, and its tricube weights at
/// `weights.table[w_at..w_at + m]`.
#[derive(Debug, Clone, Copy)]
struct Fit {
    lo: usize,
    m: usize,
    /// Offset of the window's first point from the fitted x (`nleft - xs`).
    x0: f64,
    h: f64,
    w_at: usize,
}

impl Weights {
    /// The fit of `est(y, n, len, ideg, xs, nleft, nright)`: the same window and weights (the
    /// weights exactly as the original computes them point by point).
    fn fit(&mut self, n: usize, len: usize, xs: f64, nleft: usize, nright: usize) -> Fit {
        let mut h = (xs - nleft as f64).max(nright as f64 - xs);
        if len > n {
            h += ((len - n) / 2) as f64;
        }
        let m = nright + 1 - nleft;
        let x0 = nleft as f64 - xs;
        let table = &mut self.table;
        let w_at = *self
            .index
            .entry((m, x0.to_bits(), h.to_bits()))
            .or_insert_with(|| {
                let at = table.len();
                let h9 = 0.999 * h;
                let h1 = 0.001 * h;
                let inv_h = if h > 0.0 { 1.0 / h } else { 0.0 };
                table.extend((0..m).map(|k| {
                    let r = (x0 + k as f64).abs();
                    let w = if r <= h1 {
                        1.0
                    } else {
                        pow3(1.0 - pow3(r * inv_h))
                    };
                    if r <= h9 { w } else { 0.0 }
                }));
                at
            });
        Fit {
            lo: nleft - 1,
            m,
            x0,
            h,
            w_at,
        }
    }
}

/// The fits of one `ess` call (a LOESS smoother over `n` points, window `len`, evaluated every
/// `njump` points and interpolated in between).
struct EssPlan {
    n: usize,
    newnj: usize,
    ideg: i32,
    /// (0-based output index, its fit).
    fits: Vec<(usize, Fit)>,
}

impl EssPlan {
    /// The fits the original `ess` makes, in the same places.
    fn new(weights: &mut Weights, n: usize, len: usize, ideg: i32, njump: usize) -> Self {
        let mut plan = Self {
            n,
            newnj: njump.min(n.saturating_sub(1)).max(1),
            ideg,
            fits: Vec::new(),
        };
        if n < 2 {
            return plan;
        }
        let newnj = plan.newnj;
        let mut fit = |i: usize, nleft: usize, nright: usize| {
            (i - 1, weights.fit(n, len, i as f64, nleft, nright))
        };
        let mut nleft = 0;
        let mut nright = 0;
        if len >= n {
            nleft = 1;
            nright = n;
            let mut i = 1;
            while i <= n {
                plan.fits.push(fit(i, nleft, nright));
                i += newnj;
            }
        } else if newnj == 1 {
            let nsh = len.div_ceil(2);
            nleft = 1;
            nright = len;
            for i in 1..=n {
                if i > nsh && nright != n {
                    nleft += 1;
                    nright += 1;
                }
                plan.fits.push(fit(i, nleft, nright));
            }
        } else {
            let nsh = len.div_ceil(2);
            let mut i = 1;
            while i <= n {
                if i < nsh {
                    nleft = 1;
                    nright = len;
                } else if i > n - nsh {
                    nleft = n - len + 1;
                    nright = n;
                } else {
                    nleft = i - nsh + 1;
                    nright = len + i - nsh;
                }
                plan.fits.push(fit(i, nleft, nright));
                i += newnj;
            }
        }
        if newnj != 1 {
            let k = ((n - 1) / newnj) * newnj + 1;
            if k != n {
                // With the window of the last fit above, as the original.
                plan.fits.push(fit(n, nleft, nright));
            }
        }
        plan
    }

    /// `ess`: smooths `y` (`n` points) into `ys`.
    fn run(&self, weights: &[f64], y: &[f64], userw: bool, rw: &[f64], ys: &mut [f64]) {
        let n = self.n;
        if n < 2 {
            ys[0] = y[0];
            return;
        }
        let range = n as f64 - 1.0;
        for &(i, fit) in &self.fits {
            ys[i] = est(weights, &fit, y, range, self.ideg, userw, rw).unwrap_or(y[i]);
        }
        let newnj = self.newnj;
        if newnj != 1 {
            let mut i = 1;
            while i <= n - newnj {
                let delta = (ys[i + newnj - 1] - ys[i - 1]) / (newnj as f64);
                for j in i + 1..=i + newnj - 1 {
                    ys[j - 1] = ys[i - 1] + delta * ((j - i) as f64);
                }
                i += newnj;
            }
            let k = ((n - 1) / newnj) * newnj + 1;
            if k != n && k != n - 1 {
                let delta = (ys[n - 1] - ys[k - 1]) / ((n - k) as f64);
                for j in k + 1..=n - 1 {
                    ys[j - 1] = ys[k - 1] + delta * ((j - k) as f64);
                }
            }
        }
    }
}

/// The fits of one cycle-subseries of `k` points: the smoother over it, and the two
/// extrapolations a period before its first and after its last point.
struct SeasonalPlan {
    ess: EssPlan,
    before: Fit,
    after: Fit,
}

impl SeasonalPlan {
    fn new(weights: &mut Weights, k: usize, ns: usize, isdeg: i32, nsjump: usize) -> Self {
        Self {
            ess: EssPlan::new(weights, k, ns, isdeg, nsjump),
            before: weights.fit(k, ns, 0.0, 1, ns.min(k)),
            after: weights.fit(
                k,
                ns,
                (k + 1) as f64,
                1.max(k as i32 - ns as i32 + 1) as usize,
                k,
            ),
        }
    }
}

/// The local weighted fit at one point (`est`): tricube weights × robustness weights (when
/// `userw`), normalised, a local constant (`ideg` 0) or line (1) evaluated at the fitted x.
/// `None` when every weight is zero.
///
/// One pass over the window: weighted sums of 1, u, u², y and u·y with u the offset from the
/// fitted x (so that the sums stay small, no cancellation), then the closed form. Four
/// independent accumulators, the window's tail in the first.
#[inline]
fn est(
    weights: &[f64],
    fit: &Fit,
    y: &[f64],
    range: f64,
    ideg: i32,
    userw: bool,
    rw: &[f64],
) -> Option<f64> {
    let ywin = &y[fit.lo..fit.lo + fit.m];
    let wwin = &weights[fit.w_at..fit.w_at + fit.m];
    let acc = if userw {
        weighted_sums::<true>(ywin, wwin, &rw[fit.lo..fit.lo + fit.m], fit.x0)
    } else {
        weighted_sums::<false>(ywin, wwin, wwin, fit.x0)
    };
    let sum = |q: usize| (acc[q][0] + acc[q][1]) + (acc[q][2] + acc[q][3]);
    let (sw, swu, swuu, swy, swuy) = (sum(0), sum(1), sum(2), sum(3), sum(4));
    if sw <= 0.0 {
        return None;
    }
    let ybar = swy / sw;
    let mut fitted = ybar;
    if fit.h > 0.0 && ideg > 0 {
        // Normalised weights: a = Σ w̃ u (weighted centre, as offset from xs), c = Σ w̃ (u − a)².
        let a = swu / sw;
        let c = swuu / sw - a * a;
        if c.max(0.0).sqrt() > 0.001 * range {
            // b = (xs − centre) / c with xs at offset 0; fit = Σ w̃ (1 + b (u − a)) y.
            let b = -a / c;
            fitted = ybar + b * (swuy / sw - a * ybar);
        }
    }
    Some(fitted)
}

/// Lane-wise sums of w, w·u, w·u², w·y, w·u·y over a window (`acc[q][lane]`), w = `w0 · rw`
/// (`USERW`) or `w0`, u = `x0 + k`: point `k` of the window goes to lane `k % 4`, the last
/// `len % 4` points to lane 0. (Quantity-major, so that two lanes are one SSE2 register.)
#[inline(always)]
fn weighted_sums<const USERW: bool>(
    ywin: &[f64],
    w0: &[f64],
    rw: &[f64],
    x0: f64,
) -> [[f64; 4]; 5] {
    let mut acc = [[0.0f64; 4]; 5];
    let mut y4 = ywin.chunks_exact(4);
    let mut w4 = w0.chunks_exact(4);
    let mut r4 = rw.chunks_exact(4);
    // u stays an exact integer: the same values as x0 + k.
    let mut u = x0;
    for ((yc, wc), rc) in (&mut y4).zip(&mut w4).zip(&mut r4) {
        let mut w = [0.0; 4];
        let mut uu = [0.0; 4];
        for lane in 0..4 {
            w[lane] = if USERW { wc[lane] * rc[lane] } else { wc[lane] };
            uu[lane] = u + lane as f64;
        }
        for lane in 0..4 {
            let wu = w[lane] * uu[lane];
            acc[0][lane] += w[lane];
            acc[1][lane] += wu;
            acc[2][lane] += wu * uu[lane];
            acc[3][lane] += w[lane] * yc[lane];
            acc[4][lane] += wu * yc[lane];
        }
        u += 4.0;
    }
    for (k, ((yj, w), r)) in y4
        .remainder()
        .iter()
        .zip(w4.remainder())
        .zip(r4.remainder())
        .enumerate()
    {
        let w = if USERW { w * r } else { *w };
        let u = u + k as f64;
        let wu = w * u;
        acc[0][0] += w;
        acc[1][0] += wu;
        acc[2][0] += wu * u;
        acc[3][0] += w * yj;
        acc[4][0] += wu * yj;
    }
    acc
}

fn fts(x: &[f64], n: usize, np: usize, trend: &mut [f64], work: &mut [f64]) {
    ma(x, n, np, trend);
    ma(trend, n - np + 1, np, work);
    ma(work, n - 2 * np + 2, 3, trend);
}

fn ma(x: &[f64], n: usize, len: usize, ave: &mut [f64]) {
    let newn = n - len + 1;
    let flen = len as f64;

    // get the first average
    let mut v: f64 = x.iter().take(len).copied().sum();
    ave[0] = v / flen;

    if newn > 1 {
        for (m, aj) in ave.iter_mut().take(newn).skip(1).enumerate() {
            // window down the array
            v = v - x[m] + x[len + m];
            *aj = v / flen;
        }
    }
}

fn onestp(
    y: &[f64],
    plans: &Plans,
    ni: usize,
    userw: bool,
    rw: &mut [f64],
    season: &mut [f64],
    trend: &mut [f64],
    work1: &mut [f64],
    work2: &mut [f64],
    work3: &mut [f64],
    work4: &mut [f64],
    work5: &mut [f64],
) {
    let n = y.len();
    let np = plans.key.np;
    let weights = &plans.weights.table[..];
    for _ in 0..ni {
        for i in 0..n {
            work1[i] = y[i] - trend[i];
        }

        ss(&work1[..n], plans, userw, rw, work2, work3, work4, work5);
        fts(work2, n + 2 * np, np, work3, work1);
        plans.low_pass.run(weights, work3, false, work4, work1);
        for i in 0..n {
            season[i] = work2[np + i] - work1[i];
        }
        for i in 0..n {
            work1[i] = y[i] - season[i];
        }
        plans.trend.run(weights, work1, userw, rw, trend);
    }
}

fn rwts(y: &[f64], n: usize, fit: &[f64], rw: &mut [f64]) {
    for i in 0..n {
        rw[i] = (y[i] - fit[i]).abs();
    }

    let mid1 = (n - 1) / 2;
    let mid2 = n / 2;

    // The two middle order statistics by selection instead of a full sort (same values).
    let (lower, m2, _) = rw[..n].select_nth_unstable_by(mid2, f64::total_cmp);
    let m2 = *m2;
    let m1 = if mid1 == mid2 {
        m2
    } else {
        lower.iter().copied().fold(f64::NEG_INFINITY, f64::max)
    };

    let cmad = 3.0 * (m1 + m2); // 6 * median abs resid
    let c9 = 0.999 * cmad;
    let c1 = 0.001 * cmad;

    for i in 0..n {
        let r = (y[i] - fit[i]).abs();
        if r <= c1 {
            rw[i] = 1.0;
        } else if r <= c9 {
            rw[i] = pow2(1.0 - pow2(r / cmad));
        } else {
            rw[i] = 0.0;
        }
    }
}

fn ss(
    y: &[f64],
    plans: &Plans,
    userw: bool,
    rw: &[f64],
    season: &mut [f64],
    work1: &mut [f64],
    work2: &mut [f64],
    work3: &mut [f64],
) {
    let n = y.len();
    let np = plans.key.np;
    let weights = &plans.weights.table[..];
    for j in 1..=np {
        let k = (n - j) / np + 1;
        let Some(plan) = plans.seasonal.iter().find(|p| p.ess.n == k) else {
            continue;
        };

        for i in 1..=k {
            work1[i - 1] = y[(i - 1) * np + j - 1];
        }
        if userw {
            for i in 1..=k {
                work3[i - 1] = rw[(i - 1) * np + j - 1];
            }
        }
        plan.ess.run(weights, work1, userw, work3, &mut work2[1..]);
        let range = k as f64 - 1.0;
        let isdeg = plan.ess.ideg;
        work2[0] =
            est(weights, &plan.before, work1, range, isdeg, userw, work3).unwrap_or(work2[1]);
        work2[k + 1] =
            est(weights, &plan.after, work1, range, isdeg, userw, work3).unwrap_or(work2[k]);
        for m in 1..=k + 2 {
            season[(m - 1) * np + j - 1] = work2[m - 1];
        }
    }
}

fn pow2(x: f64) -> f64 {
    x * x
}

fn pow3(x: f64) -> f64 {
    x * x * x
}
