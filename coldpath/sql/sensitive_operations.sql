-- The anomaly rows that need no history: every successful sensitive operation (Microsoft
-- Sentinel, "Sensitive Azure Key Vault operations"), one row per day, caller, vault and
-- operation. Computed with the daily tables; kept as they are when only history changes.
SELECT
  date,
  'sensitive_operation' AS kind,
  'identity' AS subject_type,
  COALESCE(identity, '(anonymous)') AS subject,
  vault_name,
  identity,
  MIN(ip) AS ip,
  MIN(time) AS window_start,
  MAX(time) AS window_end,
  CAST(COUNT(*) AS DOUBLE) AS observed,
  CAST(NULL AS DOUBLE) AS baseline,
  CAST(NULL AS DOUBLE) AS score,
  CONCAT(COALESCE(identity, 'an anonymous caller'), ' ran ', operation_name, ' successfully ',
         CAST(COUNT(*) AS STRING), ' time(s) on vault ', COALESCE(vault_name, '(unknown)'),
         ', a sensitive operation.') AS description
FROM events
WHERE result_class = 'success'
  AND operation_name IN ({{sensitive_operations}})
GROUP BY date, identity, vault_name, operation_name
