//! One Key Vault event written in each shape, the samples following Microsoft's column
//! references (see [`crate::decode::shape`]): every shape must fill the same columns as the
//! diagnostic-settings record of the same event.

use arrow::array::{Array, RecordBatch};
use arrow::util::display::{ArrayFormatter, FormatOptions};

use super::*;

/// The source coordinates and `extra` differ by nature between shapes.
const NOT_COMPARED: [&str; 6] = [
    "_source",
    "_partition",
    "_offset",
    "_record_index",
    "_enqueued_time",
    "extra",
];

fn cell(b: &RecordBatch, col: usize, row: usize) -> Option<String> {
    let a = b.column(col);
    if a.is_null(row) {
        return None;
    }
    Some(match COLUMNS[col].kind {
        // The formatter knows no named zones without chrono-tz; the micros say it all.
        Kind::Timestamp => a
            .as_primitive::<TimestampMicrosecondType>()
            .value(row)
            .to_string(),
        _ => ArrayFormatter::try_new(a.as_ref(), &FormatOptions::default())
            .unwrap()
            .value(row)
            .to_string(),
    })
}

/// Row `i` of `a` and row `j` of `b` hold the same values, but for [`NOT_COMPARED`];
/// `resource_id` case aside (`AZKVAuditLogs` has only the lower-cased `_ResourceId`).
pub(super) fn assert_same_columns(
    a: &RecordBatch,
    i: usize,
    b: &RecordBatch,
    j: usize,
    what: &str,
) {
    for (col, meta) in COLUMNS.iter().enumerate() {
        if NOT_COMPARED.contains(&meta.name) {
            continue;
        }
        let (x, y) = (cell(a, col, i), cell(b, col, j));
        if meta.name == "resource_id" {
            assert_eq!(
                x.map(|s| s.to_ascii_lowercase()),
                y.map(|s| s.to_ascii_lowercase()),
                "{what}: {}",
                meta.name
            );
        } else {
            assert_eq!(x, y, "{what}: {}", meta.name);
        }
    }
}

fn decode_one(msg: &str) -> RecordBatch {
    let out = decode(msg);
    assert_eq!(out.dead_letter.num_rows(), 0, "{:?}", reasons(&out));
    assert_eq!(out.raw.num_rows(), 1);
    out.raw
}

fn extra(b: &RecordBatch) -> serde_json::Value {
    text(b, "extra", 0).map_or(serde_json::Value::Null, |t| {
        serde_json::from_str(&t).unwrap()
    })
}

/// Key Vault logging (learn.microsoft.com/azure/key-vault/general/logging): a SecretGet.
const DIAGNOSTIC_SETTINGS: &str = r#"{"time":"2025-01-07T20:00:00.0483028Z","category":"AuditEvent","operationName":"SecretGet","resultType":"Success","correlationId":"8f5a6f5e-3c1b-4c7e-9b0e-6f1a2b3c4d5e","callerIpAddress":"203.0.113.7","identity":{"claim":{"http://schemas.microsoft.com/identity/claims/objectidentifier":"11111111-2222-3333-4444-555555555555","appid":"66666666-7777-8888-9999-000000000000","http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn":"alice@contoso.com","tid":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee","idtyp":"user","appidacr":"0","xms_az_nwperimid":[]}},"properties":{"id":"https://example-vault.vault.azure.net/secrets/example-secret/0123456789abcdef0123456789abcdef","clientInfo":"azsdk-net-Security.KeyVault.Secrets/4.3.0","httpStatusCode":200,"requestUri":"https://example-vault.vault.azure.net/secrets/example-secret/?api-version=7.3","isAccessPolicyMatch":true,"isRbacAuthorized":false,"tlsVersion":"TLS1_2"},"resourceId":"/SUBSCRIPTIONS/0F0E0D0C-0B0A-0908-0706-050403020100/RESOURCEGROUPS/EXAMPLE-RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/EXAMPLE-VAULT","operationVersion":"7.3","resultSignature":"OK","durationMs":"16"}"#;

