-- vault_daily: per UTC day x vault x operation x result class.
SELECT
  date,
  vault_name,
  operation_name,
  result_class,
  COUNT(*) AS operations,
  COUNT(DISTINCT identity) AS distinct_identities,
  COUNT(DISTINCT ip) AS distinct_ips,
  SUM(CASE WHEN result_class = 'client_error' THEN 1 ELSE 0 END) AS client_errors,
  SUM(CASE WHEN result_class = 'server_error' THEN 1 ELSE 0 END) AS server_errors,
  SUM(CASE WHEN result_class = 'throttled' THEN 1 ELSE 0 END) AS throttled,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS duration_p50_ms,
  percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS duration_p95_ms,
  MAX(duration_ms) AS duration_max_ms
FROM events
GROUP BY date, vault_name, operation_name, result_class
