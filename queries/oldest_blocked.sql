-- Oldest blocked goroutines per pod and stack, as of each pod's latest debug=2 snapshot.
-- Answers: which goroutines have been stuck longest, and where? Ages come from tracking
-- goroutine ids across snapshots (an id is stable for a goroutine's life); the runtime's
-- ", N minutes" annotation, stamped at GC time and unreliable alone, is shown beside and is used
-- only for goroutines already there in a target's first snapshot.
-- param: namespace string %
-- param: pod string %
-- param: from timestamp now-24h
-- param: to timestamp now
-- param: limit int 20
-- `latest` applies the window and "has ids" inside the aggregate rather than as a WHERE: a scan
-- without a predicate on its columns opens each file without building pruning predicates for
-- it, which over a month of hourly files cost more than the filter saved (all of it passes).
-- The partition filters (date, then hour at the window's first and last day) still skip every
-- file outside the window before anything is opened. The HAVING keeps out what has no such
-- row, and tells the planner this side is the small one (the join builds its table on it).
WITH latest AS (
    SELECT namespace, pod,
           MAX(CASE WHEN min_goroutine_id IS NOT NULL AND ts >= ${from} AND ts < ${to}
                    THEN ts END) AS ts
    FROM goroutine_samples
    WHERE namespace LIKE ${namespace}
      AND pod LIKE ${pod}
      AND date >= ${from_date} AND date <= ${to_date}
      AND (date > ${from_date} OR hour >= ${from_hour})
      AND (date < ${to_date} OR hour <= ${to_hour})
    GROUP BY namespace, pod
    HAVING MAX(CASE WHEN min_goroutine_id IS NOT NULL AND ts >= ${from} AND ts < ${to}
                    THEN ts END) IS NOT NULL
),
stack_info AS (
    SELECT stack_id, MIN(top_function) AS top_function
    FROM stacks
    GROUP BY stack_id
)
SELECT g.namespace,
       g.pod,
       g.state,
       CAST(g.stack_id AS VARCHAR) AS stack_id,
       i.top_function,
       SUM(g.goroutines) AS goroutines,
       MIN(g.min_goroutine_id) AS oldest_goroutine_id,
       MIN(g.oldest_first_seen) AS oldest_first_seen,
       CAST(date_part('epoch', g.ts) - date_part('epoch', MIN(g.oldest_first_seen)) AS BIGINT) AS oldest_age_s,
       MAX(g.age_p99_s) AS age_p99_s,
       SUM(g.alive_over_5m) AS alive_over_5m,
       MAX(g.wait_minutes_max) AS annotated_minutes
-- The small side first: DataFusion builds its hash table on the left input.
FROM latest l
JOIN goroutine_samples g ON g.namespace = l.namespace AND g.pod = l.pod AND g.ts = l.ts
LEFT JOIN stack_info i ON g.stack_id = i.stack_id
WHERE g.min_goroutine_id IS NOT NULL
  AND g.state NOT IN ('running', 'runnable', 'syscall', '')
  AND g.date >= ${from_date} AND g.date <= ${to_date}
GROUP BY g.namespace, g.pod, g.ts, g.state, g.stack_id, i.top_function
ORDER BY oldest_age_s DESC, goroutines DESC, g.namespace, g.pod, stack_id
LIMIT ${limit};
