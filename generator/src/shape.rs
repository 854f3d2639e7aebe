//! The same event in every shape Key Vault's `AuditEvent` takes: the diagnostic-settings
//! record the rest of the generator writes, re-encoded as a Log Analytics `AzureDiagnostics`
//! or `AZKVAuditLogs` row, or as a Managed HSM record. The re-encoding draws no random
//! numbers, so a seed yields the same events in every shape, and kvlake's decoder must
//! give the same raw columns for each (the column references are cited in
//! `kvlake_schemas::decode::shape`).
//!
//! The events stay a vault's events: the Managed HSM shape keeps the vault's resource id
//! and host, so that the decoded columns can be compared with the other shapes.

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::text::{push_uuid, uuid_v4};

/// The shape records are written in (`kvlake generate --shape`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Shape {
    /// The diagnostic-settings record (Event Hubs, storage archive).
    #[default]
    DiagnosticSettings,
    /// A Log Analytics `AzureDiagnostics` row: flattened columns with type suffixes.
    AzureDiagnostics,
    /// A Log Analytics `AZKVAuditLogs` row: `Identity` and `Properties` as dynamic columns.
    AzkvAuditLogs,
    /// A Managed HSM record: `identity` as JSON text, request fields at the top.
    ManagedHsm,
}

impl Shape {
    /// Every shape.
    pub const ALL: [Shape; 4] = [
        Shape::DiagnosticSettings,
        Shape::AzureDiagnostics,
        Shape::AzkvAuditLogs,
        Shape::ManagedHsm,
    ];

