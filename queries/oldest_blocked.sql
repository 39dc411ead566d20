-- Oldest blocked goroutines still alive in each pod's latest debug=2 snapshot.
-- Answers: which goroutines have been stuck longest, and where? Age is tracked by goroutine id
-- across snapshots (ids are stable for a goroutine's life); the runtime's ", N minutes"
-- annotation, stamped at GC time and unreliable on its own, is shown beside it.
-- param: namespace string %
-- param: pod string %
-- param: from timestamp now-24h
-- param: to timestamp now
-- param: limit int 20
WITH ids AS (
    SELECT namespace, pod, stack_id, state, ts, wait_minutes_max,
           unnest(goroutine_ids) AS goroutine_id
    FROM goroutine_samples
    WHERE goroutine_ids IS NOT NULL
      AND state NOT IN ('running', 'runnable', 'syscall', '')
      AND namespace LIKE ${namespace}
      AND pod LIKE ${pod}
      AND ts >= ${from} AND ts < ${to}
      AND date >= ${from_date} AND date <= ${to_date}
),
latest AS (
    SELECT namespace, pod, MAX(ts) AS ts
    FROM goroutine_samples
    WHERE goroutine_ids IS NOT NULL
      AND namespace LIKE ${namespace}
      AND pod LIKE ${pod}
      AND ts >= ${from} AND ts < ${to}
      AND date >= ${from_date} AND date <= ${to_date}
    GROUP BY namespace, pod
),
tracked AS (
    SELECT namespace, pod, goroutine_id, stack_id,
           MAX(state) AS state,
           MIN(ts) AS first_seen,
           MAX(ts) AS last_seen,
           MAX(wait_minutes_max) AS annotated_minutes,
           COUNT(*) AS snapshots
    FROM ids
    GROUP BY namespace, pod, goroutine_id, stack_id
),
stack_info AS (
    SELECT stack_id, MIN(top_function) AS top_function
    FROM stacks
    GROUP BY stack_id
)
SELECT t.namespace,
       t.pod,
       t.goroutine_id,
       t.state,
       lpad(to_hex(t.stack_id), 16, '0') AS stack_id,
       i.top_function,
       t.first_seen,
       CAST(date_part('epoch', t.last_seen) - date_part('epoch', t.first_seen) AS BIGINT) AS observed_blocked_s,
       t.annotated_minutes,
       t.snapshots
FROM tracked t
JOIN latest l ON t.namespace = l.namespace AND t.pod = l.pod AND t.last_seen = l.ts
LEFT JOIN stack_info i ON t.stack_id = i.stack_id
ORDER BY observed_blocked_s DESC, t.annotated_minutes DESC NULLS LAST, t.namespace, t.pod, t.goroutine_id
LIMIT ${limit};
