-- Stacks that grew most between a baseline window and a current window, per pod.
-- Answers: which code paths are accumulating goroutines? Counts are averages per snapshot in
-- each window (a snapshot is one capture: time and format); a stack absent from a snapshot
-- counts as 0 there.
-- param: namespace string %
-- param: base_from timestamp now-4h
-- param: base_to timestamp now-2h
-- param: from timestamp now-2h
-- param: to timestamp now
-- param: limit int 20
-- Both sums come straight from the rows (a sum of per-snapshot sums is the sum of the rows),
-- so no step groups the month by stack and snapshot.
WITH samples AS (
    SELECT namespace, pod, stack_id, ts, format, goroutines
    FROM goroutine_samples
    WHERE profile = 'goroutine'
      AND namespace LIKE ${namespace}
      -- Only the two windows are read (the days between them are pruned).
      AND ((ts >= ${base_from} AND ts < ${base_to}) OR (ts >= ${from} AND ts < ${to}))
      AND ((date >= ${base_from_date} AND date <= ${base_to_date})
           OR (date >= ${from_date} AND date <= ${to_date}))
),
snaps AS (
    SELECT namespace, pod, ts, format FROM samples GROUP BY namespace, pod, ts, format
),
snapshots AS (
    SELECT namespace, pod,
           SUM(CASE WHEN ts >= ${base_from} AND ts < ${base_to} THEN 1 ELSE 0 END) AS base_snaps,
           SUM(CASE WHEN ts >= ${from} AND ts < ${to} THEN 1 ELSE 0 END) AS now_snaps
    FROM snaps
    GROUP BY namespace, pod
),
windows AS (
    SELECT namespace, pod, stack_id,
           SUM(CASE WHEN ts >= ${base_from} AND ts < ${base_to} THEN goroutines ELSE 0 END) AS base_sum,
           SUM(CASE WHEN ts >= ${from} AND ts < ${to} THEN goroutines ELSE 0 END) AS now_sum
    FROM samples
    GROUP BY namespace, pod, stack_id
),
stack_info AS (
    SELECT stack_id, MIN(top_function) AS top_function, MIN(top_file) AS top_file,
           MIN(top_line) AS top_line
    FROM stacks
    GROUP BY stack_id
),
growth AS (
    SELECT w.namespace, w.pod, w.stack_id,
           COALESCE(CAST(w.base_sum AS DOUBLE) / NULLIF(s.base_snaps, 0), 0) AS baseline,
           COALESCE(CAST(w.now_sum AS DOUBLE) / NULLIF(s.now_snaps, 0), 0) AS current
    FROM windows w JOIN snapshots s ON w.namespace = s.namespace AND w.pod = s.pod
    WHERE s.now_snaps > 0
)
SELECT g.namespace,
       g.pod,
       CAST(g.stack_id AS VARCHAR) AS stack_id,
       i.top_function,
       concat(i.top_file, ':', CAST(i.top_line AS VARCHAR)) AS top_site,
       round(g.baseline, 2) AS baseline,
       round(g.current, 2) AS current,
       round(g.current - g.baseline, 2) AS growth
FROM growth g LEFT JOIN stack_info i ON g.stack_id = i.stack_id
WHERE g.current > g.baseline
ORDER BY growth DESC, g.namespace, g.pod, stack_id
LIMIT ${limit};
