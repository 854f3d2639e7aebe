//! One audit event and its JSON text: the record writer with all the format variants
//! real Key Vault exports show (time precision, numbers as strings, long claim names, ...).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::text::{
    TimeStyle, push_ip, push_json_str, push_padded, push_time, push_u64, push_uuid, uuid_v4,
};
use crate::world::{KeyOrder, OPS, Target, Vault, World, chance, push_object_name};

/// The operation of an event: one of the normal mix, or any name an attack asks for.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Op {
    Known(usize),
    Custom(String),
}

impl Op {
    /// The operation called `name`.
    pub(crate) fn named(name: &str) -> Op {
        crate::world::op_index(name).map_or_else(|| Op::Custom(name.to_owned()), Op::Known)
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Op::Known(i) => OPS.get(*i).map_or("Unknown", |op| op.name),
            Op::Custom(name) => name,
        }
    }

    pub(crate) fn target(&self) -> Target {
        match self {
            Op::Known(i) => OPS.get(*i).map_or(Target::Vault, |op| op.target),
            Op::Custom(name) if name.starts_with("Secret") => Target::Secret,
            Op::Custom(name) if name.starts_with("Key") => Target::Key,
            Op::Custom(name) if name.starts_with("Certificate") => Target::Certificate,
            Op::Custom(_) => Target::Vault,
        }
    }

    fn is_list(&self) -> bool {
        match self {
            Op::Known(i) => OPS.get(*i).is_some_and(|op| op.list),
            Op::Custom(name) => name.ends_with("List"),
        }
    }

    fn action(&self) -> Option<&'static str> {
        match self {
            Op::Known(i) => OPS.get(*i).and_then(|op| op.action),
            Op::Custom(_) => None,
        }
    }

    fn base_ms(&self) -> f64 {
        match self {
            Op::Known(i) => OPS.get(*i).map_or(20.0, |op| op.base_ms),
            Op::Custom(_) => 40.0,
        }
    }
}

/// The HTTP outcome of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Ok,
    Unauthorized,
    Forbidden,
    NotFound,
    TooManyRequests,
    ServerError,
}

impl Status {
    /// Draws an outcome with the real-world mix (~93% OK).
    pub(crate) fn draw(rng: &mut ChaCha8Rng) -> Status {
        let x = rng.random::<f64>();
        if x < 0.9295 {
            Status::Ok
        } else if x < 0.9595 {
            Status::Unauthorized
        } else if x < 0.9795 {
            Status::Forbidden
        } else if x < 0.9945 {
            Status::NotFound
        } else if x < 0.9995 {
            Status::TooManyRequests
        } else {
            Status::ServerError
        }
    }

    fn code(self) -> u64 {
        match self {
            Status::Ok => 200,
            Status::Unauthorized => 401,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::TooManyRequests => 429,
            Status::ServerError => 500,
        }
    }

    fn signature(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Unauthorized => "Unauthorized",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::TooManyRequests => "TooManyRequests",
            Status::ServerError => "InternalServerError",
        }
    }

    /// Key Vault reports `Success` for every answered request, errors included.
    fn result_type(self) -> &'static str {
        match self {
            Status::ServerError => "Failure",
            _ => "Success",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Status::Ok => "",
            Status::Unauthorized => "AKV10000: Request is missing a Bearer or PoP token.",
            Status::Forbidden => {
                "Caller is not authorized to perform action on resource.\r\nIf role assignments, deny assignments or role definitions were changed recently, please observe propagation time."
            }
            Status::NotFound => "The requested object was not found.",
            Status::TooManyRequests => "Rate limit is exceeded. Try again in 6 seconds.",
            Status::ServerError => "An internal error occurred. Please retry.",
        }
    }
}

/// One call to a vault, before it is written out.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Event {
    /// Event time, UTC micros since the epoch.
    pub time: i64,
    pub op: Op,
    pub vault: usize,
    pub identity: usize,
    /// No `identity` field at all (unauthenticated 401s).
    pub anonymous: bool,
    pub ip: [u8; 4],
    pub status: Status,
    /// Object index inside the vault's collection of the operation's target.
    pub object: usize,
}

/// A deliberate defect of a bad message's single record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Defect {
    None,
    /// A 0xFF byte inside the `correlationId` string.
    NotUtf8,
    /// `"durationMs":"fast"`.
    UncoercibleDuration,
    /// No `operationName`.
    MissingOperationName,
}

