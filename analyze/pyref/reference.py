#!/usr/bin/env python3
"""Python references for the STL + Isolation Forest detector (analyze/src/anomaly/).

Run by analyze/tests/anomaly_pyref.rs and analyze/benches/stl_iforest.rs from a venv with
numpy, scipy, statsmodels and scikit-learn (tests/run creates /var/tmp/leakhound-pyref).

  reference.py stl IN.json OUT.json
      IN: {"settings": {period, seasonal, trend, low_pass, seasonal_deg, seasonal_jump,
           trend_jump, low_pass_jump, inner_iter, outer_iter, robust}, "series": [[...], ...]}
      OUT: {"results": [{"trend": [...], "seasonal": [...], "resid": [...]}, ...]}
  reference.py iforest IN.json OUT.json
      IN: {"n_features": F, "rows": [flat row-major], "n_trees": T, "max_samples": S, "seeds": [..]}
      OUT: {"scores": [[-score_samples for seed 0], [... seed 1], ...]}
  reference.py bench STL_IN.bin N_SERIES N_POINTS PY_SERIES FEATURES.bin N_FEATURES SETTINGS.json
      STL on the first PY_SERIES series (f64 little-endian, N_SERIES x N_POINTS) with the settings,
      IsolationForest fit + score_samples on all feature rows; prints one JSON line with the
      timings and the peak RSS (getrusage).
  reference.py replay ANCHORS.bin ANCHORS.json
      The product path's fits (analyze/benches/stl_iforest.rs, `anomaly::replay_anchors`): per
      anchor [stl_len, rows, forest, evals] of the JSON, its STL input then its training rows in
      the .bin (f64 little-endian); prints one JSON line with the timings.
"""

import json
import resource
import sys
import time

import numpy as np


def stl_fit(y, s):
    from statsmodels.tsa.seasonal import STL

    return STL(
        np.asarray(y, dtype=np.float64),
        period=s["period"],
        seasonal=s["seasonal"],
        trend=s["trend"],
        low_pass=s["low_pass"],
        seasonal_deg=s["seasonal_deg"],
        trend_deg=1,
        low_pass_deg=1,
        robust=s["robust"],
        seasonal_jump=s["seasonal_jump"],
        trend_jump=s["trend_jump"],
        low_pass_jump=s["low_pass_jump"],
    ).fit(inner_iter=s["inner_iter"], outer_iter=s["outer_iter"])


def cmd_stl(inp, out):
    with open(inp) as f:
        req = json.load(f)
    results = []
    for y in req["series"]:
        r = stl_fit(y, req["settings"])
        results.append(
            {
                "trend": np.asarray(r.trend).tolist(),
                "seasonal": np.asarray(r.seasonal).tolist(),
                "resid": np.asarray(r.resid).tolist(),
            }
        )
    with open(out, "w") as f:
        json.dump({"results": results}, f)


def cmd_iforest(inp, out):
    from sklearn.ensemble import IsolationForest

    with open(inp) as f:
        req = json.load(f)
    x = np.asarray(req["rows"], dtype=np.float64).reshape(-1, req["n_features"])
    scores = []
    for seed in req["seeds"]:
        f = IsolationForest(
            n_estimators=req["n_trees"], max_samples=req["max_samples"], random_state=seed
        ).fit(x)
        scores.append((-f.score_samples(x)).tolist())
    with open(out, "w") as f:
        json.dump({"scores": scores}, f)


def cmd_bench(stl_in, n_series, n_points, py_series, feat_in, n_features, settings_path):
    from sklearn.ensemble import IsolationForest

    n_series, n_points, py_series, n_features = map(int, (n_series, n_points, py_series, n_features))
    with open(settings_path) as f:
        s = json.load(f)
    t0 = time.perf_counter()
    y = np.fromfile(stl_in, dtype="<f8").reshape(n_series, n_points)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(min(py_series, n_series)):
        stl_fit(y[i], s)
    stl_s = time.perf_counter() - t0
    x = np.fromfile(feat_in, dtype="<f8").reshape(-1, n_features)
    t0 = time.perf_counter()
    forest = IsolationForest(n_estimators=s["n_trees"], max_samples=s["max_samples"], random_state=0).fit(x)
    scores = forest.score_samples(x)
    if_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "load_s": load_s,
                "stl_s": stl_s,
                "stl_series": min(py_series, n_series),
                "iforest_s": if_s,
                "rows": int(x.shape[0]),
                "score_mean": float(-scores.mean()),
                "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )


def cmd_replay(data_in, meta_in):
    """The product path's fits: per anchor, STL on its 5-minute series (when it holds two full
    days, as statsmodels needs), an IsolationForest fitted on its training rows, the gate's
    quantile from at most 256 of them, and one row scored per evaluation (batched per anchor)."""
    from sklearn.ensemble import IsolationForest

    with open(meta_in) as f:
        m = json.load(f)
    s = m["settings"]
    nf = m["n_features"]
    data = np.fromfile(data_in, dtype="<f8")
    at = 0
    stl_s = fit_s = score_s = 0.0
    stl_fits = 0
    t_all = time.perf_counter()
    for stl_len, rows, forest, evals in m["anchors"]:
        y = data[at : at + stl_len]
        at += stl_len
        x = data[at : at + rows * nf].reshape(rows, nf)
        at += rows * nf
        t0 = time.perf_counter()
        if stl_len >= 2 * s["period"]:
            stl_fit(y, s)
            stl_fits += 1
        stl_s += time.perf_counter() - t0
        if not forest:
            continue
        t0 = time.perf_counter()
        f = IsolationForest(
            n_estimators=s["n_trees"], max_samples=min(s["max_samples"], rows), random_state=0
        ).fit(x)
        fit_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        stride = max(1, -(-rows // 256))
        f.score_samples(x[::stride])
        # One row per evaluation, all of an anchor's in one call (ours scores each on its own,
        # as a live run must; batching them favours Python).
        if evals:
            f.score_samples(x[np.arange(evals) % rows])
        score_s += time.perf_counter() - t0
    print(
        json.dumps(
            {
                "total_s": time.perf_counter() - t_all,
                "stl_s": stl_s,
                "stl_fits": stl_fits,
                "fit_s": fit_s,
                "score_s": score_s,
                "anchors": len(m["anchors"]),
                "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            }
        )
    )


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "stl":
        cmd_stl(*args)
    elif cmd == "iforest":
        cmd_iforest(*args)
    elif cmd == "bench":
        cmd_bench(*args)
    elif cmd == "replay":
        cmd_replay(*args)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