/// The same event as an `AzureDiagnostics` row (table reference: `TimeGenerated`,
/// `CallerIPAddress`, `httpStatusCode_d`, `id_s`, `requestUri_s`, `clientInfo_s`,
/// `isAccessPolicyMatch_b`, `identity_claim_appid_g`, `Resource`, `ResourceGroup`,
/// `SubscriptionId`, `TenantId` = the workspace, `Type`), as the Logs Query API returns it:
/// with the empty cells of columns other resources use.
const AZURE_DIAGNOSTICS: &str = r#"{"TenantId":"99999999-8888-7777-6666-555555555555","TimeGenerated":"2025-01-07T20:00:00.0483028Z","ResourceId":"/SUBSCRIPTIONS/0F0E0D0C-0B0A-0908-0706-050403020100/RESOURCEGROUPS/EXAMPLE-RG/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/EXAMPLE-VAULT","Category":"AuditEvent","ResourceGroup":"EXAMPLE-RG","SubscriptionId":"0f0e0d0c-0b0a-0908-0706-050403020100","ResourceProvider":"MICROSOFT.KEYVAULT","Resource":"EXAMPLE-VAULT","ResourceType":"VAULTS","OperationName":"SecretGet","ResultType":"Success","CorrelationId":"8f5a6f5e-3c1b-4c7e-9b0e-6f1a2b3c4d5e","ResultDescription":"","requestUri_s":"https://example-vault.vault.azure.net/secrets/example-secret/?api-version=7.3","DurationMs":16,"CallerIPAddress":"203.0.113.7","OperationVersion":"7.3","ResultSignature":"OK","id_s":"https://example-vault.vault.azure.net/secrets/example-secret/0123456789abcdef0123456789abcdef","clientInfo_s":"azsdk-net-Security.KeyVault.Secrets/4.3.0","httpStatusCode_d":200.0,"identity_claim_appid_g":"66666666-7777-8888-9999-000000000000","isAccessPolicyMatch_b":true,"isRbacAuthorized_b":false,"identity_claim_http_schemas_microsoft_com_identity_claims_objectidentifier_g":"11111111-2222-3333-4444-555555555555","identity_claim_http_schemas_xmlsoap_org_ws_2005_05_identity_claims_upn_s":"alice@contoso.com","identity_claim_tid_g":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee","identity_claim_appidacr_s":"0","identity_claim_xms_az_nwperimid_s":"[]","identity_claim_idtyp_s":"user","identity_claim_oid_g":"","tlsVersion_s":"TLS1_2","trustedService_s":"","action_s":"","Caller_s":null,"SourceSystem":"Azure","Type":"AzureDiagnostics","_ResourceId":"/subscriptions/0f0e0d0c-0b0a-0908-0706-050403020100/resourcegroups/example-rg/providers/microsoft.keyvault/vaults/example-vault"}"#;

/// The same event as an `AZKVAuditLogs` row (table reference), `Identity` and `Properties`
/// as the JSON text the Logs Query API returns for dynamic columns.
const AZKV_AUDIT_LOGS: &str = r#"{"TenantId":"99999999-8888-7777-6666-555555555555","TimeGenerated":"2025-01-07T20:00:00.0483028Z","OperationName":"SecretGet","OperationVersion":"7.3","ResultType":"Success","ResultSignature":"OK","ResultDescription":"","DurationMs":16,"CallerIpAddress":"203.0.113.7","CorrelationId":"8f5a6f5e-3c1b-4c7e-9b0e-6f1a2b3c4d5e","Identity":"{\"claim\":{\"http://schemas.microsoft.com/identity/claims/objectidentifier\":\"11111111-2222-3333-4444-555555555555\",\"appid\":\"66666666-7777-8888-9999-000000000000\",\"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn\":\"alice@contoso.com\",\"tid\":\"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee\",\"idtyp\":\"user\",\"appidacr\":\"0\",\"xms_az_nwperimid\":[]}}","Properties":"{\"id\":\"https://example-vault.vault.azure.net/secrets/example-secret/0123456789abcdef0123456789abcdef\",\"requestUri\":\"https://example-vault.vault.azure.net/secrets/example-secret/?api-version=7.3\",\"httpStatusCode\":200}","HttpStatusCode":200,"Id":"https://example-vault.vault.azure.net/secrets/example-secret/0123456789abcdef0123456789abcdef","RequestUri":"https://example-vault.vault.azure.net/secrets/example-secret/?api-version=7.3","ClientInfo":"azsdk-net-Security.KeyVault.Secrets/4.3.0","IsAccessPolicyMatch":true,"IsRbacAuthorized":false,"Tlsversion":"TLS1_2","SubnetId":"","SourceSystem":"Azure","_SubscriptionId":"0f0e0d0c-0b0a-0908-0706-050403020100","_ResourceId":"/subscriptions/0f0e0d0c-0b0a-0908-0706-050403020100/resourcegroups/example-rg/providers/microsoft.keyvault/vaults/example-vault","Type":"AZKVAuditLogs"}"#;

