//! STL's inner loops (Cleveland et al. 1990), ported from `stlrs` 0.4.0 `src/stl_impl.rs`
//! (itself ported from the netlib Fortran; MIT OR Unlicense, Copyright (c) 2021-2026 stlrs
//! contributors), specialised to `f64`. Why not `stlrs` itself: the performance goal of issue 5
//! (≥ 20x statsmodels) — `stlrs::est` was 66% of the bench's profile. The changes are all in how
//! `est`, the local weighted fit where nearly all the time goes, is computed:
//!
//! - its weighted sums are taken in one pass over the window instead of four (and without a
//!   division per point);
//! - the tricube weights, which depend only on where the fit is and how long the window is, not
//!   on the data, are computed once per series length and STL setting ([`Plans`], cached per
//!   thread: a batch of equal-length series builds them once) instead of at every point of every
//!   one of the 32 inner passes of a robust fit. Identical windows share one table (every
//!   interior point of a smoother has the same symmetric window), so the tables stay small and
//!   in cache. Without robustness weights (the low-pass filter always, the first outer pass) the
//!   sums of w, w·u and w·u² are data-independent too and come from the plan, and w·u from a
//!   table;
//! - the seasonal smoother runs over 8 cycle-subseries at once (`ss_lanes`): they share their
//!   fits, and their points are contiguous in the series, so the sums vectorise across
//!   subseries instead of over windows of a few points.
//!
//! The weights are the same numbers as before, and every sum is taken in the same order, so the
//! result is the same to the bit as the straightforward port (checked on random series during
//! the rewrite; equal to `stlrs` to ≤ 1e-9 relative, unit test in `stl.rs`, and to statsmodels,
//! `analyze/tests/anomaly_pyref.rs`). Same bits means the detector's verdicts cannot change.
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
    /// `table[i] · u` at the same places (u: the point's offset from the fitted x), as the
    /// original computes `w · u` when there are no robustness weights.
    wu: Vec<f64>,
    /// The offsets u themselves (exact integers).
    u: Vec<f64>,
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
    /// The sums of w, w·u and w·u² over the window without robustness weights (they do not
    /// depend on the data), as [`weighted_sums`] adds them up.
    plain: [f64; 3],
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
        let (table, wu, ut) = (&mut self.table, &mut self.wu, &mut self.u);
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
                wu.extend(
                    table[at..]
                        .iter()
                        .enumerate()
                        .map(|(k, w)| w * (x0 + k as f64)),
                );
                ut.extend((0..m).map(|k| x0 + k as f64));
                at
            });
        let w = &self.table[w_at..w_at + m];
        let acc = weighted_sums::<false>(w, w, w, &self.u[w_at..w_at + m]);
        let sum = |q: usize| (acc[q][0] + acc[q][1]) + (acc[q][2] + acc[q][3]);
        Fit {
            lo: nleft - 1,
            m,
            x0,
            h,
            w_at,
            plain: [sum(0), sum(1), sum(2)],
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
    fn run(&self, weights: &Weights, y: &[f64], userw: bool, rw: &[f64], ys: &mut [f64]) {
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
    weights: &Weights,
    fit: &Fit,
    y: &[f64],
    range: f64,
    ideg: i32,
    userw: bool,
    rw: &[f64],
) -> Option<f64> {
    let window = fit.w_at..fit.w_at + fit.m;
    let ywin = &y[fit.lo..fit.lo + fit.m];
    let sums = if userw {
        let acc = weighted_sums::<true>(
            ywin,
            &weights.table[window.clone()],
            &rw[fit.lo..fit.lo + fit.m],
            &weights.u[window],
        );
        let sum = |q: usize| (acc[q][0] + acc[q][1]) + (acc[q][2] + acc[q][3]);
        [sum(0), sum(1), sum(2), sum(3), sum(4)]
    } else {
        // Without robustness weights only the sums with y depend on the data.
        let acc = y_sums(ywin, &weights.table[window.clone()], &weights.wu[window]);
        let sum = |q: usize| (acc[q][0] + acc[q][1]) + (acc[q][2] + acc[q][3]);
        let [sw, swu, swuu] = fit.plain;
        [sw, swu, swuu, sum(0), sum(1)]
    };
    fitted(sums, fit.h, ideg, range)
}

/// The sums of w·y and w·u·y of [`weighted_sums`] without robustness weights (`wu` = w·u
/// precomputed), lane by lane as there.
#[inline(always)]
fn y_sums(ywin: &[f64], w: &[f64], wu: &[f64]) -> [[f64; 4]; 2] {
    let mut acc = [[0.0f64; 4]; 2];
    let mut y4 = ywin.chunks_exact(4);
    let mut w4 = w.chunks_exact(4);
    let mut wu4 = wu.chunks_exact(4);
    for ((yc, wc), wuc) in (&mut y4).zip(&mut w4).zip(&mut wu4) {
        for lane in 0..4 {
            acc[0][lane] += wc[lane] * yc[lane];
            acc[1][lane] += wuc[lane] * yc[lane];
        }
    }
    for ((yj, w), wu) in y4
        .remainder()
        .iter()
        .zip(w4.remainder())
        .zip(wu4.remainder())
    {
        acc[0][0] += w * yj;
        acc[1][0] += wu * yj;
    }
    acc
}

/// The local fit from the weighted sums of 1, u, u², y and u·y (`None` when every weight is 0).
#[inline(always)]
fn fitted(sums: [f64; 5], h: f64, ideg: i32, range: f64) -> Option<f64> {
    let [sw, swu, swuu, swy, swuy] = sums;
    if sw <= 0.0 {
        return None;
    }
    let ybar = swy / sw;
    let mut fitted = ybar;
    if h > 0.0 && ideg > 0 {
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
/// (`USERW`) or `w0`, u the points' offsets from the fitted x (`ut`): point `k` of the window
/// goes to lane `k % 4`, the last `len % 4` points to lane 0.
#[inline(always)]
fn weighted_sums<const USERW: bool>(
    ywin: &[f64],
    w0: &[f64],
    rw: &[f64],
    ut: &[f64],
) -> [[f64; 4]; 5] {
    let mut acc = [[0.0f64; 4]; 5];
    let mut add = |q: usize, l: usize, v: f64| acc[q][l] += v;
    let m = ywin.len().min(w0.len()).min(rw.len()).min(ut.len());
    let (ywin, w0, rw, ut) = (&ywin[..m], &w0[..m], &rw[..m], &ut[..m]);
    for (((yc, wc), rc), uc) in ywin
        .chunks_exact(4)
        .zip(w0.chunks_exact(4))
        .zip(rw.chunks_exact(4))
        .zip(ut.chunks_exact(4))
    {
        for l in 0..4 {
            let w = if USERW { wc[l] * rc[l] } else { wc[l] };
            let wu = w * uc[l];
            add(0, l, w);
            add(1, l, wu);
            add(2, l, wu * uc[l]);
            add(3, l, w * yc[l]);
            add(4, l, wu * yc[l]);
        }
    }
    let full = m / 4 * 4;
    for k in full..m {
        let w = if USERW { w0[k] * rw[k] } else { w0[k] };
        let u = ut[k];
        let wu = w * u;
        add(0, 0, w);
        add(1, 0, wu);
        add(2, 0, wu * u);
        add(3, 0, w * ywin[k]);
        add(4, 0, wu * ywin[k]);
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
    let weights = &plans.weights;
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

/// [`fitted`] on `L` fits at once (the same operations, all lanes computed, then selected): the
/// fitted values and whether each exists (a weight was not 0).
#[inline(always)]
fn fitted_lanes<const L: usize, const DEG1: bool>(
    [sw, swu, swuu, swy, swuy]: [[f64; L]; 5],
    h: f64,
    range: f64,
) -> ([f64; L], [bool; L]) {
    let mut out = [0.0; L];
    let mut ok = [false; L];
    for l in 0..L {
        // As `fitted`: only a sum ≤ 0 has no fit.
        ok[l] = sw[l] > 0.0 || sw[l].is_nan();
        out[l] = swy[l] / sw[l];
    }
    if DEG1 && h > 0.0 {
        for l in 0..L {
            let ybar = out[l];
            let a = swu[l] / sw[l];
            let c = swuu[l] / sw[l] - a * a;
            let b = -a / c;
            let line = ybar + b * (swuy[l] / sw[l] - a * ybar);
            if c.max(0.0).sqrt() > 0.001 * range {
                out[l] = line;
            }
        }
    }
    (out, ok)
}

/// Cycle-subseries side by side in [`ss`]'s fast path (four SSE2 registers).
const SS_LANES: usize = 8;

/// The seasonal smoothing: each cycle-subseries (the points `j`, `j + np`, `j + 2 np`, …)
/// smoothed by LOESS and extended by one point at each end (`season` gets `k + 2` points per
/// subseries of `k`).
///
/// Every subseries of the same length has the same fits, so when every point is fitted (no
/// jump, the statsmodels setting) the subseries are smoothed [`SS_LANES`] at a time (`y` and
/// `rw` read in rows of `np`, contiguous across subseries): the same sums in the same order as
/// one by one, vectorised across subseries instead of over a window of a few points.
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
    let weights = &plans.weights;
    let mut j = 1;
    while j <= np {
        let k = (n - j) / np + 1;
        let Some(plan) = plans.seasonal.iter().find(|p| p.ess.n == k) else {
            j += 1;
            continue;
        };
        // Subseries j..j + SS_LANES all of length k (lengths only drop, by one, along j).
        if plan.ess.newnj == 1
            && k >= 2
            && j + SS_LANES - 1 <= np
            && (n - (j + SS_LANES - 1)) / np + 1 == k
        {
            let args = (y, rw, &mut *season, weights, plan, np, j - 1);
            match (userw, plan.ess.ideg > 0) {
                (false, false) => ss_lanes::<false, false>(args),
                (false, true) => ss_lanes::<false, true>(args),
                (true, false) => ss_lanes::<true, false>(args),
                (true, true) => ss_lanes::<true, true>(args),
            }
            j += SS_LANES;
            continue;
        }

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
        j += 1;
    }
}

/// [`ss`] on the [`SS_LANES`] subseries starting at column `j0` (0-based), all of `plan.ess.n`
/// points, every point fitted. `DEG1`: local lines (the sums of u, u² and u·y are needed).
fn ss_lanes<const USERW: bool, const DEG1: bool>(
    (y, rw, season, weights, plan, np, j0): (
        &[f64],
        &[f64],
        &mut [f64],
        &Weights,
        &SeasonalPlan,
        usize,
        usize,
    ),
) {
    const L: usize = SS_LANES;
    let k = plan.ess.n;
    let range = k as f64 - 1.0;
    let lanes = |fit: &Fit| {
        // Per window lane of `weighted_sums` (index 0-3), per subseries: the sums of w, w·y
        // and (DEG1) w·u, w·u², w·u·y. Without robustness weights those of w, w·u and w·u² are
        // the plan's.
        let mut sw = [[0.0f64; L]; 4];
        let mut swy = [[0.0f64; L]; 4];
        let mut swu = [[0.0f64; L]; 4];
        let mut swuu = [[0.0f64; L]; 4];
        let mut swuy = [[0.0f64; L]; 4];
        let w0 = &weights.table[fit.w_at..fit.w_at + fit.m];
        let full = fit.m / 4 * 4;
        for (mm, &w0) in w0.iter().enumerate() {
            let wl = if mm < full { mm % 4 } else { 0 };
            let row = (fit.lo + mm) * np + j0;
            let (Some(yr), Some(rr)) = (y.get(row..row + L), rw.get(row..row + L)) else {
                continue;
            };
            let (Ok(yr), Ok(rr)) = (<&[f64; L]>::try_from(yr), <&[f64; L]>::try_from(rr)) else {
                continue;
            };
            let u = fit.x0 + mm as f64;
            let mut w = [w0; L];
            if USERW {
                for l in 0..L {
                    w[l] = w0 * rr[l];
                }
            }
            let (sw, swy) = (&mut sw[wl], &mut swy[wl]);
            if USERW {
                for l in 0..L {
                    sw[l] += w[l];
                }
            }
            for l in 0..L {
                swy[l] += w[l] * yr[l];
            }
            if DEG1 {
                let (swu, swuu, swuy) = (&mut swu[wl], &mut swuu[wl], &mut swuy[wl]);
                let mut wu = [0.0; L];
                for l in 0..L {
                    wu[l] = w[l] * u;
                }
                if USERW {
                    for l in 0..L {
                        swu[l] += wu[l];
                        swuu[l] += wu[l] * u;
                    }
                }
                for l in 0..L {
                    swuy[l] += wu[l] * yr[l];
                }
            }
        }
        let sum = |s: &[[f64; L]; 4]| {
            let mut t = [0.0; L];
            for l in 0..L {
                t[l] = (s[0][l] + s[1][l]) + (s[2][l] + s[3][l]);
            }
            t
        };
        let plain = |v: f64| [v; L];
        let sums = if USERW {
            [sum(&sw), sum(&swu), sum(&swuu), sum(&swy), sum(&swuy)]
        } else {
            let [a, b, c] = fit.plain;
            [plain(a), plain(b), plain(c), sum(&swy), sum(&swuy)]
        };
        fitted_lanes::<L, DEG1>(sums, fit.h, range)
    };
    // The smoother: point i of the subseries goes to row i + 1 of `season`.
    for (i, fit) in &plan.ess.fits {
        let (out, ok) = lanes(fit);
        for l in 0..L {
            season[(i + 1) * np + j0 + l] = if ok[l] { out[l] } else { y[i * np + j0 + l] };
        }
    }
    // The extensions (falling back on the smoothed end points).
    for (fit, row, fallback) in [(&plan.before, 0, 1), (&plan.after, k + 1, k)] {
        let (out, ok) = lanes(fit);
        for l in 0..L {
            season[row * np + j0 + l] = if ok[l] {
                out[l]
            } else {
                season[fallback * np + j0 + l]
            };
        }
    }
}

fn pow2(x: f64) -> f64 {
    x * x
}

fn pow3(x: f64) -> f64 {
    x * x * x
}
