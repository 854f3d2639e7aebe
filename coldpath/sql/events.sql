-- events: the committed raw rows with the derived columns every definition uses.
-- Registered as a view over `raw`; the identity of a caller is its object id, else its
-- app id, else its UPN (lower case). `bucket` numbers the 10-minute slots of the UTC day.
SELECT
  CAST(time AS DATE) AS date,
  time,
  vault_name,
  operation_name,
  result_class,
  http_status_code,
  duration_ms,
  caller_ip_address AS ip,
  LOWER(COALESCE(identity_object_id, identity_app_id, identity_upn)) AS identity,
  LOWER(identity_object_id) AS object_id,
  LOWER(identity_app_id) AS app_id,
  identity_upn AS upn,
  identity_type,
  object_kind,
  object_name,
  CAST(EXTRACT(HOUR FROM time) * 6 + FLOOR(EXTRACT(MINUTE FROM time) / 10) AS INT) AS bucket
FROM raw
