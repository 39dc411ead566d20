-- The growth rule done properly: least-squares slopes of go_goroutines (a gauge, so a slope,
-- not rate()) over each pod's current life, evaluated every 5 minutes.
-- Restart- and churn-aware: a pod's series is cut into lives at a new process start time, a
-- container restart, or a fall below half the previous value, and a slope never spans two
-- lives or two pods. Two ways to fire:
--   steady: the last hour's slope exceeds min_per_s with a good linear fit (R² >= min_r2), the
--           hour is covered by data, and the last 30 minutes still grow at half that rate (a
--           batch's ramp-then-plateau fits a line too, but its second half is flat);
--   fast:   the last 15 minutes' slope exceeds fast_factor x min_per_s with R² >= 0.9, and both
--           the first and the last 5 minutes of that window grow at min_per_s, significantly:
--           each 5-minute slope is at least min_t (1.645: 95%, one-sided) standard errors above zero, the error taken
--           from the 15-minute fit's residuals (a one-sided t test). Growth all along 15
--           minutes, unlike a burst's step or a batch's 10-minute ramp and plateau, whose flat
--           last minutes, when noisy, can show a slope above min_per_s by chance.
-- `sustained` says the rule itself saw persistence (the fast branch's 15 minutes of growth).
-- param: from timestamp now-1h
-- param: to timestamp now
-- param: min_per_s float 0.5
-- param: min_r2 float 0.8
-- param: min_coverage float 0.6
-- param: fast_factor float 2.0
-- param: min_t float 1.645
-- param: namespace string %
WITH raw AS (
    SELECT namespace, pod,
           MAX("cluster") AS cl, MAX(workload_kind) AS wk, MAX(workload) AS wl,
           date_bin(INTERVAL '1 minute', ts, TIMESTAMP '1970-01-01T00:00:00Z') AS minute,
           AVG(CAST(goroutines AS DOUBLE)) AS v,
           MAX(COALESCE(CAST(process_start_time AS BIGINT), 0)) AS started,
           MAX(COALESCE(container_restarts, 0)) AS restarts
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
             / NULLIF(points_15m - 2, 0) AS resid_var_15m
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
                    false) AS fast
    FROM errors
)
SELECT cl AS "cluster", namespace, wk AS workload_kind, wl AS workload, pod,
       minute + INTERVAL '1 minute' AS eval_at, v AS value, low AS hour_low,
       COALESCE(slope, 0) AS slope_per_s, COALESCE(r2, 0) AS r2, points,
       COALESCE(slope_15m, 0) AS slope_15m_per_s, COALESCE(r2_15m, 0) AS r2_15m,
       steady OR fast AS fired,
       fast AS sustained
FROM verdicts
WHERE minute + INTERVAL '1 minute' >= ${from} AND minute + INTERVAL '1 minute' <= ${to}
  AND date_part('minute', minute + INTERVAL '1 minute') % 5 = 0
ORDER BY namespace, pod, eval_at;
