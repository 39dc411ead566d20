//! STL's inner loops (Cleveland et al. 1990), ported from `stlrs` 0.4.0 `src/stl_impl.rs`
//! (itself ported from the netlib Fortran; MIT OR Unlicense, Copyright (c) 2021-2026 stlrs
//! contributors), specialised to `f64`, with one change: `est`, the local weighted fit where
//! ~90% of the time goes, computes its weighted sums in one pass instead of four (and without a
//! division per point). Why not `stlrs` itself: the performance goal of issue 5 (≥ 20x
//! statsmodels) — `stlrs::est` was 66% of the bench's profile and this version is several times
//! faster. Kept numerically equal to `stlrs` (unit test, ≤ 1e-9 relative) and to statsmodels
//! (`analyze/tests/anomaly_pyref.rs`).
//!
//! Indices follow the Fortran (1-based) as in the original, to keep the port checkable line by
//! line.
#![allow(clippy::too_many_arguments)]

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
    let n = y.len();
    let work_size = n + 2 * np;
    let (work1, work) = work.split_at_mut(work_size);
    let (work2, work) = work.split_at_mut(work_size);
    let (work3, work) = work.split_at_mut(work_size);
    let (work4, work5) = work.split_at_mut(work_size);

    let mut userw = false;
    let mut k = 0;

    loop {
        onestp(
            y, n, np, ns, nt, nl, isdeg, itdeg, ildeg, nsjump, ntjump, nljump, ni, userw, rw,
            season, trend, work1, work2, work3, work4, work5,
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

fn ess(
    y: &[f64],
    n: usize,
    len: usize,
    ideg: i32,
    njump: usize,
    userw: bool,
    rw: &[f64],
    ys: &mut [f64],
    res: &mut [f64],
) {
    if n < 2 {
        ys[0] = y[0];
        return;
    }

    let mut nleft = 0;
    let mut nright = 0;

    let newnj = njump.min(n - 1);
    if len >= n {
        nleft = 1;
        nright = n;
        let mut i = 1;
        while i <= n {
            let ok = est(
                y,
                n,
                len,
                ideg,
                i as f64,
                &mut ys[i - 1],
                nleft,
                nright,
                res,
                userw,
                rw,
            );
            if !ok {
                ys[i - 1] = y[i - 1];
            }
            i += newnj;
        }
    } else if newnj == 1 {
        // newnj equal to one, len less than n
        let nsh = len.div_ceil(2);
        nleft = 1;
        nright = len;
        for i in 1..=n {
            // fitted value at i
            if i > nsh && nright != n {
                nleft += 1;
                nright += 1;
            }
            let ok = est(
                y,
                n,
                len,
                ideg,
                i as f64,
                &mut ys[i - 1],
                nleft,
                nright,
                res,
                userw,
                rw,
            );
            if !ok {
                ys[i - 1] = y[i - 1];
            }
        }
    } else {
        // newnj greater than one, len less than n
        let nsh = len.div_ceil(2);
        let mut i = 1;
        while i <= n {
            // fitted value at i
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
            let ok = est(
                y,
                n,
                len,
                ideg,
                i as f64,
                &mut ys[i - 1],
                nleft,
                nright,
                res,
                userw,
                rw,
            );
            if !ok {
                ys[i - 1] = y[i - 1];
            }
            i += newnj;
        }
    }

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
        if k != n {
            let ok = est(
                y,
                n,
                len,
                ideg,
                n as f64,
                &mut ys[n - 1],
                nleft,
                nright,
                res,
                userw,
                rw,
            );
            if !ok {
                ys[n - 1] = y[n - 1];
            }
            if k != n - 1 {
                let delta = (ys[n - 1] - ys[k - 1]) / ((n - k) as f64);
                for j in k + 1..=n - 1 {
                    ys[j - 1] = ys[k - 1] + delta * ((j - k) as f64);
                }
            }
        }
    }
}

#[inline]
fn est(
    y: &[f64],
    n: usize,
    len: usize,
    ideg: i32,
    xs: f64,
    ys: &mut f64,
    nleft: usize,
    nright: usize,
    _w: &mut [f64],
    userw: bool,
    rw: &[f64],
) -> bool {
    // Same estimate as the original `est` (tricube weights × robustness weights, normalised,
    // local linear fit evaluated at xs), in one pass over the window instead of four: weighted
    // sums of 1, u, u², y and u·y with u = j − xs, then the closed form. Offsets are centred on
    // xs so that the sums stay small (no cancellation).
    let range = (n as f64) - 1.0;
    let mut h = (xs - nleft as f64).max(nright as f64 - xs);
    if len > n {
        h += ((len - n) / 2) as f64;
    }
    let h9 = 0.999 * h;
    let h1 = 0.001 * h;
    let inv_h = if h > 0.0 { 1.0 / h } else { 0.0 };
    // Four independent accumulators (the window is summed in a different order than the
    // original, which changes the last bits only).
    let ywin = &y[nleft - 1..nright];
    let mut acc = [[0.0f64; 5]; 4];
    let x0 = nleft as f64 - xs;
    let weight = |k: usize| {
        let u = x0 + k as f64;
        let r = u.abs();
        let t = r * inv_h;
        let w = if r <= h1 { 1.0 } else { pow3(1.0 - pow3(t)) };
        let w = if r <= h9 { w } else { 0.0 };
        (u, w)
    };
    let mut k = 0;
    let m = ywin.len();
    while k + 4 <= m {
        for (lane, a) in acc.iter_mut().enumerate() {
            let (u, mut w) = weight(k + lane);
            if userw {
                w *= rw[nleft - 1 + k + lane];
            }
            let yj = ywin[k + lane];
            let wu = w * u;
            a[0] += w;
            a[1] += wu;
            a[2] += wu * u;
            a[3] += w * yj;
            a[4] += wu * yj;
        }
        k += 4;
    }
    while k < m {
        let (u, mut w) = weight(k);
        if userw {
            w *= rw[nleft - 1 + k];
        }
        let yj = ywin[k];
        let wu = w * u;
        let a = &mut acc[0];
        a[0] += w;
        a[1] += wu;
        a[2] += wu * u;
        a[3] += w * yj;
        a[4] += wu * yj;
        k += 1;
    }
    let sum = |i: usize| (acc[0][i] + acc[1][i]) + (acc[2][i] + acc[3][i]);
    let (sw, swu, swuu, swy, swuy) = (sum(0), sum(1), sum(2), sum(3), sum(4));
    if sw <= 0.0 {
        return false;
    }
    let ybar = swy / sw;
    let mut fit = ybar;
    if h > 0.0 && ideg > 0 {
        // Normalised weights: a = Σ w̃ u (weighted centre, as offset from xs), c = Σ w̃ (u − a)².
        let a = swu / sw;
        let c = swuu / sw - a * a;
        if c.max(0.0).sqrt() > 0.001 * range {
            // b = (xs − centre) / c with xs at offset 0; fit = Σ w̃ (1 + b (u − a)) y.
            let b = -a / c;
            fit = ybar + b * (swuy / sw - a * ybar);
        }
    }
    *ys = fit;
    true
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
    for _ in 0..ni {
        for i in 0..n {
            work1[i] = y[i] - trend[i];
        }

        ss(
            work1, n, np, ns, isdeg, nsjump, userw, rw, work2, work3, work4, work5, season,
        );
        fts(work2, n + 2 * np, np, work3, work1);
        ess(work3, n, nl, ildeg, nljump, false, work4, work1, work5);
        for i in 0..n {
            season[i] = work2[np + i] - work1[i];
        }
        for i in 0..n {
            work1[i] = y[i] - season[i];
        }
        ess(work1, n, nt, itdeg, ntjump, userw, rw, trend, work3);
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
    n: usize,
    np: usize,
    ns: usize,
    isdeg: i32,
    nsjump: usize,
    userw: bool,
    rw: &[f64],
    season: &mut [f64],
    work1: &mut [f64],
    work2: &mut [f64],
    work3: &mut [f64],
    work4: &mut [f64],
) {
    for j in 1..=np {
        let k = (n - j) / np + 1;

        for i in 1..=k {
            work1[i - 1] = y[(i - 1) * np + j - 1];
        }
        if userw {
            for i in 1..=k {
                work3[i - 1] = rw[(i - 1) * np + j - 1];
            }
        }
        ess(
            work1,
            k,
            ns,
            isdeg,
            nsjump,
            userw,
            work3,
            &mut work2[1..],
            work4,
        );
        let mut xs = 0.0;
        let nright = ns.min(k);
        let ok = est(
            work1,
            k,
            ns,
            isdeg,
            xs,
            &mut work2[0],
            1,
            nright,
            work4,
            userw,
            work3,
        );
        if !ok {
            work2[0] = work2[1];
        }
        xs = (k + 1) as f64;
        let nleft = 1.max(k as i32 - ns as i32 + 1) as usize;
        let ok = est(
            work1,
            k,
            ns,
            isdeg,
            xs,
            &mut work2[k + 1],
            nleft,
            k,
            work4,
            userw,
            work3,
        );
        if !ok {
            work2[k + 1] = work2[k];
        }
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
