-- Goroutines by wait state per pod over time, from the stack samples of the goroutine profile.
-- Answers: what are the goroutines of a pod doing, snapshot by snapshot? ('(unknown)' is a
-- debug=0/1 capture, which carries no wait state. Captures of one moment in several formats
-- show once per format.)
-- param: namespace string %
-- param: pod string %
-- param: from timestamp now-2h
-- param: to timestamp now
SELECT ts,
       namespace,
       pod,
       format,
       CASE WHEN state = '' THEN '(unknown)' ELSE state END AS state,
       SUM(goroutines) AS goroutines
FROM goroutine_samples
WHERE profile = 'goroutine'
  AND namespace LIKE ${namespace}
  AND pod LIKE ${pod}
  AND ts >= ${from} AND ts < ${to}
  AND date >= ${from_date} AND date <= ${to_date}
GROUP BY ts, namespace, pod, format, state
ORDER BY ts, namespace, pod, format, goroutines DESC, state;
