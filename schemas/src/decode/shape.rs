//! The shapes one Key Vault `AuditEvent` takes, and how each field name of each shape maps
//! onto the raw columns. The decoder reads every shape with one pass over a record: each
//! key is looked up here, and what was seen decides the shape afterwards ([`Evidence`]).
//!
//! Sources, all Microsoft's:
//!
//! - diagnostic-settings record: *Azure Key Vault logging* (learn.microsoft.com/azure/key-vault/general/logging)
//!   and the common top-level schema of resource logs
//!   (learn.microsoft.com/azure/azure-monitor/essentials/resource-logs-schema).
//! - `AzureDiagnostics` row: the table reference
//!   (learn.microsoft.com/azure/azure-monitor/reference/tables/azurediagnostics: `CallerIPAddress`,
//!   `httpStatusCode_d`, `id_s`, `requestUri_s`, `identity_claim_appid_g`, `isAccessPolicyMatch_b`,
//!   `properties_sku_Family_s`, `properties_tenantId_g`, `Resource`, `ResourceId`, `SubscriptionId`,
//!   `TenantId` = the workspace, `Type`, ...). Nested members are joined with `_` and get a type
//!   suffix (`_s` string, `_d` double, `_b` bool, `_g` guid, `_t` datetime, ...); the claim
//!   URIs are flattened the same way (`identity_claim_http_schemas_microsoft_com_identity_claims_objectidentifier_g`,
//!   as Microsoft Sentinel's Key Vault rules query them).
//! - `AZKVAuditLogs` row: the table reference
//!   (learn.microsoft.com/azure/azure-monitor/reference/tables/azkvauditlogs: `TimeGenerated`,
//!   `Identity` and `Properties` dynamic, `HttpStatusCode`, `Id`, `RequestUri`, `ClientInfo`,
//!   `IsAccessPolicyMatch`, `IsRbacAuthorized`, `Tlsversion`, `_ResourceId`, `TenantId` = the
//!   workspace, `Type` = `AZKVAuditLogs`, ...). Dynamic columns arrive as JSON objects or, from
//!   the Logs Query API, as JSON text.
//! - Managed HSM record: *Managed HSM logging* (learn.microsoft.com/azure/key-vault/managed-hsm/logging):
//!   the same provider and `AuditEvent` category, `identity` as JSON text whose claims nest
//!   (`{"claim":{"http_schemas_microsoft_com_identity":{"claims":{"objectidentifier":...}}}}`),
//!   `clientInfo`, `httpStatusCode` and `requestUri` at the top, and HSM fields
//!   (`PoolName`, `subnetId`, `properties.PoolType`, ...) that land in `extra`.

use std::fmt;
use std::str::FromStr;

use super::c;

/// A shape of the Key Vault `AuditEvent` record; every one decodes to the same raw row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// The record a diagnostic setting sends to Event Hubs or archives to storage
    /// (`time`, `identity.claim`, `properties`).
    DiagnosticSettings,
    /// A row of the Log Analytics `AzureDiagnostics` table: flattened, type-suffixed columns.
    AzureDiagnostics,
    /// A row of the Log Analytics resource-specific `AZKVAuditLogs` table.
    AzkvAuditLogs,
    /// A Managed HSM diagnostic-settings record: `identity` as JSON text, request fields at the top.
    ManagedHsm,
}

impl Shape {
    /// Every shape, in the order the command line lists them.
    pub const ALL: [Shape; 4] = [
        Shape::DiagnosticSettings,
        Shape::AzureDiagnostics,
        Shape::AzkvAuditLogs,
        Shape::ManagedHsm,
    ];

