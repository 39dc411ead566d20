-- Goroutine count per pod over time, from every source: scrapes, archived dumps, Prometheus history.
-- Answers: is the count of a pod growing, and since when?
-- param: namespace string %
-- param: pod string %
-- param: from timestamp now-2h
-- param: to timestamp now
SELECT ts, namespace, pod, goroutines, waiting, threads, source, format
FROM goroutine_counts
WHERE namespace LIKE ${namespace}
  AND pod LIKE ${pod}
  AND ts >= ${from} AND ts < ${to}
  AND date >= ${from_date} AND date <= ${to_date}
ORDER BY namespace, pod, ts, source, format;