/// A Managed HSM BackupCreate, as *Managed HSM logging* shows it (learn.microsoft.com/azure/key-vault/managed-hsm/logging).
const MANAGED_HSM: &str = r#"{"TenantId":"aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee","time":"2020-08-31T19:52:39.763Z","resourceId":"/SUBSCRIPTIONS/0F0E0D0C-0B0A-0908-0706-050403020100/RESOURCEGROUPS/CONTOSORESOURCEGROUP/PROVIDERS/MICROSOFT.KEYVAULT/MANAGEDHSMS/CONTOSOMHSM","operationName":"BackupCreate","operationVersion":"7.0","category":"AuditEvent","resultType":"Success","properties":{"PoolType":"M-HSM","sku_Family":"B","sku_Name":"Standard_B1"},"durationMs":488,"callerIpAddress":"198.51.100.4","identity":"{\"claim\":{\"appid\":\"66666666-7777-8888-9999-000000000000\",\"http_schemas_microsoft_com_identity\":{\"claims\":{\"objectidentifier\":\"11111111-2222-3333-4444-555555555555\"}},\"http_schemas_xmlsoap_org_ws_2005_05_identity\":{\"claims\":{\"upn\":\"admin@contoso.com\"}}}}","clientInfo":"azsdk-python-core/1.7.0 Python/3.8.2","correlationId":"aaaa0000-bb11-2222-33cc-444444dddddd","subnetId":"(unknown)","httpStatusCode":202,"PoolName":"mhsmdemo","requestUri":"https://ContosoMHSM.managedhsm.azure.net/backup","resourceGroup":"ContosoResourceGroup","resourceProvider":"MICROSOFT.KEYVAULT","resource":"ContosoMHSM","resourceType":"managedHSMs"}"#;

/// The HSM event above as a vault's diagnostic-settings record would carry it.
const MANAGED_HSM_AS_DIAGNOSTIC_SETTINGS: &str = r#"{"time":"2020-08-31T19:52:39.763Z","resourceId":"/SUBSCRIPTIONS/0F0E0D0C-0B0A-0908-0706-050403020100/RESOURCEGROUPS/CONTOSORESOURCEGROUP/PROVIDERS/MICROSOFT.KEYVAULT/MANAGEDHSMS/CONTOSOMHSM","operationName":"BackupCreate","operationVersion":"7.0","category":"AuditEvent","resultType":"Success","durationMs":488,"callerIpAddress":"198.51.100.4","correlationId":"aaaa0000-bb11-2222-33cc-444444dddddd","identity":{"claim":{"appid":"66666666-7777-8888-9999-000000000000","http://schemas.microsoft.com/identity/claims/objectidentifier":"11111111-2222-3333-4444-555555555555","http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn":"admin@contoso.com"}},"properties":{"clientInfo":"azsdk-python-core/1.7.0 Python/3.8.2","httpStatusCode":202,"requestUri":"https://ContosoMHSM.managedhsm.azure.net/backup"}}"#;

#[test]
fn azurediagnostics_row_fills_the_columns_of_the_diagnostic_settings_record() {
    let want = decode_one(DIAGNOSTIC_SETTINGS);
    let got = decode_one(AZURE_DIAGNOSTICS);
    assert_same_columns(&want, 0, &got, 0, "AzureDiagnostics");
    assert_eq!(
        text(&got, "identity_object_id", 0).as_deref(),
        Some("11111111-2222-3333-4444-555555555555")
    );
    assert_eq!(
        text(&got, "vault_name", 0).as_deref(),
        Some("example-vault")
    );
    assert_eq!(
        text(&got, "object_name", 0).as_deref(),
        Some("example-secret")
    );
    assert_eq!(int32(&got, "http_status_code", 0), Some(200));
    // Workspace columns kept; the empty cells of other resources' columns are not data.
    assert_eq!(
        extra(&got),
        serde_json::json!({
            "TenantId": "99999999-8888-7777-6666-555555555555",
            "ResourceGroup": "EXAMPLE-RG",
            "SubscriptionId": "0f0e0d0c-0b0a-0908-0706-050403020100",
            "ResourceProvider": "MICROSOFT.KEYVAULT",
            "Resource": "EXAMPLE-VAULT",
            "ResourceType": "VAULTS",
            "SourceSystem": "Azure",
            "Type": "AzureDiagnostics",
            "_ResourceId": "/subscriptions/0f0e0d0c-0b0a-0908-0706-050403020100/resourcegroups/example-rg/providers/microsoft.keyvault/vaults/example-vault"
        })
    );
}

