-- The growth rule done properly: least-squares slopes of go_goroutines (a gauge, so a slope,
-- not rate()) over each pod's current life, evaluated every 5 minutes.
-- Restart- and churn-aware: a pod's series is cut into lives at a new process start time, a
-- container restart, or a fall below half the previous value, and a slope never spans two
-- lives or two pods. A minute without a start time or restart count (a source that has none)
-- is no change: only two known, different values are a restart. Three ways to fire:
--   steady:  the last hour's slope exceeds min_per_s with a good linear fit (R² >= min_r2), the
--            hour is covered by data, and the last 30 minutes still grow at half that rate (a
--            batch's ramp-then-plateau fits a line too, but its second half is flat);
--   fast 10: the last 10 minutes' slope exceeds fast_factor x min_per_s with R² >= fast_r2, and
--            both halves of the window (minutes 10-6 and 5-1 before now) grow at min_per_s,
--            significantly: each 5-minute slope is at least min_t (1.645: 95%, one-sided)
--            standard errors above zero, the error taken from the 10-minute fit's residuals
--            (a one-sided t test). Growth all along 10 minutes, unlike a burst's step (one half
--            flat) or a noisy plateau;
--   fast 15: the same over the last 15 minutes (its first and last 5 minutes), which a leak
--            just above fast_factor x min_per_s in noisy counts passes more often than the 10
--            minutes do (a longer line has a better R² for the same noise).
-- Why 10 minutes: evaluations come every 5 minutes, so a branch that needs N minutes of growth
-- fires at worst N + 4 minutes after the onset; the goal is a fast leak at L2+ within 15
-- minutes, so N <= 11. With the 15-minute branch alone the worst case was 17-22 minutes.
-- The window follows from that budget, not from any batch's ramp.
-- What it costs: from the counts alone, a batch or traffic ramp at more than fast_factor x
-- min_per_s is, until it levels off, a leak's start: the 10-minute branch fires on a ramp of
-- >= ~7 minutes (the eval catching most of it in the window) the first time the pod makes it;
-- the 15-minute branch alone did so from ~12 minutes (scenario first_seen_batch). A ramp the
-- pod also made at about this time yesterday is dropped by the engine (`recurring_rise`, over
-- the window that fired: `window_s`), and with goroutine dumps a ramp whose new goroutines do
-- not stay, below the danger growth, stays L1 (residence of what grew: engine.rs
-- `residence_at`, levels.rs; with ingest's captures no first_seen_batch reaches L2). Considered and not taken: the
-- 10-minute branch only at 2-4x the fast threshold (leaks of 1-2/s would still take 17+
-- minutes); "a new high for the pod, k x the day's range" (a batch's first run is a new high
-- too, and a leak of 1/s on a large diurnal base is not k x its range in 10 minutes); a test
-- that the second half does not grow significantly slower than the first (a ramp ending
-- inside the window): it took only ramps of 8-9 minutes at one phase, and its 5 % false
-- rejections delayed a fast leak past 15 minutes.
-- `sustained` says the rule itself saw persistence (growth all along a fast window);
-- `window_s` is the window of the branch that fired (600, 900; 3600 for the hour).
-- param: from timestamp now-1h
-- param: to timestamp now
-- param: min_per_s float 0.5
-- param: min_r2 float 0.8
-- param: min_coverage float 0.6
-- param: fast_factor float 2.0
-- param: min_t float 1.645
-- param: fast_r2 float 0.9
-- param: namespace string %
WITH raw AS (
    SELECT namespace, pod,
           MAX("cluster") AS cl, MAX(workload_kind) AS wk, MAX(workload) AS wl,
           date_bin(INTERVAL '1 minute', ts, TIMESTAMP '1970-01-01T00:00:00Z') AS minute,
           AVG(CAST(goroutines AS DOUBLE)) AS v,
           MAX(CAST(process_start_time AS BIGINT)) AS started,
           MAX(container_restarts) AS restarts
    FROM goroutine_counts
    WHERE ts >= ${from} - INTERVAL '65 minutes' AND ts <= ${to}
      AND date >= CAST(CAST(${from} - INTERVAL '65 minutes' AS DATE) AS VARCHAR)
      AND date <= ${to_date}
      AND namespace LIKE ${namespace}
    GROUP BY 1, 2, 6
),
marked AS (
    SELECT *,
           CASE WHEN LAG(v) OVER w IS NULL THEN 0
                WHEN started <> LAG(started) OVER w OR restarts <> LAG(restarts) OVER w
                  OR v < 0.5 * LAG(v) OVER w THEN 1
                ELSE 0 END AS new_life
    FROM raw
    WINDOW w AS (PARTITION BY namespace, pod ORDER BY minute)
),
lives AS (
    SELECT *, SUM(new_life) OVER (PARTITION BY namespace, pod ORDER BY minute
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS life
    FROM marked
),
slopes AS (
    SELECT *,
           regr_slope(v, CAST(to_unixtime(minute) AS DOUBLE)) OVER h AS slope,
           regr_r2(v, CAST(to_unixtime(minute) AS DOUBLE)) OVER h AS r2,
           COUNT(v) OVER h AS points,
           MIN(v) OVER h AS low,
           regr_slope(v, CAST(to_unixtime(minute) AS DOUBLE)) OVER q AS slope_15m,
           regr_r2(v, CAST(to_unixtime(minute) AS DOUBLE)) OVER q AS r2_15m,
           COUNT(v) OVER q AS points_15m,
           regr_sxx(v, CAST(to_unixtime(minute) AS DOUBLE)) OVER q AS sxx_15m,
           regr_syy(v, CAST(to_unixtime(minute) AS DOUBLE)) OVER q AS syy_15m,
           regr_sxy(v, CAST(to_unixtime(minute) AS DOUBLE)) OVER q AS sxy_15m,
           regr_slope(v, CAST(to_unixtime(minute) AS DOUBLE)) OVER t AS slope_10m,
           regr_r2(v, CAST(to_unixtime(minute) AS DOUBLE)) OVER t AS r2_10m,
           COUNT(v) OVER t AS points_10m,
           regr_sxx(v, CAST(to_unixtime(minute) AS DOUBLE)) OVER t AS sxx_10m,
           regr_syy(v, CAST(to_unixtime(minute) AS DOUBLE)) OVER t AS syy_10m,
           regr_sxy(v, CAST(to_unixtime(minute) AS DOUBLE)) OVER t AS sxy_10m,
           regr_slope(v, CAST(to_unixtime(minute) AS DOUBLE)) OVER te AS slope_mid_5m,
           regr_sxx(v, CAST(to_unixtime(minute) AS DOUBLE)) OVER te AS sxx_mid_5m,
           regr_slope(v, CAST(to_unixtime(minute) AS DOUBLE)) OVER f AS slope_5m,
           regr_sxx(v, CAST(to_unixtime(minute) AS DOUBLE)) OVER f AS sxx_5m,
           regr_slope(v, CAST(to_unixtime(minute) AS DOUBLE)) OVER e AS slope_early_5m,
           regr_sxx(v, CAST(to_unixtime(minute) AS DOUBLE)) OVER e AS sxx_early_5m,
           regr_slope(v, CAST(to_unixtime(minute) AS DOUBLE)) OVER hh AS slope_30m
    FROM lives
    WINDOW h AS (PARTITION BY namespace, pod, life ORDER BY minute
                 RANGE BETWEEN INTERVAL '59 minutes' PRECEDING AND CURRENT ROW),
           q AS (PARTITION BY namespace, pod, life ORDER BY minute
                 RANGE BETWEEN INTERVAL '14 minutes' PRECEDING AND CURRENT ROW),
           t AS (PARTITION BY namespace, pod, life ORDER BY minute
                 RANGE BETWEEN INTERVAL '9 minutes' PRECEDING AND CURRENT ROW),
           te AS (PARTITION BY namespace, pod, life ORDER BY minute
                 RANGE BETWEEN INTERVAL '9 minutes' PRECEDING AND INTERVAL '5 minutes' PRECEDING),
           f AS (PARTITION BY namespace, pod, life ORDER BY minute
                 RANGE BETWEEN INTERVAL '4 minutes' PRECEDING AND CURRENT ROW),
           e AS (PARTITION BY namespace, pod, life ORDER BY minute
                 RANGE BETWEEN INTERVAL '14 minutes' PRECEDING AND INTERVAL '10 minutes' PRECEDING),
           hh AS (PARTITION BY namespace, pod, life ORDER BY minute
                 RANGE BETWEEN INTERVAL '29 minutes' PRECEDING AND CURRENT ROW)
),
errors AS (
    -- Residual variance of the 15-minute fit, then the standard error of each 5-minute slope.
    SELECT *,
           GREATEST(syy_15m - sxy_15m * sxy_15m / NULLIF(sxx_15m, 0), 0)
             / NULLIF(points_15m - 2, 0) AS resid_var_15m,
           GREATEST(syy_10m - sxy_10m * sxy_10m / NULLIF(sxx_10m, 0), 0)
             / NULLIF(points_10m - 2, 0) AS resid_var_10m
    FROM slopes
),
verdicts AS (
    SELECT *,
           COALESCE(slope > ${min_per_s} AND r2 >= ${min_r2} AND slope_30m > 0.5 * ${min_per_s}
                    AND points >= 60 * ${min_coverage}, false) AS steady,
           COALESCE(slope_15m > ${fast_factor} * ${min_per_s} AND r2_15m >= 0.9
                    AND points_15m >= 12 AND slope_5m > ${min_per_s}
                    AND slope_early_5m > ${min_per_s}
                    AND slope_5m >= ${min_t} * SQRT(resid_var_15m / NULLIF(sxx_5m, 0))
                    AND slope_early_5m >= ${min_t} * SQRT(resid_var_15m / NULLIF(sxx_early_5m, 0)),
                    false) AS fast_15m,
           COALESCE(slope_10m > ${fast_factor} * ${min_per_s} AND r2_10m >= ${fast_r2}
                    AND points_10m >= 8 AND slope_5m > ${min_per_s}
                    AND slope_mid_5m > ${min_per_s}
                    AND slope_5m >= ${min_t} * SQRT(resid_var_10m / NULLIF(sxx_5m, 0))
                    AND slope_mid_5m >= ${min_t} * SQRT(resid_var_10m / NULLIF(sxx_mid_5m, 0)),
                    false) AS fast_10m
    FROM errors
)
SELECT cl AS "cluster", namespace, wk AS workload_kind, wl AS workload, pod,
       minute + INTERVAL '1 minute' AS eval_at, v AS value, low AS hour_low,
       COALESCE(slope, 0) AS slope_per_s, COALESCE(r2, 0) AS r2, points,
       COALESCE(slope_15m, 0) AS slope_15m_per_s, COALESCE(r2_15m, 0) AS r2_15m,
       COALESCE(slope_10m, 0) AS slope_10m_per_s, COALESCE(r2_10m, 0) AS r2_10m,
       steady OR fast_10m OR fast_15m AS fired,
       fast_10m OR fast_15m AS sustained,
       CASE WHEN fast_10m THEN 600 WHEN fast_15m THEN 900 ELSE 3600 END AS window_s
FROM verdicts
WHERE minute + INTERVAL '1 minute' >= ${from} AND minute + INTERVAL '1 minute' <= ${to}
  AND date_part('minute', minute + INTERVAL '1 minute') % 5 = 0
ORDER BY namespace, pod, eval_at;