    /// The command-line name, the same as `kvlake_schemas::Shape::name`.
    pub fn name(self) -> &'static str {
        match self {
            Shape::DiagnosticSettings => "diagnostic-settings",
            Shape::AzureDiagnostics => "azurediagnostics",
            Shape::AzkvAuditLogs => "azkvauditlogs",
            Shape::ManagedHsm => "managedhsm",
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Shape {
    type Err = String;

    fn from_str(s: &str) -> Result<Shape, String> {
        Shape::ALL
            .into_iter()
            .find(|shape| shape.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!(
                    "unknown shape `{s}`: use diagnostic-settings, azurediagnostics, azkvauditlogs or managedhsm"
                )
            })
    }
}

/// Appends `record` (a diagnostic-settings record's JSON text) re-encoded as `shape`. Bytes
/// that are not a JSON object (the generator's bad records) are appended as they are.
pub(crate) fn reshape(tenant: &str, shape: Shape, record: &[u8], out: &mut Vec<u8>) {
    let rec = match serde_json::from_slice::<Value>(record) {
        Ok(Value::Object(rec)) if shape != Shape::DiagnosticSettings => rec,
        _ => return out.extend_from_slice(record),
    };
    let value = match shape {
        Shape::AzureDiagnostics => azure_diagnostics(tenant, rec),
        Shape::AzkvAuditLogs => azkv_audit_logs(tenant, rec),
        Shape::ManagedHsm => managed_hsm(tenant, rec),
        Shape::DiagnosticSettings => Value::Object(rec),
    };
    if serde_json::to_writer(&mut *out, &value).is_err() {
        out.extend_from_slice(record);
    }
}

/// The Log Analytics workspace id (`TenantId` of its rows), derived from the tenant.
fn workspace_id(tenant: &str) -> String {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in tenant.bytes() {
        h = (h ^ u128::from(b)).wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    let mut out = Vec::with_capacity(36);
    push_uuid(&mut out, uuid_v4(h), false);
    String::from_utf8(out).unwrap_or_default()
}

/// A deterministic coin per record (from its correlation id), for choices such as a
/// dynamic column written as an object or as JSON text.
fn coin(rec: &Map<String, Value>) -> bool {
    rec.get("correlationId")
        .and_then(Value::as_str)
        .and_then(|s| s.bytes().last())
        .is_some_and(|b| b % 2 == 1)
}

/// The parts of `/SUBSCRIPTIONS/<s>/RESOURCEGROUPS/<g>/PROVIDERS/<p>/<type>/<name>`.
fn resource_parts(id: &str) -> (String, String, String, String) {
    let parts: Vec<&str> = id.split('/').filter(|p| !p.is_empty()).collect();
    let after = |name: &str| {
        parts
            .iter()
            .position(|p| p.eq_ignore_ascii_case(name))
            .and_then(|i| parts.get(i + 1))
            .map_or(String::new(), |s| (*s).to_string())
    };
    let kind = parts.len().checked_sub(2).and_then(|i| parts.get(i));
    (
        after("subscriptions"),
        after("resourcegroups"),
        kind.map_or(String::new(), |s| s.to_ascii_uppercase()),
        parts.last().map_or(String::new(), |s| (*s).to_string()),
    )
}

/// `"23"` → 23, `"True"` → true: Log Analytics columns are typed.
fn typed_number(v: Value) -> Value {
    match &v {
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map_or(v.clone(), |n| Value::Number(n.into())),
        _ => v,
    }
}

fn typed_bool(v: Value) -> Value {
    match &v {
        Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
        _ => v,
    }
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| {
            matches!(i, 8 | 13 | 18 | 23) == (b == b'-') && (b == b'-' || b.is_ascii_hexdigit())
        })
}

/// Runs of characters other than letters and digits become one `_`, as Log Analytics
/// flattens claim URIs.
fn flatten_name(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut gap = false;
    for ch in key.chars() {
        if ch.is_ascii_alphanumeric() {
            if gap && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.push(ch);
        } else {
            gap = true;
        }
    }
    out
}

/// Writes `value` under `name` the `AzureDiagnostics` way: objects flattened with `_`,
/// a type suffix per value, arrays as JSON text, nulls left out (Log Analytics stores none).
fn put_flat(out: &mut Map<String, Value>, name: &str, value: Value) {
    match value {
        Value::Null => {}
        Value::Object(m) => {
            for (k, v) in m {
                put_flat(out, &format!("{name}_{k}"), v);
            }
        }
        Value::Array(_) => {
            out.insert(format!("{name}_s"), Value::String(value.to_string()));
        }
        Value::Bool(_) => {
            out.insert(format!("{name}_b"), value);
        }
        Value::Number(_) => {
            out.insert(format!("{name}_d"), value);
        }
        Value::String(ref s) => {
            let suffix = if is_uuid(s) { "g" } else { "s" };
            out.insert(format!("{name}_{suffix}"), value);
        }
    }
}

/// The top-level names both Log Analytics tables give the record's common fields.
fn log_analytics_name(key: &str, azure_diagnostics: bool) -> Option<&'static str> {
    Some(match key {
        "time" => "TimeGenerated",
        "operationName" => "OperationName",
        "operationVersion" => "OperationVersion",
        "resultType" => "ResultType",
        "resultSignature" => "ResultSignature",
        "resultDescription" => "ResultDescription",
        "durationMs" => "DurationMs",
        "correlationId" => "CorrelationId",
        "callerIpAddress" if azure_diagnostics => "CallerIPAddress",
        "callerIpAddress" => "CallerIpAddress",
        "category" if azure_diagnostics => "Category",
        _ => return None,
    })
}