#[test]
fn azkvauditlogs_row_fills_the_columns_of_the_diagnostic_settings_record() {
    let want = decode_one(DIAGNOSTIC_SETTINGS);
    let got = decode_one(AZKV_AUDIT_LOGS);
    assert_same_columns(&want, 0, &got, 0, "AZKVAuditLogs, dynamic columns as text");
    assert_eq!(text(&got, "category", 0).as_deref(), Some("AuditEvent"));
    let e = extra(&got);
    assert_eq!(e["TenantId"], "99999999-8888-7777-6666-555555555555");
    assert_eq!(e["Type"], "AZKVAuditLogs");
    assert!(e.get("SubnetId").is_none(), "{e}");
    // Dynamic columns as JSON objects (a data export) read the same.
    let mut row: serde_json::Value = serde_json::from_str(AZKV_AUDIT_LOGS).unwrap();
    for k in ["Identity", "Properties"] {
        let inner: serde_json::Value = serde_json::from_str(row[k].as_str().unwrap()).unwrap();
        row[k] = inner;
    }
    let got = decode_one(&row.to_string());
    assert_same_columns(
        &want,
        0,
        &got,
        0,
        "AZKVAuditLogs, dynamic columns as objects",
    );
}

#[test]
fn managed_hsm_record_fills_the_columns_of_the_diagnostic_settings_record() {
    let want = decode_one(MANAGED_HSM_AS_DIAGNOSTIC_SETTINGS);
    let got = decode_one(MANAGED_HSM);
    assert_same_columns(&want, 0, &got, 0, "Managed HSM");
    assert_eq!(
        text(&got, "identity_object_id", 0).as_deref(),
        Some("11111111-2222-3333-4444-555555555555")
    );
    assert_eq!(
        text(&got, "identity_upn", 0).as_deref(),
        Some("admin@contoso.com")
    );
    assert_eq!(text(&got, "vault_name", 0).as_deref(), Some("contosomhsm"));
    assert_eq!(int32(&got, "http_status_code", 0), Some(202));
    assert_eq!(
        extra(&got),
        serde_json::json!({
            "TenantId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
            "properties.PoolType": "M-HSM",
            "properties.sku_Family": "B",
            "properties.sku_Name": "Standard_B1",
            "subnetId": "(unknown)",
            "PoolName": "mhsmdemo",
            "resourceGroup": "ContosoResourceGroup",
            "resourceProvider": "MICROSOFT.KEYVAULT",
            "resource": "ContosoMHSM",
            "resourceType": "managedHSMs"
        })
    );
    // The claim path written with dots, in one key, reads the same.
    let dotted = MANAGED_HSM.replace(
        r#"\"http_schemas_microsoft_com_identity\":{\"claims\":{\"objectidentifier\":\"11111111-2222-3333-4444-555555555555\"}}"#,
        r#"\"http_schemas_microsoft_com_identity.claims.objectidentifier\":\"11111111-2222-3333-4444-555555555555\""#,
    );
    assert_ne!(dotted, MANAGED_HSM);
    assert_same_columns(
        &want,
        0,
        &decode_one(&dotted),
        0,
        "Managed HSM, dotted claim",
    );
}

#[test]
fn each_record_of_a_file_is_read_in_its_own_shape() {
    let lines = [
        DIAGNOSTIC_SETTINGS,
        AZURE_DIAGNOSTICS,
        AZKV_AUDIT_LOGS,
        MANAGED_HSM,
    ]
    .join("\n");
    let out = decode(&lines);
    assert_eq!(out.dead_letter.num_rows(), 0, "{:?}", reasons(&out));
    assert_eq!(out.raw.num_rows(), 4);
    assert_same_columns(&out.raw, 0, &out.raw, 1, "row 1");
    assert_same_columns(&out.raw, 0, &out.raw, 2, "row 2");
    assert_eq!(
        text(&out.raw, "operation_name", 3).as_deref(),
        Some("BackupCreate")
    );
}

#[test]
fn a_byte_order_mark_is_skipped() {
    let lines = format!("\u{feff}{DIAGNOSTIC_SETTINGS}\n{AZURE_DIAGNOSTICS}\n");
    assert_eq!(decode(&lines).raw.num_rows(), 2);
    let envelope = format!("\u{feff}{{\"records\":[{DIAGNOSTIC_SETTINGS}]}}");
    assert_eq!(decode(&envelope).raw.num_rows(), 1);
    let bare = format!("\u{feff}{AZKV_AUDIT_LOGS}");
    assert_eq!(decode(&bare).raw.num_rows(), 1);
}

fn decode_as(msg: &str, shape: Shape) -> DecodeOutput {
    let mut d = Decoder::new(DecodeOptions::default()).with_shape(Some(shape));
    d.decode_message(msg.as_bytes(), &COORDS);
    d.finish()
}