    /// The name used on the command line (`diagnostic-settings`, `azurediagnostics`,
    /// `azkvauditlogs`, `managedhsm`).
    pub fn name(self) -> &'static str {
        match self {
            Shape::DiagnosticSettings => "diagnostic-settings",
            Shape::AzureDiagnostics => "azurediagnostics",
            Shape::AzkvAuditLogs => "azkvauditlogs",
            Shape::ManagedHsm => "managedhsm",
        }
    }

    /// How dead-letter messages name a record of this shape.
    pub fn label(self) -> &'static str {
        match self {
            Shape::DiagnosticSettings => "diagnostic-settings record",
            Shape::AzureDiagnostics => "AzureDiagnostics row",
            Shape::AzkvAuditLogs => "AZKVAuditLogs row",
            Shape::ManagedHsm => "Managed HSM record",
        }
    }

    /// A row of a Log Analytics table (where an empty cell is how a missing value reads).
    pub fn is_log_analytics(self) -> bool {
        matches!(self, Shape::AzureDiagnostics | Shape::AzkvAuditLogs)
    }

    pub(crate) fn bit(self) -> u8 {
        match self {
            Shape::DiagnosticSettings => DIAG,
            Shape::AzureDiagnostics => AD,
            Shape::AzkvAuditLogs => AZKV,
            Shape::ManagedHsm => HSM,
        }
    }

    /// Source name of the event time.
    pub(crate) fn time_field(self) -> &'static str {
        if self.is_log_analytics() {
            "TimeGenerated"
        } else {
            "time"
        }
    }

    /// Source name of the operation.
    pub(crate) fn operation_field(self) -> &'static str {
        if self.is_log_analytics() {
            "OperationName"
        } else {
            "operationName"
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A shape name that is none of [`Shape::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown shape `{0}`: use diagnostic-settings, azurediagnostics, azkvauditlogs or managedhsm"
)]
pub struct UnknownShape(pub String);

impl FromStr for Shape {
    type Err = UnknownShape;

    /// The names of [`Shape::name`], in any case, `-`/`_` optional; also `hsm`.
    fn from_str(s: &str) -> Result<Shape, UnknownShape> {
        let norm: String = s
            .chars()
            .filter(|ch| !matches!(ch, '-' | '_' | ' '))
            .map(|ch| ch.to_ascii_lowercase())
            .collect();
        Ok(match norm.as_str() {
            "diagnosticsettings" | "diagnosticsetting" => Shape::DiagnosticSettings,
            "azurediagnostics" => Shape::AzureDiagnostics,
            "azkvauditlogs" => Shape::AzkvAuditLogs,
            "managedhsm" | "hsm" => Shape::ManagedHsm,
            _ => return Err(UnknownShape(s.to_owned())),
        })
    }
}

pub(crate) const DIAG: u8 = 1;
pub(crate) const AD: u8 = 2;
pub(crate) const AZKV: u8 = 4;
pub(crate) const HSM: u8 = 8;
/// Every shape: automatic detection.
pub(crate) const ANY: u8 = DIAG | AD | AZKV | HSM;

/// What a key of a record (or of one of its objects) feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// A raw column.
    Col(usize),
    /// The identity object (`identity`, `Identity`).
    Identity,
    /// The properties object (`properties`, `Properties`).
    Properties,
    /// `identity.claim`.
    Claims,
    /// A claim namespace of the Managed HSM's nested claims (`http_schemas_microsoft_com_identity`).
    NestedClaims,
    /// `TimeGenerated`: the event time of Log Analytics rows, used when `time` is absent.
    TimeGenerated,
    /// `_ResourceId`: lower-cased by Log Analytics, used when `resourceId` is absent.
    LaResourceId,
    /// `Type`: the Log Analytics table name; kept in `extra`, read to tell the shape.
    LaType,
    /// A flattened member of a nested object of an `AzureDiagnostics` row: the JSON column
    /// it rebuilds and where the member path starts and ends in the key.
    Flat(usize, usize, usize),
    /// Nothing: the field goes to `extra`.
    Unknown,
}

/// What the keys of one record said about its shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Evidence {
    /// `time` was present.
    pub time: bool,
    /// `TimeGenerated` was present.
    pub time_generated: bool,
    /// A known key spelled the Log Analytics way (capital first letter, or `_`).
    pub la_spelling: bool,
    /// An `AzureDiagnostics` flattened column (`requestUri_s`, `identity_claim_oid_g`, ...).
    pub flattened: bool,
    /// Request fields at the top of a camelCase record (`httpStatusCode`, `requestUri`, ...).
    pub hsm_top: bool,
    /// `identity` was JSON text.
    pub identity_text: bool,
    /// The value of `Type`, when it names a table kvlake knows.
    pub la_type: Option<Shape>,
    /// `resourceId` names a managed HSM.
    pub hsm_resource: bool,
}

impl Evidence {
    pub(crate) fn merge(&mut self, o: &Evidence) {
        self.time |= o.time;
        self.time_generated |= o.time_generated;
        self.la_spelling |= o.la_spelling;
        self.flattened |= o.flattened;
        self.hsm_top |= o.hsm_top;
        self.identity_text |= o.identity_text;
        self.la_type = self.la_type.or(o.la_type);
        self.hsm_resource |= o.hsm_resource;
    }

    /// The shape the keys point to.
    pub(crate) fn shape(&self) -> Shape {
        let log_analytics = self.time_generated
            || self.la_type.is_some()
            || self.flattened
            || (self.la_spelling && !self.time);
        if log_analytics {
            match self.la_type {
                Some(shape) => shape,
                None if self.flattened => Shape::AzureDiagnostics,
                None => Shape::AzkvAuditLogs,
            }
        } else if self.identity_text || self.hsm_top || self.hsm_resource {
            Shape::ManagedHsm
        } else {
            Shape::DiagnosticSettings
        }
    }
}

/// Lower-cases an ASCII key into `buf`; empty when it does not fit (no key of interest is longer).
fn lower<'b>(key: &str, buf: &'b mut [u8; 32]) -> &'b [u8] {
    let b = key.as_bytes();
    if b.len() > buf.len() {
        return &[];
    }
    for (d, s) in buf.iter_mut().zip(b) {
        *d = s.to_ascii_lowercase();
    }
    &buf[..b.len()]
}

/// Looks up a key of the top level of a record among the shapes `allow` lets in; returns
/// the slot and what the key says about the shape.
pub(crate) fn top_slot(key: &str, allow: u8, ev: &mut Evidence) -> Slot {
    // The diagnostic-settings spellings first, as they are: what nearly every record
    // holds, found without lower-casing (the same slots as their lower-cased forms below).
    let exact = match key {
        "time" => Some((Slot::Col(c::TIME), DIAG | HSM)),
        "resourceId" => Some((Slot::Col(c::RESOURCE_ID), DIAG | HSM | AD)),
        "operationName" => Some((Slot::Col(c::OPERATION_NAME), ANY)),
        "operationVersion" => Some((Slot::Col(c::OPERATION_VERSION), ANY)),
        "category" => Some((Slot::Col(c::CATEGORY), ANY)),
        "resultType" => Some((Slot::Col(c::RESULT_TYPE), ANY)),
        "resultSignature" => Some((Slot::Col(c::RESULT_SIGNATURE), ANY)),
        "resultDescription" => Some((Slot::Col(c::RESULT_DESCRIPTION), ANY)),
        "durationMs" => Some((Slot::Col(c::DURATION_MS), ANY)),
        "callerIpAddress" => Some((Slot::Col(c::CALLER_IP_ADDRESS), ANY)),
        "correlationId" => Some((Slot::Col(c::CORRELATION_ID), ANY)),
        "identity" => Some((Slot::Identity, DIAG | HSM | AZKV)),
        "properties" => Some((Slot::Properties, DIAG | HSM | AZKV)),
        _ => None,
    };
    let (slot, mask) = match exact {
        Some(found) => found,
        None => lowered_slot(key),
    };
    top_slot_of(key, slot, mask, allow, ev)
}

/// [`top_slot`]'s table, on the key lower-cased.
fn lowered_slot(key: &str) -> (Slot, u8) {
    let mut buf = [0u8; 32];
    match lower(key, &mut buf) {
        b"time" => (Slot::Col(c::TIME), DIAG | HSM),
        b"timegenerated" => (Slot::TimeGenerated, AD | AZKV),
        b"resourceid" => (Slot::Col(c::RESOURCE_ID), DIAG | HSM | AD),
        b"_resourceid" => (Slot::LaResourceId, AD | AZKV),
        b"operationname" => (Slot::Col(c::OPERATION_NAME), ANY),
        b"operationversion" => (Slot::Col(c::OPERATION_VERSION), ANY),
        b"category" => (Slot::Col(c::CATEGORY), ANY),
        b"resulttype" => (Slot::Col(c::RESULT_TYPE), ANY),
        b"resultsignature" => (Slot::Col(c::RESULT_SIGNATURE), ANY),
        b"resultdescription" => (Slot::Col(c::RESULT_DESCRIPTION), ANY),
        b"durationms" => (Slot::Col(c::DURATION_MS), ANY),
        b"calleripaddress" => (Slot::Col(c::CALLER_IP_ADDRESS), ANY),
        b"correlationid" => (Slot::Col(c::CORRELATION_ID), ANY),
        b"identity" => (Slot::Identity, DIAG | HSM | AZKV),
        b"properties" => (Slot::Properties, DIAG | HSM | AZKV),
        // Lower-case `type` is a field of some diagnostic-settings records; only `Type` is the table.
        b"type" if key == "Type" => (Slot::LaType, AD | AZKV),
        b"id" if key == "Id" => (Slot::Col(c::PROPERTIES_ID), AZKV),
        b"httpstatuscode" => (Slot::Col(c::HTTP_STATUS_CODE), HSM | AZKV),
        b"requesturi" => (Slot::Col(c::REQUEST_URI), HSM | AZKV),
        b"clientinfo" => (Slot::Col(c::CLIENT_INFO), HSM | AZKV),
        b"isaccesspolicymatch" => (Slot::Col(c::IS_ACCESS_POLICY_MATCH), HSM | AZKV),
        b"isrbacauthorized" => (Slot::Col(c::IS_RBAC_AUTHORIZED), HSM | AZKV),
        b"tlsversion" => (Slot::Col(c::TLS_VERSION), HSM | AZKV),
        b"appliedassignmentid" => (Slot::Col(c::APPLIED_ASSIGNMENT_ID), HSM | AZKV),
        b"addressauthorizationtype" => (Slot::Col(c::ADDRESS_AUTHORIZATION_TYPE), HSM | AZKV),
        b"trustedservice" => (Slot::Col(c::TRUSTED_SERVICE), HSM | AZKV),
        b"secretproperties" => (Slot::Col(c::SECRET_PROPERTIES), HSM | AZKV),
        b"keyproperties" => (Slot::Col(c::KEY_PROPERTIES), HSM | AZKV),
        b"certificateproperties" => (Slot::Col(c::CERTIFICATE_PROPERTIES), HSM | AZKV),
        _ => (Slot::Unknown, 0),
    }
}

/// What a top-level key found in the table (`slot`, for the shapes in `mask`) feeds
/// when `allow` lets those shapes in, and what it says about the shape.
fn top_slot_of(key: &str, slot: Slot, mask: u8, allow: u8, ev: &mut Evidence) -> Slot {
    if mask & allow != 0 {
        let first = key.as_bytes().first().copied().unwrap_or(b'a');
        let la_spelled = first.is_ascii_uppercase() || first == b'_';
        ev.la_spelling |= la_spelled;
        match slot {
            Slot::Col(c::TIME) => ev.time = true,
            Slot::TimeGenerated => ev.time_generated = true,
            Slot::Col(_) if mask == HSM | AZKV && !la_spelled => ev.hsm_top = true,
            _ => {}
        }
        return slot;
    }
    if allow & AD != 0
        && let Some(slot) = flattened_slot(key)
    {
        ev.flattened = true;
        return slot;
    }
    Slot::Unknown
}

/// `name` without a Log Analytics type suffix (`_s`, `_d`, `_b`, `_g`, `_t`, any one letter).
fn strip_type_suffix(name: &str) -> &str {
    let b = name.as_bytes();
    match b {
        [.., b'_', s] if b.len() > 2 && s.is_ascii_alphabetic() => &name[..b.len() - 2],
        _ => name,
    }
}

/// A flattened column of an `AzureDiagnostics` row.
fn flattened_slot(key: &str) -> Option<Slot> {
    let base = strip_type_suffix(key);
    if let Some(claim) = base.strip_prefix("identity_claim_") {
        return claim_slot(claim).map(Slot::Col);
    }
    for (prefix, col) in [
        ("properties_", c::NESTED_PROPERTIES),
        ("secretProperties_", c::SECRET_PROPERTIES),
        ("keyProperties_", c::KEY_PROPERTIES),
        ("certificateProperties_", c::CERTIFICATE_PROPERTIES),
    ] {
        if base.len() > prefix.len() && base.starts_with(prefix) {
            return Some(Slot::Flat(col, prefix.len(), base.len()));
        }
    }
    property_slot(base).map(Slot::Col)
}

/// A member of `properties` (diagnostic-settings, Managed HSM, `AZKVAuditLogs.Properties`).
pub(crate) fn property_slot(key: &str) -> Option<usize> {
    Some(match key {
        "id" => c::PROPERTIES_ID,
        "requestUri" => c::REQUEST_URI,
        "httpStatusCode" => c::HTTP_STATUS_CODE,
        "clientInfo" => c::CLIENT_INFO,
        "isAccessPolicyMatch" => c::IS_ACCESS_POLICY_MATCH,
        "isRbacAuthorized" => c::IS_RBAC_AUTHORIZED,
        "tlsVersion" => c::TLS_VERSION,
        "appliedAssignmentId" => c::APPLIED_ASSIGNMENT_ID,
        "addressAuthorizationType" => c::ADDRESS_AUTHORIZATION_TYPE,
        "trustedService" => c::TRUSTED_SERVICE,
        "secretProperties" => c::SECRET_PROPERTIES,
        "keyProperties" => c::KEY_PROPERTIES,
        "certificateProperties" => c::CERTIFICATE_PROPERTIES,
        "properties" => c::NESTED_PROPERTIES,
        _ => return None,
    })
}

/// A claim, by its short name, its URI, or its URI flattened (`http_schemas_..._objectidentifier`,
/// `http_schemas_microsoft_com_identity.claims.objectidentifier`).
pub(crate) fn claim_slot(key: &str) -> Option<usize> {
    exact_claim(key).or_else(|| flat_claim(&flatten(key)))
}

fn exact_claim(key: &str) -> Option<usize> {
    Some(match key {
        "oid" | "http://schemas.microsoft.com/identity/claims/objectidentifier" => {
            c::IDENTITY_OBJECT_ID
        }
        "upn" | "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn" => c::IDENTITY_UPN,
        "unique_name" | "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name" => {
            c::IDENTITY_UNIQUE_NAME
        }
        "appid" | "azp" | "http://schemas.microsoft.com/identity/claims/appid" => {
            c::IDENTITY_APP_ID
        }
        "tid" | "http://schemas.microsoft.com/identity/claims/tenantid" => c::IDENTITY_TENANT_ID,
        "scp" | "http://schemas.microsoft.com/identity/claims/scope" => c::IDENTITY_SCOPE,
        "appidacr" | "azpacr" => c::IDENTITY_APP_ID_ACR,
        "ipaddr" | "http://schemas.microsoft.com/claims/ipaddress" => c::IDENTITY_IP_ADDRESS,
        "idtyp" => c::IDENTITY_TYPE,
        "xms_mirid" => c::IDENTITY_MANAGED_IDENTITY_ID,
        "xms_az_nwperimid" => c::IDENTITY_NETWORK_PERIMETER_IDS,
        _ => return None,
    })
}

/// The claim URIs, flattened.
const FLAT_URIS: [(&str, usize); 7] = [
    (
        "http_schemas_microsoft_com_identity_claims_objectidentifier",
        c::IDENTITY_OBJECT_ID,
    ),
    (
        "http_schemas_xmlsoap_org_ws_2005_05_identity_claims_upn",
        c::IDENTITY_UPN,
    ),
    (
        "http_schemas_xmlsoap_org_ws_2005_05_identity_claims_name",
        c::IDENTITY_UNIQUE_NAME,
    ),
    (
        "http_schemas_microsoft_com_identity_claims_appid",
        c::IDENTITY_APP_ID,
    ),
    (
        "http_schemas_microsoft_com_identity_claims_tenantid",
        c::IDENTITY_TENANT_ID,
    ),
    (
        "http_schemas_microsoft_com_identity_claims_scope",
        c::IDENTITY_SCOPE,
    ),
    (
        "http_schemas_microsoft_com_claims_ipaddress",
        c::IDENTITY_IP_ADDRESS,
    ),
];

fn flat_claim(flat: &str) -> Option<usize> {
    exact_claim(flat).or_else(|| {
        FLAT_URIS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(flat))
            .map(|(_, col)| *col)
    })
}

/// Whether `path` (flattened) is a namespace that nests further claims, as the Managed HSM
/// writes them (`http_schemas_microsoft_com_identity` → `claims` → `objectidentifier`).
pub(crate) fn is_claim_namespace(path: &str) -> bool {
    let flat = flatten(path);
    !flat.is_empty()
        && FLAT_URIS.iter().any(|(name, _)| {
            name.len() > flat.len()
                && name.as_bytes()[flat.len()] == b'_'
                && name[..flat.len()].eq_ignore_ascii_case(&flat)
        })
}

/// Every run of characters other than ASCII letters and digits becomes one `_`, as Log
/// Analytics flattens claim URIs (`http://schemas.microsoft.com/...` → `http_schemas_microsoft_com_...`).
pub(crate) fn flatten(key: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Shape::ALL {
            assert_eq!(s.name().parse::<Shape>(), Ok(s));
            assert_eq!(s.to_string(), s.name());
        }
        assert_eq!("AZKVAuditLogs".parse::<Shape>(), Ok(Shape::AzkvAuditLogs));
        assert_eq!("managed_hsm".parse::<Shape>(), Ok(Shape::ManagedHsm));
        assert!("csv".parse::<Shape>().is_err());
    }

    #[test]
    fn claim_names_in_every_spelling() {
        for k in [
            "oid",
            "http://schemas.microsoft.com/identity/claims/objectidentifier",
            "http_schemas_microsoft_com_identity_claims_objectidentifier",
            "http_schemas_microsoft_com_identity.claims.objectidentifier",
        ] {
            assert_eq!(claim_slot(k), Some(c::IDENTITY_OBJECT_ID), "{k}");
        }
        assert_eq!(
            claim_slot("http_schemas_microsoft_com_claims_ipaddress"),
            Some(c::IDENTITY_IP_ADDRESS)
        );
        assert!(is_claim_namespace("http_schemas_microsoft_com_identity"));
        assert!(is_claim_namespace(
            "http_schemas_microsoft_com_identity.claims"
        ));
        assert!(!is_claim_namespace(
            "http_schemas_microsoft_com_identity_claims_objectidentifier"
        ));
        assert!(!is_claim_namespace("newclaim"));
    }

    #[test]
    fn flattened_columns() {
        assert_eq!(strip_type_suffix("httpStatusCode_d"), "httpStatusCode");
        assert_eq!(
            strip_type_suffix("identity_claim_oid_g"),
            "identity_claim_oid"
        );
        assert_eq!(strip_type_suffix("xms_az_nwperimid"), "xms_az_nwperimid");
        assert_eq!(
            flattened_slot("httpStatusCode_s"),
            Some(Slot::Col(c::HTTP_STATUS_CODE))
        );
        assert_eq!(
            flattened_slot("identity_claim_xms_az_nwperimid_s"),
            Some(Slot::Col(c::IDENTITY_NETWORK_PERIMETER_IDS))
        );
        assert_eq!(
            flattened_slot("properties_sku_Family_s"),
            Some(Slot::Flat(c::NESTED_PROPERTIES, 11, 21))
        );
        assert_eq!(flattened_slot("location_s"), None);
    }
}