#[derive(Clone, Copy)]
enum Field {
    Time,
    Category,
    OperationName,
    ResultType,
    CorrelationId,
    CallerIp,
    Identity,
    Properties,
    ResourceId,
    OperationVersion,
    ResultSignature,
    ResultDescription,
    DurationMs,
    Type,
    Location,
}

const EVENT_HUB_ORDER: [Field; 14] = [
    Field::Time,
    Field::Category,
    Field::OperationName,
    Field::ResultType,
    Field::CorrelationId,
    Field::CallerIp,
    Field::Identity,
    Field::Properties,
    Field::ResourceId,
    Field::OperationVersion,
    Field::ResultSignature,
    Field::ResultDescription,
    Field::DurationMs,
    Field::Type,
];

const ARCHIVE_ORDER: [Field; 14] = [
    Field::Time,
    Field::ResourceId,
    Field::OperationName,
    Field::OperationVersion,
    Field::Category,
    Field::ResultType,
    Field::ResultSignature,
    Field::ResultDescription,
    Field::DurationMs,
    Field::CallerIp,
    Field::CorrelationId,
    Field::Identity,
    Field::Properties,
    Field::Location,
];

/// How a JSON value is spelled in one record.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Spelling {
    Native,
    String,
    Missing,
}

/// Every random choice of one record, drawn up front in a fixed order.
struct Style {
    time: TimeStyle,
    tick: u8,
    correlation: u128,
    duration_ms: u64,
    duration: Spelling,
    status_code: Spelling,
    booleans: Spelling,
    description: bool,
    long_claims: bool,
    nested: bool,
    tls13: bool,
    client_info: bool,
}

impl Style {
    fn draw(rng: &mut ChaCha8Rng, event: &Event) -> Style {
        let time = match rng.random::<f64>() {
            x if x < 0.85 => TimeStyle::Ticks,
            x if x < 0.92 => TimeStyle::Millis,
            x if x < 0.96 => TimeStyle::Seconds,
            _ => TimeStyle::TicksOffset,
        };
        let duration = match rng.random::<f64>() {
            x if x < 0.6 => Spelling::String,
            x if x < 0.95 => Spelling::Native,
            _ => Spelling::Missing,
        };
        let exp = -(1.0 - rng.random::<f64>()).ln();
        Style {
            time,
            tick: rng.random_range(0..10),
            correlation: rng.random(),
            duration_ms: (event.op.base_ms() * (0.3 + exp)).round() as u64,
            duration,
            status_code: if chance(rng, 0.2) {
                Spelling::String
            } else {
                Spelling::Native
            },
            booleans: if chance(rng, 0.1) {
                Spelling::String
            } else {
                Spelling::Native
            },
            description: chance(rng, 0.88),
            long_claims: chance(rng, 0.5),
            nested: chance(rng, 0.2),
            tls13: chance(rng, 0.15),
            client_info: chance(rng, 0.98),
        }
    }
}

/// Writes the keys of one JSON object, with commas between them.
struct Keys {
    first: bool,
}

impl Keys {
    fn new() -> Keys {
        Keys { first: true }
    }

    fn key(&mut self, out: &mut Vec<u8>, key: &str) {
        if !self.first {
            out.push(b',');
        }
        self.first = false;
        out.push(b'"');
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"\":");
    }
}

const LONG_OID: &str = "http://schemas.microsoft.com/identity/claims/objectidentifier";
const LONG_UPN: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn";
const LONG_TID: &str = "http://schemas.microsoft.com/identity/claims/tenantid";
const LONG_SCP: &str = "http://schemas.microsoft.com/identity/claims/scope";
const LONG_NAME: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name";