#[test]
fn a_forced_shape_reads_only_its_own_names() {
    let out = decode_as(AZURE_DIAGNOSTICS, Shape::AzureDiagnostics);
    assert_eq!(out.raw.num_rows(), 1, "{:?}", reasons(&out));
    assert_same_columns(&decode_one(DIAGNOSTIC_SETTINGS), 0, &out.raw, 0, "forced");
    for (msg, shape, field) in [
        (AZURE_DIAGNOSTICS, Shape::DiagnosticSettings, "time"),
        (DIAGNOSTIC_SETTINGS, Shape::AzkvAuditLogs, "TimeGenerated"),
    ] {
        let out = decode_as(msg, shape);
        assert_eq!(reasons(&out), vec![(Some(0), "missing_field".to_string())]);
        let m = text(&out.dead_letter, "message", 0).unwrap();
        assert!(
            m.contains(shape.label()) && m.contains(&format!("`{field}`")),
            "{m}"
        );
    }
    // Forced to diagnostic settings, an HSM's request fields at the top are unknown fields.
    let out = decode_as(MANAGED_HSM, Shape::DiagnosticSettings);
    assert_eq!(int32(&out.raw, "http_status_code", 0), None);
    assert_eq!(extra(&out.raw)["httpStatusCode"], 202);
}

#[test]
fn errors_name_the_shape_and_the_field_as_the_record_spells_it() {
    let cases = [
        (
            AZURE_DIAGNOSTICS.replace(
                r#""httpStatusCode_d":200.0"#,
                r#""httpStatusCode_s":"two hundred""#,
            ),
            "AzureDiagnostics row",
            "httpStatusCode_s",
        ),
        (
            AZKV_AUDIT_LOGS.replace(
                r#""IsRbacAuthorized":false"#,
                r#""IsRbacAuthorized":"perhaps""#,
            ),
            "AZKVAuditLogs row",
            "IsRbacAuthorized",
        ),
        (
            AZKV_AUDIT_LOGS.replace(
                r#""TimeGenerated":"2025-01-07T20:00:00.0483028Z""#,
                r#""TimeGenerated":"yesterday""#,
            ),
            "AZKVAuditLogs row",
            "TimeGenerated",
        ),
        (
            MANAGED_HSM.replace(r#""durationMs":488"#, r#""durationMs":"slow""#),
            "Managed HSM record",
            "durationMs",
        ),
        (
            DIAGNOSTIC_SETTINGS.replace(r#""httpStatusCode":200"#, r#""httpStatusCode":true"#),
            "diagnostic-settings record",
            "properties.httpStatusCode",
        ),
        (
            AZKV_AUDIT_LOGS.replace(r#""Identity":"{"#, r#""Identity":"not json {"#),
            "AZKVAuditLogs row",
            "Identity",
        ),
    ];
    for (msg, label, field) in cases {
        let out = decode(&msg);
        assert_eq!(
            reasons(&out),
            vec![(Some(0), "uncoercible_value".to_string())],
            "{field}"
        );
        let m = text(&out.dead_letter, "message", 0).unwrap();
        assert!(
            m.contains(label) && m.contains(&format!("`{field}`")),
            "{m}"
        );
    }
}

#[test]
fn flattened_objects_of_azurediagnostics_are_rebuilt() {
    let row = r#"{"TimeGenerated":"2026-11-01T10:00:00Z","OperationName":"VaultGet","Type":"AzureDiagnostics","properties_sku_Family_s":"A","properties_sku_Name_s":"standard","properties_enableSoftDelete_b":true,"properties_softDeleteRetentionInDays_d":90,"properties_tenantId_g":"","secretProperties_attributes_enabled_b":true,"secretProperties_contentType_s":"text/plain","addedAccessPolicy_Permissions_keys_s":"[\"get\"]"}"#;
    let b = decode_one(row);
    let json = |col: &str| -> serde_json::Value {
        serde_json::from_str(&text(&b, col, 0).unwrap()).unwrap()
    };
    assert_eq!(
        json("nested_properties"),
        serde_json::json!({"sku": {"Family": "A", "Name": "standard"}, "enableSoftDelete": true, "softDeleteRetentionInDays": 90})
    );
    assert_eq!(
        json("secret_properties"),
        serde_json::json!({"attributes": {"enabled": true}, "contentType": "text/plain"})
    );
    assert_eq!(
        extra(&b)["addedAccessPolicy_Permissions_keys_s"],
        "[\"get\"]"
    );
}
