-- The seed's dynamic-baseline rule, per pod: every 5 minutes, baseline = P95 of the previous
-- 2 hours of 5-minute values; the rule fires when the value exceeds baseline x 1.8 for 3
-- consecutive periods. One row per pod per period ending in [from, to]; `fired` is the verdict.
-- Known weakness (kept on purpose, it is the reference): a steady leak lifts its own baseline,
-- so the rule fires once and then resolves while the leak goes on.
-- param: from timestamp now-1h
-- param: to timestamp now
-- param: factor float 1.8
-- param: periods int 3
-- param: min_baseline_points int 6
-- param: namespace string %
WITH points AS (
    SELECT namespace, pod,
           MAX("cluster") AS cl, MAX(workload_kind) AS wk, MAX(workload) AS wl,
           date_bin(INTERVAL '5 minutes', ts, TIMESTAMP '1970-01-01T00:00:00Z') + INTERVAL '5 minutes' AS eval_at,
           AVG(CAST(goroutines AS DOUBLE)) AS v
    FROM goroutine_counts
    WHERE ts >= ${from} - INTERVAL '135 minutes' AND ts < ${to}
      AND date >= CAST(CAST(${from} - INTERVAL '135 minutes' AS DATE) AS VARCHAR)
      AND date <= ${to_date}
      AND namespace LIKE ${namespace}
    GROUP BY 1, 2, 6
),
baselines AS (
    SELECT a.namespace, a.pod, a.eval_at, a.v,
           approx_percentile_cont(0.95) WITHIN GROUP (ORDER BY b.v) AS baseline,
           COUNT(b.v) AS baseline_points
    FROM points a
    JOIN points b
      ON a.namespace = b.namespace AND a.pod = b.pod
     AND b.eval_at >= a.eval_at - INTERVAL '120 minutes' AND b.eval_at < a.eval_at
    GROUP BY a.namespace, a.pod, a.eval_at, a.v
),
flags AS (
    SELECT p.namespace, p.pod, p.cl, p.wk, p.wl, p.eval_at, p.v,
           b.baseline,
           COALESCE(b.baseline_points >= ${min_baseline_points} AND p.v > ${factor} * b.baseline, false) AS over
    FROM points p LEFT JOIN baselines b
      ON p.namespace = b.namespace AND p.pod = b.pod AND p.eval_at = b.eval_at
),
runs AS (
    SELECT *,
           SUM(CASE WHEN over THEN 0 ELSE 1 END) OVER (
               PARTITION BY namespace, pod ORDER BY eval_at
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS run_id
    FROM flags
),
streaks AS (
    SELECT *,
           SUM(CASE WHEN over THEN 1 ELSE 0 END) OVER (
               PARTITION BY namespace, pod, run_id ORDER BY eval_at
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS streak
    FROM runs
)
SELECT cl AS "cluster", namespace, wk AS workload_kind, wl AS workload, pod, eval_at, v AS value, baseline,
       streak AS periods_over,
       streak >= ${periods} AS fired
FROM streaks
WHERE eval_at >= ${from} AND eval_at <= ${to}
ORDER BY namespace, pod, eval_at;