fn azure_diagnostics(tenant: &str, rec: Map<String, Value>) -> Value {
    let mut out = Map::new();
    out.insert("TenantId".into(), Value::String(workspace_id(tenant)));
    for (key, value) in rec {
        match (key.as_str(), value) {
            ("resourceId", Value::String(id)) => {
                let (subscription, group, kind, name) = resource_parts(&id);
                out.insert(
                    "SubscriptionId".into(),
                    Value::String(subscription.to_ascii_lowercase()),
                );
                out.insert("ResourceGroup".into(), Value::String(group));
                out.insert(
                    "ResourceProvider".into(),
                    Value::String("MICROSOFT.KEYVAULT".into()),
                );
                out.insert("ResourceType".into(), Value::String(kind));
                out.insert("Resource".into(), Value::String(name));
                out.insert("_ResourceId".into(), Value::String(id.to_ascii_lowercase()));
                out.insert("ResourceId".into(), Value::String(id));
            }
            ("identity", Value::Object(identity)) => {
                for (k, v) in identity {
                    match (k.as_str(), v) {
                        ("claim", Value::Object(claims)) => {
                            for (claim, v) in claims {
                                put_flat(
                                    &mut out,
                                    &format!("identity_claim_{}", flatten_name(&claim)),
                                    v,
                                );
                            }
                        }
                        (_, v) => put_flat(&mut out, &format!("identity_{k}"), v),
                    }
                }
            }
            ("properties", Value::Object(props)) => {
                for (k, v) in props {
                    let v = match k.as_str() {
                        "httpStatusCode" => typed_number(v),
                        "isAccessPolicyMatch" | "isRbacAuthorized" => typed_bool(v),
                        _ => v,
                    };
                    put_flat(&mut out, &k, v);
                }
            }
            (k, v) => match log_analytics_name(k, true) {
                Some("DurationMs") => {
                    out.insert("DurationMs".into(), typed_number(v));
                }
                Some(name) => {
                    out.insert(name.into(), v);
                }
                None => put_flat(&mut out, k, v),
            },
        }
    }
    out.insert("SourceSystem".into(), Value::String("Azure".into()));
    out.insert("Type".into(), Value::String("AzureDiagnostics".into()));
    Value::Object(out)
}

/// `AZKVAuditLogs` columns that hold a member of the record's `properties`.
fn azkv_column(key: &str) -> Option<&'static str> {
    Some(match key {
        "id" => "Id",
        "requestUri" => "RequestUri",
        "httpStatusCode" => "HttpStatusCode",
        "clientInfo" => "ClientInfo",
        "isAccessPolicyMatch" => "IsAccessPolicyMatch",
        "isRbacAuthorized" => "IsRbacAuthorized",
        "tlsVersion" => "Tlsversion",
        "appliedAssignmentId" => "AppliedAssignmentId",
        "addressAuthorizationType" => "AddressAuthorizationType",
        "trustedService" => "TrustedService",
        "secretProperties" => "SecretProperties",
        "keyProperties" => "KeyProperties",
        "certificateProperties" => "CertificateProperties",
        _ => return None,
    })
}

/// A dynamic column: the object itself, or (as the Logs Query API returns them) its JSON text.
fn dynamic(value: Map<String, Value>, as_text: bool) -> Value {
    if as_text {
        Value::String(Value::Object(value).to_string())
    } else {
        Value::Object(value)
    }
}

fn azkv_audit_logs(tenant: &str, rec: Map<String, Value>) -> Value {
    let as_text = coin(&rec);
    let mut out = Map::new();
    out.insert("TenantId".into(), Value::String(workspace_id(tenant)));
    for (key, value) in rec {
        match (key.as_str(), value) {
            ("resourceId", Value::String(id)) => {
                let (subscription, ..) = resource_parts(&id);
                out.insert(
                    "_SubscriptionId".into(),
                    Value::String(subscription.to_ascii_lowercase()),
                );
                out.insert("_ResourceId".into(), Value::String(id.to_ascii_lowercase()));
            }
            // The table holds one category.
            ("category", _) => {}
            ("identity", Value::Object(identity)) => {
                out.insert("Identity".into(), dynamic(identity, as_text));
            }
            ("properties", Value::Object(props)) => {
                let mut rest = Map::new();
                for (k, v) in props {
                    match azkv_column(&k) {
                        Some(col @ "HttpStatusCode") => {
                            out.insert(col.into(), typed_number(v));
                        }
                        Some(col @ ("IsAccessPolicyMatch" | "IsRbacAuthorized")) => {
                            out.insert(col.into(), typed_bool(v));
                        }
                        Some(col) => {
                            out.insert(col.into(), v);
                        }
                        None => {
                            rest.insert(k, v);
                        }
                    }
                }
                if !rest.is_empty() {
                    out.insert("Properties".into(), dynamic(rest, as_text));
                }
            }
            (k, v) => match log_analytics_name(k, false) {
                Some("DurationMs") => {
                    out.insert("DurationMs".into(), typed_number(v));
                }
                Some(name) => {
                    out.insert(name.into(), v);
                }
                None => {
                    out.insert(k.into(), v);
                }
            },
        }
    }
    out.insert("SourceSystem".into(), Value::String("Azure".into()));
    out.insert("Type".into(), Value::String("AZKVAuditLogs".into()));
    Value::Object(out)
}

