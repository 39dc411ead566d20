-- Stacks the Go runtime itself confirmed as leaked: the goroutineleak profile (Go 1.26 experiment,
-- GA in 1.27) and goroutines printed with "(leaked)". Latest count per pod and stack.
-- Answers: which leaks need no statistics to believe?
-- param: namespace string %
-- param: from timestamp now-24h
-- param: to timestamp now
WITH per_capture AS (
    SELECT namespace, pod, stack_id, ts, format, SUM(goroutines) AS n
    FROM goroutine_samples
    WHERE (profile = 'goroutineleak' OR leaked)
      AND namespace LIKE ${namespace}
      AND ts >= ${from} AND ts < ${to}
      AND date >= ${from_date} AND date <= ${to_date}
    GROUP BY namespace, pod, stack_id, ts, format
),
leaked AS (
    -- One moment captured in several formats counts once.
    SELECT namespace, pod, stack_id, ts, MAX(n) AS n
    FROM per_capture
    GROUP BY namespace, pod, stack_id, ts
),
span AS (
    SELECT namespace, pod, stack_id, MIN(ts) AS first_seen, MAX(ts) AS last_seen
    FROM leaked
    GROUP BY namespace, pod, stack_id
),
stack_info AS (
    SELECT stack_id, MIN(top_function) AS top_function, MIN(top_file) AS top_file,
           MIN(top_line) AS top_line, MIN(created_by_function) AS created_by
    FROM stacks
    GROUP BY stack_id
)
SELECT s.namespace,
       s.pod,
       lpad(to_hex(s.stack_id), 16, '0') AS stack_id,
       i.top_function,
       concat(i.top_file, ':', CAST(i.top_line AS VARCHAR)) AS top_site,
       i.created_by,
       s.first_seen,
       s.last_seen,
       l.n AS goroutines
FROM span s
JOIN leaked l ON l.namespace = s.namespace AND l.pod = s.pod AND l.stack_id = s.stack_id AND l.ts = s.last_seen
LEFT JOIN stack_info i ON s.stack_id = i.stack_id
ORDER BY goroutines DESC, s.namespace, s.pod, stack_id;
