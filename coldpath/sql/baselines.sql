-- baselines: for every subject active on a day from {{from}} to {{to}}, its daily value and
-- the mean and sample standard deviation of that value over the previous 7 and 28 days.
-- A window counts the days the lake holds data for, from the subject's first-seen day
-- on (a quiet day counts as 0, days before the subject existed do not count).
-- Scopes and metrics:
--   vault          / operations      all calls on the vault
--   vault_identity / operations      calls of one identity on one vault
--   vault_identity / peak_list_read  most secrets read within a window after one SecretList
--   vault_identity / peak_denied     most denied calls within a window
--   identity       / operations      calls of one identity on all vaults
--   identity       / secret_reads    successful SecretGet, KeyGet and VaultGet of one object id
--                                    on all vaults, callers in the excluded app ids left out
--   identity_ip    / operations      calls of one identity from one IP (for first-seen)
WITH series AS (
  SELECT 'vault' AS scope, 'operations' AS metric, vault_name, '' AS identity, '' AS ip,
         date, SUM(operations) AS value
  FROM vault_daily
  WHERE vault_name IS NOT NULL
  GROUP BY vault_name, date
  UNION ALL
  SELECT 'vault_identity', 'operations', vault_name, identity, '', date, operations
  FROM identity_daily
  UNION ALL
  SELECT 'vault_identity', 'peak_list_read', vault_name, identity, '', date, peak_list_read
  FROM identity_daily
  UNION ALL
  SELECT 'vault_identity', 'peak_denied', vault_name, identity, '', date, peak_denied
  FROM identity_daily
  UNION ALL
  SELECT 'identity', 'operations', '', identity, '', date, SUM(operations)
  FROM identity_daily
  GROUP BY identity, date
  UNION ALL
  SELECT 'identity', 'secret_reads', '', object_id, '', date, SUM(secret_reads)
  FROM identity_daily
  WHERE object_id IS NOT NULL AND COALESCE(app_id, '') NOT IN ({{excluded_app_ids}})
  GROUP BY object_id, date
  UNION ALL
  SELECT 'identity_ip', 'operations', '', identity, ip, date, operations
  FROM identity_ip_daily
),
lake_days AS (
  SELECT DISTINCT date FROM vault_daily
),
first_seen AS (
  SELECT scope, metric, vault_name, identity, ip, MIN(date) AS first_seen
  FROM series
  GROUP BY scope, metric, vault_name, identity, ip
),
targets AS (
  SELECT s.scope, s.metric, s.vault_name, s.identity, s.ip, s.date, s.value, f.first_seen
  FROM series s
  JOIN first_seen f
    ON f.scope = s.scope AND f.metric = s.metric AND f.vault_name = s.vault_name
   AND f.identity = s.identity AND f.ip = s.ip
  WHERE s.date >= DATE '{{from}}' AND s.date <= DATE '{{to}}'
),
target_days AS (
  SELECT DISTINCT date, first_seen FROM targets
),
spans AS (
  SELECT t.date, t.first_seen,
    SUM(CASE WHEN d.date >= t.date - INTERVAL '7' DAY THEN 1 ELSE 0 END) AS days_7,
    COUNT(d.date) AS days_28
  FROM target_days t
  LEFT JOIN lake_days d
    ON d.date < t.date AND d.date >= t.date - INTERVAL '28' DAY AND d.date >= t.first_seen
  GROUP BY t.date, t.first_seen
),
ages AS (
  SELECT t.date, COUNT(d.date) AS lake_age
  FROM (SELECT DISTINCT date FROM targets) t
  LEFT JOIN lake_days d ON d.date < t.date
  GROUP BY t.date
),
sums AS (
  SELECT t.scope, t.metric, t.vault_name, t.identity, t.ip, t.date,
    SUM(CASE WHEN h.date >= t.date - INTERVAL '7' DAY THEN h.value ELSE 0 END) AS sum_7,
    SUM(CASE WHEN h.date >= t.date - INTERVAL '7' DAY THEN h.value * h.value ELSE 0 END) AS sq_7,
    SUM(h.value) AS sum_28,
    SUM(h.value * h.value) AS sq_28
  FROM targets t
  JOIN series h
    ON h.scope = t.scope AND h.metric = t.metric AND h.vault_name = t.vault_name
   AND h.identity = t.identity AND h.ip = t.ip
  WHERE h.date < t.date AND h.date >= t.date - INTERVAL '28' DAY
  GROUP BY t.scope, t.metric, t.vault_name, t.identity, t.ip, t.date
),
stats AS (
  SELECT t.scope, t.metric, t.vault_name, t.identity, t.ip, t.date, t.value, t.first_seen,
    a.lake_age, sp.days_7, sp.days_28,
    CAST(COALESCE(s.sum_7, 0) AS DOUBLE) AS sum_7,
    CAST(COALESCE(s.sq_7, 0) AS DOUBLE) AS sq_7,
    CAST(COALESCE(s.sum_28, 0) AS DOUBLE) AS sum_28,
    CAST(COALESCE(s.sq_28, 0) AS DOUBLE) AS sq_28
  FROM targets t
  JOIN ages a ON a.date = t.date
  JOIN spans sp ON sp.date = t.date AND sp.first_seen = t.first_seen
  LEFT JOIN sums s
    ON s.scope = t.scope AND s.metric = t.metric AND s.vault_name = t.vault_name
   AND s.identity = t.identity AND s.ip = t.ip AND s.date = t.date
)
SELECT
  date,
  scope,
  metric,
  NULLIF(vault_name, '') AS vault_name,
  NULLIF(identity, '') AS identity,
  NULLIF(ip, '') AS ip,
  value,
  days_7,
  CASE WHEN days_7 > 0 THEN sum_7 / days_7 END AS mean_7,
  CASE WHEN days_7 > 1 THEN SQRT(GREATEST((sq_7 - sum_7 * sum_7 / days_7) / (days_7 - 1), 0.0)) END AS stddev_7,
  days_28,
  CASE WHEN days_28 > 0 THEN sum_28 / days_28 END AS mean_28,
  CASE WHEN days_28 > 1 THEN SQRT(GREATEST((sq_28 - sum_28 * sum_28 / days_28) / (days_28 - 1), 0.0)) END AS stddev_28,
  first_seen,
  lake_age
FROM stats