/// Appends the JSON object of `event`.
pub(crate) fn write_record(
    world: &World,
    rng: &mut ChaCha8Rng,
    event: &Event,
    defect: Defect,
    out: &mut Vec<u8>,
) {
    let style = Style::draw(rng, event);
    let Some(vault) = world.vaults.get(event.vault) else {
        return out.extend_from_slice(b"{}");
    };
    let order = match vault.order {
        KeyOrder::EventHub => &EVENT_HUB_ORDER,
        KeyOrder::Archive => &ARCHIVE_ORDER,
    };
    let identity = world.identities.get(event.identity);
    let api_version = identity.map_or("7.4", |identity| identity.api_version);
    let mut keys = Keys::new();
    out.push(b'{');
    for field in order {
        match field {
            Field::Time => {
                keys.key(out, "time");
                push_time(out, event.time, style.tick, style.time);
            }
            Field::Category => {
                keys.key(out, "category");
                out.extend_from_slice(b"\"AuditEvent\"");
            }
            Field::OperationName => {
                if defect != Defect::MissingOperationName {
                    keys.key(out, "operationName");
                    push_json_str(out, event.op.name());
                }
            }
            Field::ResultType => {
                keys.key(out, "resultType");
                push_json_str(out, event.status.result_type());
            }
            Field::CorrelationId => {
                keys.key(out, "correlationId");
                out.push(b'"');
                push_uuid(out, uuid_v4(style.correlation), false);
                if defect == Defect::NotUtf8 {
                    out.push(0xff);
                }
                out.push(b'"');
            }
            Field::CallerIp => {
                keys.key(out, "callerIpAddress");
                out.push(b'"');
                push_ip(out, event.ip);
                out.push(b'"');
            }
            Field::Identity => {
                if let (false, Some(identity)) = (event.anonymous, identity) {
                    keys.key(out, "identity");
                    write_identity(out, world, identity, event.ip, style.long_claims);
                }
            }
            Field::Properties => {
                keys.key(out, "properties");
                write_properties(
                    out,
                    world,
                    vault,
                    event,
                    &style,
                    api_version,
                    identity.map(|i| i.client_info),
                );
            }
            Field::ResourceId => {
                keys.key(out, "resourceId");
                push_json_str(out, &vault.resource_id);
            }
            Field::OperationVersion => {
                keys.key(out, "operationVersion");
                push_json_str(out, api_version);
            }
            Field::ResultSignature => {
                keys.key(out, "resultSignature");
                push_json_str(out, event.status.signature());
            }
            Field::ResultDescription => {
                if style.description {
                    keys.key(out, "resultDescription");
                    push_json_str(out, event.status.description());
                }
            }
            Field::DurationMs => match (defect, style.duration) {
                (Defect::UncoercibleDuration, _) => {
                    keys.key(out, "durationMs");
                    out.extend_from_slice(b"\"fast\"");
                }
                (_, Spelling::Missing) => {}
                (_, Spelling::Native) => {
                    keys.key(out, "durationMs");
                    push_u64(out, style.duration_ms);
                }
                (_, Spelling::String) => {
                    keys.key(out, "durationMs");
                    out.push(b'"');
                    push_u64(out, style.duration_ms);
                    out.push(b'"');
                }
            },
            Field::Type => {
                keys.key(out, "type");
                out.extend_from_slice(b"\"AzureDiagnostics\"");
            }
            Field::Location => {
                keys.key(out, "location");
                push_json_str(out, vault.location);
            }
        }
    }
    out.push(b'}');
}

fn write_identity(
    out: &mut Vec<u8>,
    world: &World,
    identity: &crate::world::Identity,
    ip: [u8; 4],
    long: bool,
) {
    let name = |short: &'static str, long_name: &'static str| if long { long_name } else { short };
    let mut keys = Keys::new();
    out.extend_from_slice(b"{\"claim\":{");
    keys.key(out, name("oid", LONG_OID));
    push_json_str(out, &identity.oid);
    if let Some(upn) = &identity.upn {
        keys.key(out, name("upn", LONG_UPN));
        push_json_str(out, upn);
        keys.key(out, name("unique_name", LONG_NAME));
        push_json_str(out, upn);
    }
    keys.key(out, "appid");
    push_json_str(out, &identity.appid);
    keys.key(out, name("tid", LONG_TID));
    push_json_str(out, &world.tenant);
    if identity.upn.is_some() {
        keys.key(out, name("scp", LONG_SCP));
        out.extend_from_slice(b"\"user_impersonation\"");
    }
    keys.key(out, "appidacr");
    push_json_str(out, identity.appidacr);
    keys.key(out, "idtyp");
    out.extend_from_slice(if identity.upn.is_some() {
        b"\"user\""
    } else {
        b"\"app\""
    });
    if identity.upn.is_some() {
        keys.key(out, "ipaddr");
        out.push(b'"');
        push_ip(out, ip);
        out.push(b'"');
    }
    if let Some(mirid) = &identity.mirid {
        keys.key(out, "xms_mirid");
        push_json_str(out, mirid);
    }
    if let Some(perimeter) = &identity.perimeter {
        keys.key(out, "xms_az_nwperimid");
        out.extend_from_slice(perimeter.as_bytes());
    }
    out.extend_from_slice(b"}}");
}