/// The Managed HSM's claims: a claim URI becomes a namespace object holding `claims`
/// (`http_schemas_microsoft_com_identity` → `claims` → `objectidentifier`).
fn hsm_claims(claims: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (claim, v) in claims {
        let flat = flatten_name(&claim);
        match (claim.contains("://"), flat.rsplit_once("_claims_")) {
            (true, Some((namespace, leaf))) => {
                let ns = out
                    .entry(namespace.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(ns) = ns
                    && let Value::Object(inner) = ns
                        .entry("claims".to_string())
                        .or_insert_with(|| Value::Object(Map::new()))
                {
                    inner.insert(leaf.to_string(), v);
                }
            }
            _ => {
                out.insert(claim, v);
            }
        }
    }
    out
}

fn managed_hsm(tenant: &str, rec: Map<String, Value>) -> Value {
    let mut out = Map::new();
    out.insert("TenantId".into(), Value::String(tenant.to_string()));
    let mut pool = String::new();
    for (key, value) in rec {
        match (key.as_str(), value) {
            ("resourceId", Value::String(id)) => {
                let (_, group, _, name) = resource_parts(&id);
                out.insert("resourceGroup".into(), Value::String(group));
                out.insert(
                    "resourceProvider".into(),
                    Value::String("MICROSOFT.KEYVAULT".into()),
                );
                out.insert("resource".into(), Value::String(name.clone()));
                pool = name.to_ascii_lowercase();
                out.insert("resourceId".into(), Value::String(id));
            }
            ("identity", Value::Object(mut identity)) => {
                if let Some(Value::Object(claims)) = identity.remove("claim") {
                    identity.insert("claim".into(), Value::Object(hsm_claims(claims)));
                }
                out.insert(
                    "identity".into(),
                    Value::String(Value::Object(identity).to_string()),
                );
            }
            ("properties", Value::Object(mut props)) => {
                for k in ["clientInfo", "httpStatusCode", "requestUri"] {
                    if let Some(v) = props.remove(k) {
                        out.insert(k.into(), v);
                    }
                }
                props.insert("PoolType".into(), Value::String("M-HSM".into()));
                props.insert("sku_Family".into(), Value::String("B".into()));
                props.insert("sku_Name".into(), Value::String("Standard_B1".into()));
                out.insert("properties".into(), Value::Object(props));
            }
            (k, v) => {
                out.insert(k.into(), v);
            }
        }
    }
    out.insert("subnetId".into(), Value::String("(unknown)".into()));
    out.insert("PoolName".into(), Value::String(pool));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for s in Shape::ALL {
            assert_eq!(s.name().parse::<Shape>(), Ok(s));
        }
        assert!("csv".parse::<Shape>().is_err());
    }

    #[test]
    fn helpers() {
        assert!(is_uuid("0f0e0d0c-0b0a-0908-0706-050403020100"));
        assert!(!is_uuid("kv-prod-01"));
        assert_eq!(
            flatten_name("http://schemas.microsoft.com/identity/claims/objectidentifier"),
            "http_schemas_microsoft_com_identity_claims_objectidentifier"
        );
        assert_eq!(workspace_id("t").len(), 36);
        let claims = hsm_claims(
            serde_json::from_str(r#"{"appid":"a","http://schemas.microsoft.com/identity/claims/objectidentifier":"o","http://schemas.microsoft.com/identity/claims/tenantid":"t"}"#)
                .unwrap(),
        );
        assert_eq!(
            Value::Object(claims),
            serde_json::json!({"appid":"a","http_schemas_microsoft_com_identity":{"claims":{"objectidentifier":"o","tenantid":"t"}}})
        );
    }
}
