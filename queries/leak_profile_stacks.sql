-- Stacks the Go runtime itself confirmed as leaked: the goroutineleak profile (Go 1.26 experiment,
-- GA in 1.27) and goroutines printed with "(leaked)". Latest count per pod and stack.
-- Answers: which leaks need no statistics to believe?
-- param: namespace string %
-- param: from timestamp now-24h
-- param: to timestamp now
-- Two passes over the samples: the first finds each leaked stack's first and last capture (a
-- few thousand groups, no per-capture grouping of millions of rows); the second reads only the
-- rows of those last captures (the join hands the scan their times, so it prunes by `ts`).
-- The first pass applies "leaked" and the window inside the aggregate rather than as a WHERE:
-- a scan without a predicate on its columns opens each file without building pruning
-- predicates for it, which over a month of hourly files cost more than the filter saved. The
-- partition filters (date, then hour at the window's first and last day) still skip every
-- file outside the window before anything is opened. The HAVING keeps out what has no such
-- row, and tells the planner this side is the small one (the join builds its table on it).
WITH span AS (
    SELECT namespace, pod, stack_id,
           MIN(CASE WHEN (profile = 'goroutineleak' OR leaked) AND ts >= ${from} AND ts < ${to}
                    THEN ts END) AS first_seen,
           MAX(CASE WHEN (profile = 'goroutineleak' OR leaked) AND ts >= ${from} AND ts < ${to}
                    THEN ts END) AS last_seen
    FROM goroutine_samples
    WHERE namespace LIKE ${namespace}
      AND date >= ${from_date} AND date <= ${to_date}
      AND (date > ${from_date} OR hour >= ${from_hour})
      AND (date < ${to_date} OR hour <= ${to_hour})
    GROUP BY namespace, pod, stack_id
    HAVING MAX(CASE WHEN (profile = 'goroutineleak' OR leaked) AND ts >= ${from} AND ts < ${to}
                    THEN ts END) IS NOT NULL
),
last_capture AS (
    SELECT s.namespace, s.pod, s.stack_id, s.first_seen, s.last_seen, g.format,
           SUM(g.goroutines) AS n
    -- The small side first: DataFusion builds its hash table on the left input.
    FROM span s
    JOIN goroutine_samples g
      ON g.namespace = s.namespace AND g.pod = s.pod AND g.stack_id = s.stack_id
     AND g.ts = s.last_seen
    WHERE (g.profile = 'goroutineleak' OR g.leaked)
      AND g.ts >= ${from} AND g.ts < ${to}
      AND g.date >= ${from_date} AND g.date <= ${to_date}
    GROUP BY s.namespace, s.pod, s.stack_id, s.first_seen, s.last_seen, g.format
),
leaked AS (
    -- One moment captured in several formats counts once.
    SELECT namespace, pod, stack_id, first_seen, last_seen, MAX(n) AS n
    FROM last_capture
    GROUP BY namespace, pod, stack_id, first_seen, last_seen
),
stack_info AS (
    SELECT stack_id, MIN(top_function) AS top_function, MIN(top_file) AS top_file,
           MIN(top_line) AS top_line, MIN(created_by_function) AS created_by
    FROM stacks
    GROUP BY stack_id
)
SELECT s.namespace,
       s.pod,
       CAST(s.stack_id AS VARCHAR) AS stack_id,
       i.top_function,
       concat(i.top_file, ':', CAST(i.top_line AS VARCHAR)) AS top_site,
       i.created_by,
       s.first_seen,
       s.last_seen,
       s.n AS goroutines
FROM leaked s
LEFT JOIN stack_info i ON s.stack_id = i.stack_id
ORDER BY goroutines DESC, s.namespace, s.pod, stack_id;