fn write_properties(
    out: &mut Vec<u8>,
    world: &World,
    vault: &Vault,
    event: &Event,
    style: &Style,
    api_version: &str,
    client_info: Option<&'static str>,
) {
    let target = event.op.target();
    let collection = target.collection();
    let object = (target != Target::Vault && !event.op.is_list()).then_some(event.object);
    let versioned = !event.op.name().ends_with("Delete");
    let mut keys = Keys::new();
    out.push(b'{');

    keys.key(out, "id");
    out.push(b'"');
    out.extend_from_slice(vault.host.as_bytes());
    out.push(b'/');
    if target != Target::Vault {
        out.extend_from_slice(collection.as_bytes());
        if let Some(object) = object {
            out.push(b'/');
            push_object_name(out, target, object);
            if versioned {
                out.push(b'/');
                world.push_version(out, event.vault, target, object);
            }
        }
    }
    out.push(b'"');

    keys.key(out, "requestUri");
    out.push(b'"');
    out.extend_from_slice(vault.host.as_bytes());
    out.push(b'/');
    if target != Target::Vault {
        out.extend_from_slice(collection.as_bytes());
        if let Some(object) = object {
            out.push(b'/');
            push_object_name(out, target, object);
            if let Some(action) = event.op.action() {
                if action != "create" {
                    out.push(b'/');
                    world.push_version(out, event.vault, target, object);
                }
                out.push(b'/');
                out.extend_from_slice(action.as_bytes());
            }
        }
    }
    if event.op.name() != "Authentication" {
        out.extend_from_slice(b"?api-version=");
        out.extend_from_slice(api_version.as_bytes());
        if event.op.is_list() {
            out.extend_from_slice(b"&maxresults=25");
        }
    }
    out.push(b'"');

    keys.key(out, "httpStatusCode");
    match style.status_code {
        Spelling::String => {
            out.push(b'"');
            push_padded(out, event.status.code(), 3);
            out.push(b'"');
        }
        _ => push_u64(out, event.status.code()),
    }

    if let (true, Some(client_info)) = (style.client_info, client_info) {
        keys.key(out, "clientInfo");
        push_json_str(out, client_info);
    }

    let authorized = event.status == Status::Ok;
    for (key, value) in [
        ("isAccessPolicyMatch", authorized && !vault.rbac),
        ("isRbacAuthorized", authorized && vault.rbac),
    ] {
        keys.key(out, key);
        let text: &[u8] = match (style.booleans, value) {
            (Spelling::String, true) => b"\"true\"",
            (Spelling::String, false) => b"\"False\"",
            (_, true) => b"true",
            (_, false) => b"false",
        };
        out.extend_from_slice(text);
    }

    keys.key(out, "tlsVersion");
    out.extend_from_slice(if style.tls13 {
        b"\"TLS1_3\""
    } else {
        b"\"TLS1_2\""
    });

    if style.nested && authorized {
        match (target, object) {
            (Target::Secret, Some(_)) => {
                keys.key(out, "secretProperties");
                out.extend_from_slice(b"{\"attributes\":{\"enabled\":true,\"recoveryLevel\":\"Recoverable+Purgeable\"},\"contentType\":\"text/plain\"}");
            }
            (Target::Key, Some(_)) => {
                keys.key(out, "keyProperties");
                out.extend_from_slice(b"{\"type\":\"RSA\",\"size\":2048,\"attributes\":{\"enabled\":true,\"exportable\":false}}");
            }
            (Target::Certificate, Some(object)) => {
                keys.key(out, "certificateProperties");
                out.extend_from_slice(b"{\"attributes\":{\"enabled\":true},\"subject\":\"CN=");
                push_object_name(out, target, object);
                out.extend_from_slice(b"\"}");
            }
            (Target::Vault, _) => {
                keys.key(out, "properties");
                out.extend_from_slice(b"{\"sku\":{\"Family\":\"A\",\"Name\":\"Standard\",\"Capacity\":null},\"enabledForDeployment\":false,\"softDeleteRetentionInDays\":90}");
            }
            _ => {}
        }
    }
    out.push(b'}');
}
