-- anomalies: what an analyst should look at, one row per finding, from the baselines of
-- days {{from}} to {{to}}, the identity_daily rows of those days and the sensitive
-- operations already found. Every threshold is a setting (see ARCHITECTURE.md).
-- `spread` is the 28-day standard deviation, never below the square root of the mean
-- (the noise of a count) nor below 1, so a flat history does not make any rise an alarm.
WITH b AS (
  SELECT *,
    GREATEST(COALESCE(stddev_28, 0.0), SQRT(COALESCE(mean_28, 0.0)), 1.0) AS spread
  FROM baselines
  WHERE date >= DATE '{{from}}' AND date <= DATE '{{to}}'
),
identity_days AS (
  SELECT date, identity, MIN(first_seen) AS first_seen, MAX(last_seen) AS last_seen,
    COUNT(*) AS vaults
  FROM identity_daily
  GROUP BY date, identity
),
identity_first AS (
  SELECT date, identity, first_seen AS identity_first_seen
  FROM b
  WHERE scope = 'identity' AND metric = 'operations'
),
volume AS (
  SELECT b.date, 'unusual_volume' AS kind,
    b.scope AS subject_type,
    CASE WHEN b.scope = 'vault' THEN b.vault_name ELSE b.identity END AS subject,
    b.vault_name, b.identity, CAST(NULL AS STRING) AS ip,
    CAST(b.date AS TIMESTAMP) AS window_start,
    CAST(b.date + INTERVAL '1' DAY AS TIMESTAMP) AS window_end,
    CAST(b.value AS DOUBLE) AS observed, b.mean_28 AS baseline,
    (b.value - b.mean_28) / b.spread AS score,
    CONCAT(
      CASE WHEN b.scope = 'vault' THEN CONCAT('Vault ', b.vault_name)
           ELSE CONCAT('Identity ', b.identity, ' (all vaults)') END,
      ' made ', CAST(b.value AS STRING), ' calls in the day; its usual is ',
      CAST(CAST(ROUND(b.mean_28) AS BIGINT) AS STRING), ' a day (plus or minus ',
      CAST(CAST(ROUND(b.spread) AS BIGINT) AS STRING), ') over the last ',
      CAST(b.days_28 AS STRING), ' days.') AS description
  FROM b
  WHERE b.metric = 'operations' AND b.scope IN ('vault', 'identity')
    AND b.days_28 >= {{warmup_days}}
    AND b.mean_28 >= {{volume_min_baseline}}
    AND b.value >= {{volume_min_ratio}} * b.mean_28
    AND (b.value - b.mean_28) / b.spread >= {{score_threshold}}
),
bursts AS (
  SELECT b.*,
    CASE WHEN b.days_28 >= {{warmup_days}} THEN (b.value - b.mean_28) / b.spread END AS zscore
  FROM b
  WHERE (b.metric = 'secret_reads' AND b.value > {{mass_retrieval_threshold}})
     OR (b.metric = 'peak_list_read' AND b.value >= {{list_read_min_secrets}})
     OR (b.metric = 'peak_denied' AND b.value >= {{denied_burst_min}})
),
fired AS (
  SELECT * FROM bursts
  WHERE (days_28 >= {{warmup_days}} AND zscore >= {{score_threshold}})
     OR (days_28 < {{warmup_days}} AND lake_age >= {{warmup_days}})
),
mass AS (
  SELECT f.date, 'mass_secret_retrieval' AS kind, 'identity' AS subject_type,
    f.identity AS subject, CAST(NULL AS STRING) AS vault_name, f.identity,
    CAST(NULL AS STRING) AS ip,
    i.first_seen AS window_start, i.last_seen AS window_end,
    CAST(f.value AS DOUBLE) AS observed, f.mean_28 AS baseline, f.zscore AS score,
    CONCAT(f.identity, ' read secrets, keys or vaults ', CAST(f.value AS STRING),
      ' times in the day (SecretGet, KeyGet, VaultGet), more than ',
      CAST({{mass_retrieval_threshold}} AS STRING),
      CASE WHEN f.zscore IS NULL THEN '; it has less than a week of history.'
           ELSE CONCAT(' and far above its usual ',
                       CAST(CAST(ROUND(f.mean_28) AS BIGINT) AS STRING), ' a day.') END) AS description
  FROM fired f
  JOIN identity_days i ON i.date = f.date AND i.identity = f.identity
  WHERE f.metric = 'secret_reads'
),
peaks AS (
  SELECT f.date,
    CASE WHEN f.metric = 'peak_list_read' THEN 'list_then_read' ELSE 'denied_burst' END AS kind,
    'identity' AS subject_type, f.identity AS subject, f.vault_name, f.identity,
    CAST(NULL AS STRING) AS ip,
    CASE WHEN f.metric = 'peak_list_read' THEN d.peak_list_read_at ELSE d.peak_denied_at END AS window_start,
    CASE WHEN f.metric = 'peak_list_read' THEN d.peak_list_read_at ELSE d.peak_denied_at END
      + INTERVAL '{{window_minutes}}' MINUTE AS window_end,
    CAST(f.value AS DOUBLE) AS observed, f.mean_28 AS baseline, f.zscore AS score,
    CASE WHEN f.metric = 'peak_list_read'
      THEN CONCAT(f.identity, ' listed the secrets of vault ', f.vault_name, ' and read ',
                  CAST(f.value AS STRING), ' different secrets within {{window_minutes}} minutes.')
      ELSE CONCAT(f.identity, ' was denied (401/403) ', CAST(f.value AS STRING),
                  ' times within {{window_minutes}} minutes on vault ', f.vault_name, '.') END AS description
  FROM fired f
  JOIN identity_daily d
    ON d.date = f.date AND d.identity = f.identity AND d.vault_name = f.vault_name
  WHERE f.metric IN ('peak_list_read', 'peak_denied')
),
new_vault AS (
  SELECT b.date, 'new_identity_on_vault' AS kind, 'identity' AS subject_type,
    b.identity AS subject, b.vault_name, b.identity, CAST(NULL AS STRING) AS ip,
    d.first_seen AS window_start, d.last_seen AS window_end,
    CAST(b.value AS DOUBLE) AS observed, CAST(NULL AS DOUBLE) AS baseline,
    CAST(NULL AS DOUBLE) AS score,
    CONCAT(b.identity, ' used vault ', b.vault_name, ' for the first time (',
      CAST(b.value AS STRING), ' calls); the lake has ', CAST(b.lake_age AS STRING),
      ' earlier days.') AS description
  FROM b
  JOIN identity_daily d
    ON d.date = b.date AND d.identity = b.identity AND d.vault_name = b.vault_name
  WHERE b.scope = 'vault_identity' AND b.metric = 'operations'
    AND b.first_seen = b.date AND b.lake_age >= {{warmup_days}}
    AND b.value >= {{new_subject_min_operations}}
),
new_ip AS (
  SELECT b.date, 'new_ip_for_identity' AS kind, 'ip' AS subject_type,
    b.ip AS subject, CAST(NULL AS STRING) AS vault_name, b.identity, b.ip,
    d.first_seen AS window_start, d.last_seen AS window_end,
    CAST(b.value AS DOUBLE) AS observed, CAST(NULL AS DOUBLE) AS baseline,
    CAST(NULL AS DOUBLE) AS score,
    CONCAT(b.identity, ' called from ', b.ip, ' for the first time (',
      CAST(b.value AS STRING), ' calls); it has been seen since ',
      CAST(f.identity_first_seen AS STRING), '.') AS description
  FROM b
  JOIN identity_first f ON f.date = b.date AND f.identity = b.identity
  JOIN identity_ip_daily d ON d.date = b.date AND d.identity = b.identity AND d.ip = b.ip
  WHERE b.scope = 'identity_ip' AND b.metric = 'operations'
    AND b.first_seen = b.date AND f.identity_first_seen < b.date
    AND b.lake_age >= {{warmup_days}}
    AND b.value >= {{new_subject_min_operations}}
)
SELECT * FROM volume
UNION ALL SELECT * FROM mass
UNION ALL SELECT * FROM peaks
UNION ALL SELECT * FROM new_vault
UNION ALL SELECT * FROM new_ip
UNION ALL
SELECT date, kind, subject_type, subject, vault_name, identity, ip, window_start, window_end,
  observed, baseline, score, description
FROM sensitive_operations
WHERE date >= DATE '{{from}}' AND date <= DATE '{{to}}'
