-- identity_daily: per UTC day x identity x vault, with the two burst measures the
-- detectors need: the most distinct secrets read within {{window_minutes}} minutes after
-- one SecretList, and the most denied (401/403) calls within {{window_minutes}} minutes.
-- A window spans at most two 10-minute buckets, so each join is an equi-join on
-- (identity, vault, day, bucket) plus a time filter, never a cross product.
WITH lists AS (
  SELECT date, identity, vault_name, time, bucket
  FROM events
  WHERE operation_name = 'SecretList' AND result_class = 'success'
    AND identity IS NOT NULL AND vault_name IS NOT NULL
),
secret_gets AS (
  SELECT date, identity, vault_name, time, bucket, object_name
  FROM events
  WHERE operation_name = 'SecretGet' AND result_class = 'success'
    AND identity IS NOT NULL AND vault_name IS NOT NULL AND object_name IS NOT NULL
),
gets AS (
  SELECT date, identity, vault_name, time, bucket AS join_bucket, object_name FROM secret_gets
  UNION ALL
  SELECT date, identity, vault_name, time, bucket - 1 AS join_bucket, object_name FROM secret_gets
),
list_reads AS (
  SELECT l.date, l.identity, l.vault_name, l.time AS list_time,
    COUNT(DISTINCT g.object_name) AS secrets_read
  FROM lists l
  JOIN gets g
    ON g.date = l.date AND g.identity = l.identity AND g.vault_name = l.vault_name
   AND g.join_bucket = l.bucket
  WHERE g.time >= l.time AND g.time <= l.time + INTERVAL '{{window_minutes}}' MINUTE
  GROUP BY l.date, l.identity, l.vault_name, l.time
),
peak_list AS (
  SELECT date, identity, vault_name, list_time, secrets_read,
    ROW_NUMBER() OVER (PARTITION BY date, identity, vault_name
                       ORDER BY secrets_read DESC, list_time) AS rk
  FROM list_reads
),
denials AS (
  SELECT date, identity, vault_name, time, bucket
  FROM events
  WHERE http_status_code IN (401, 403) AND identity IS NOT NULL AND vault_name IS NOT NULL
),
denials_joinable AS (
  SELECT date, identity, vault_name, time, bucket AS join_bucket FROM denials
  UNION ALL
  SELECT date, identity, vault_name, time, bucket - 1 AS join_bucket FROM denials
),
denied_windows AS (
  SELECT d.date, d.identity, d.vault_name, d.time AS window_start, COUNT(*) AS denied
  FROM denials d
  JOIN denials_joinable e
    ON e.date = d.date AND e.identity = d.identity AND e.vault_name = d.vault_name
   AND e.join_bucket = d.bucket
  WHERE e.time >= d.time AND e.time <= d.time + INTERVAL '{{window_minutes}}' MINUTE
  GROUP BY d.date, d.identity, d.vault_name, d.time
),
peak_denied AS (
  SELECT date, identity, vault_name, window_start, denied,
    ROW_NUMBER() OVER (PARTITION BY date, identity, vault_name
                       ORDER BY denied DESC, window_start) AS rk
  FROM denied_windows
),
base AS (
  SELECT
    date,
    identity,
    vault_name,
    MAX(object_id) AS object_id,
    MAX(app_id) AS app_id,
    MAX(upn) AS upn,
    MAX(identity_type) AS identity_type,
    COUNT(*) AS operations,
    COUNT(DISTINCT CASE WHEN object_kind = 'secret' THEN object_name END) AS distinct_secrets,
    COUNT(DISTINCT CASE WHEN object_kind = 'key' THEN object_name END) AS distinct_keys,
    COUNT(DISTINCT CASE WHEN object_kind = 'certificate' THEN object_name END) AS distinct_certificates,
    COUNT(DISTINCT ip) AS distinct_ips,
    SUM(CASE WHEN result_class IN ('client_error', 'throttled', 'server_error') THEN 1 ELSE 0 END) AS failed_operations,
    SUM(CASE WHEN http_status_code IN (401, 403) THEN 1 ELSE 0 END) AS denied_operations,
    SUM(CASE WHEN result_class = 'success' AND operation_name IN ('SecretGet', 'KeyGet', 'VaultGet')
             THEN 1 ELSE 0 END) AS secret_reads,
    MIN(time) AS first_seen,
    MAX(time) AS last_seen
  FROM events
  WHERE identity IS NOT NULL AND vault_name IS NOT NULL
  GROUP BY date, identity, vault_name
)
SELECT
  b.date,
  b.identity,
  b.vault_name,
  b.object_id,
  b.app_id,
  b.upn,
  b.identity_type,
  b.operations,
  b.distinct_secrets,
  b.distinct_keys,
  b.distinct_certificates,
  b.distinct_ips,
  b.failed_operations,
  b.denied_operations,
  b.secret_reads,
  b.first_seen,
  b.last_seen,
  COALESCE(pl.secrets_read, 0) AS peak_list_read,
  pl.list_time AS peak_list_read_at,
  COALESCE(pd.denied, 0) AS peak_denied,
  pd.window_start AS peak_denied_at
FROM base b
LEFT JOIN peak_list pl
  ON pl.rk = 1 AND pl.date = b.date AND pl.identity = b.identity AND pl.vault_name = b.vault_name
LEFT JOIN peak_denied pd
  ON pd.rk = 1 AND pd.date = b.date AND pd.identity = b.identity AND pd.vault_name = b.vault_name
