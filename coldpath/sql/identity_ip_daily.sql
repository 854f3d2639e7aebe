-- identity_ip_daily: per UTC day x identity x caller IP; the history behind "an IP never
-- seen for this identity".
SELECT
  date,
  identity,
  ip,
  COUNT(*) AS operations,
  MIN(time) AS first_seen,
  MAX(time) AS last_seen
FROM events
WHERE identity IS NOT NULL AND ip IS NOT NULL
GROUP BY date, identity, ip
