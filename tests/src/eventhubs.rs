//! An Event Hubs Kafka-endpoint stand-in: TLS from the kit's throw-away CA, SASL PLAIN and
//! OAUTHBEARER answered the way Event Hubs answers them, the rest passed to a real broker.
//!
//! Over real sockets, in the Kafka wire format (`kafka-protocol`): each client connection is
//! authenticated here (`$ConnectionString` + the exact connection string, or a JWT the
//! managed-identity stand-in issued for `https://<namespace>.servicebus.windows.net` that
//! has not expired), sessions last `session_lifetime` so librdkafka re-authenticates on the
//! same connection (KIP-368), produce requests over 1 MB are refused, and every other
//! request goes to the broker behind it. Metadata and FindCoordinator answers are rewritten
//! so that clients come back through the stand-in. ARCHITECTURE.md lists where this
//! differs from Event Hubs as documented.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, FindCoordinatorResponse, MetadataResponse,
    ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
    api_versions_response::ApiVersion,
    produce_response::{PartitionProduceResponse, TopicProduceResponse},
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::standin::{AzureStandIn, TokenBook};

/// Event Hubs' cap on one published message or batch: 1 MB.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Kafka error codes the stand-in answers with.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const SASL_AUTHENTICATION_FAILED: i16 = 58;
const MESSAGE_TOO_LARGE: i16 = 10;
const ILLEGAL_SASL_STATE: i16 = 34;

/// The namespace's tier: Basic has no Kafka endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Standard and above: the Kafka endpoint answers.
    Standard,
    /// Basic: TLS is accepted (it is the namespace's front end), then the connection closes
    /// at the first Kafka request.
    Basic,
}

/// What the stand-in accepts.
#[derive(Debug, Clone)]
pub struct Options {
    /// The namespace's name (`ns1` for `ns1.servicebus.windows.net`).
    pub namespace: String,
    /// The connection string PLAIN must present as its password, exactly.
    pub connection_string: String,
    /// How long an authenticated session lasts before the client must re-authenticate.
    pub session_lifetime: Duration,
    /// Basic or Standard.
    pub tier: Tier,
}

impl Options {
    /// A Standard namespace `namespace` whose hub `hub` takes the returned connection string.
    pub fn standard(namespace: &str, hub: &str) -> Options {
        Options {
            namespace: namespace.into(),
            connection_string: connection_string(
                namespace,
                hub,
                "R1ghtK3yR1ghtK3yR1ghtK3yR1ghtK3yR1ghtK3y0=",
            ),
            session_lifetime: Duration::from_secs(60),
            tier: Tier::Standard,
        }
    }

    /// `https://<namespace>.servicebus.windows.net`: the audience tokens must carry.
    pub fn audience(&self) -> String {
        format!("https://{}.servicebus.windows.net", self.namespace)
    }
}

/// A connection string of a namespace's hub-scoped `listen` policy with this key.
pub fn connection_string(namespace: &str, hub: &str, key: &str) -> String {
    format!(
        "Endpoint=sb://{namespace}.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey={key};EntityPath={hub}"
    )
}

/// One successful SASL authentication.
#[derive(Debug, Clone)]
pub struct Authentication {
    /// The connection (numbered in accept order).
    pub connection: u64,
    /// `PLAIN` or `OAUTHBEARER`.
    pub mechanism: String,
    /// Whether it re-authenticated a connection that was authenticated already (KIP-368).
    pub reauthentication: bool,
    /// The bearer token presented (OAUTHBEARER).
    pub token: Option<String>,
    /// The session lifetime given.
    pub session_lifetime_ms: i64,
}

#[derive(Debug, Default)]
struct Stats {
    authentications: Vec<Authentication>,
    refusals: Vec<String>,
    expired_sessions: usize,
    oversized: usize,
    connections: u64,
}

#[derive(Debug)]
struct Shared {
    opts: Options,
    tokens: TokenBook,
    /// Backend broker id -> the stand-in's port for it.
    ports: BTreeMap<i32, u16>,
    stats: Mutex<Stats>,
}

fn lock(s: &Mutex<Stats>) -> std::sync::MutexGuard<'_, Stats> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// The Event Hubs Kafka endpoint of one namespace, in front of a real broker.
#[derive(Debug)]
pub struct EventHubsStandIn {
    /// `127.0.0.1:PORT` to bootstrap from (the first broker's front).
    pub bootstrap: String,
    /// PEM of the CA that signed the stand-in's certificate (librdkafka's `ssl.ca.location`).
    pub ca_file: PathBuf,
    shared: Arc<Shared>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl EventHubsStandIn {
    /// Starts a front for every broker of the cluster at `backend` (`host:port`), with the
    /// certificate and token book of `azure` (the kit's managed-identity stand-in).
    pub fn start(azure: &AzureStandIn, backend: &str, opts: Options) -> Result<EventHubsStandIn> {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", backend)
            .create()?;
        let md = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .context("the broker behind the Event Hubs stand-in")?;
        let mut listeners = Vec::new();
        let mut ports = BTreeMap::new();
        for b in md.brokers() {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.set_nonblocking(true)?;
            ports.insert(b.id(), l.local_addr()?.port());
            let addr = format!("{}:{}", b.host(), b.port());
            listeners.push((l, addr));
        }
        let first = *ports
            .values()
            .next()
            .context("the broker lists no brokers")?;
        let shared = Arc::new(Shared {
            opts,
            tokens: azure.token_book(),
            ports,
            stats: Mutex::new(Stats::default()),
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(azure.tls.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let sh = shared.clone();
        std::thread::Builder::new()
            .name("eventhubs-standin".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    for (l, backend) in listeners {
                        let Ok(l) = tokio::net::TcpListener::from_std(l) else {
                            return;
                        };
                        tokio::spawn(accept_loop(l, backend, acceptor.clone(), sh.clone()));
                    }
                    // The test dropped its handle: the runtime goes, with every connection.
                    let _ = stop_rx.await;
                });
                rt.shutdown_background();
            })?;
        Ok(EventHubsStandIn {
            bootstrap: format!("127.0.0.1:{first}"),
            ca_file: azure.ca_file.clone(),
            shared,
            _stop: stop_tx,
        })
    }

    /// The connection string this namespace accepts.
    pub fn connection_string(&self) -> String {
        self.shared.opts.connection_string.clone()
    }

    /// Every successful authentication so far.
    pub fn authentications(&self) -> Vec<Authentication> {
        lock(&self.shared.stats).authentications.clone()
    }

    /// Re-authentications of a live connection (KIP-368).
    pub fn reauthentications(&self) -> Vec<Authentication> {
        self.authentications()
            .into_iter()
            .filter(|a| a.reauthentication)
            .collect()
    }

    /// Why each refused authentication was refused, in order.
    pub fn refusals(&self) -> Vec<String> {
        lock(&self.shared.stats).refusals.clone()
    }

    /// Connections closed because a request came after the session had expired.
    pub fn expired_sessions(&self) -> usize {
        lock(&self.shared.stats).expired_sessions
    }

    /// Produce requests refused for a batch over 1 MB.
    pub fn oversized_refused(&self) -> usize {
        lock(&self.shared.stats).oversized
    }

    /// librdkafka settings of a client of this namespace using its connection string.
    pub fn client_config(&self) -> rdkafka::ClientConfig {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanism", "PLAIN")
            .set("sasl.username", "$ConnectionString")
            .set("sasl.password", self.connection_string())
            .set("ssl.ca.location", self.ca_file.display().to_string());
        c
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    backend: String,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, shared, backend) = (acceptor.clone(), shared.clone(), backend.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let id = {
                let mut s = lock(&shared.stats);
                s.connections += 1;
                s.connections
            };
            let _ = connection(tls, &backend, shared, id).await;
        });
    }
}

/// A response owed to the client, in request order.
enum Owed {
    /// Answered here: the whole frame body (header and message).
    Local(Bytes),
    /// The broker's next response, rewritten where it names brokers.
    Forwarded { key: i16, version: i16 },
    /// Close the connection once everything before it is written.
    Close,
}

/// Where a connection is in the SASL exchange.
#[derive(Debug, Default)]
struct Session {
    mechanism: Option<String>,
    authenticated: bool,
    expires: Option<Instant>,
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Bytes>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let n = i32::from_be_bytes(len);
    anyhow::ensure!((0..=100 << 20).contains(&n), "frame of {n} bytes");
    let mut buf = vec![0u8; n as usize];
    r.read_exact(&mut buf).await?;
    Ok(Some(Bytes::from(buf)))
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> Result<()> {
    w.write_all(&(body.len() as i32).to_be_bytes()).await?;
    w.write_all(body).await?;
    w.flush().await?;
    Ok(())
}

async fn connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    tls: S,
    backend: &str,
    shared: Arc<Shared>,
    id: u64,
) -> Result<()> {
    let (mut client_r, client_w) = tokio::io::split(tls);
    if shared.opts.tier == Tier::Basic {
        // No Kafka endpoint: the first request is met with a closed connection.
        let _ = read_frame(&mut client_r).await;
        return Ok(());
    }
    let broker = tokio::net::TcpStream::connect(backend).await?;
    broker.set_nodelay(true)?;
    let (broker_r, mut broker_w) = broker.into_split();
    let (tx, rx) = mpsc::unbounded_channel::<Owed>();
    let writer = tokio::spawn(respond(rx, broker_r, client_w, shared.clone()));
    let mut session = Session::default();
    while let Some(frame) = read_frame(&mut client_r).await? {
        let mut buf = frame.clone();
        let Ok(header) = kafka_protocol::protocol::decode_request_header_from_buffer(&mut buf)
        else {
            let _ = tx.send(Owed::Close);
            break;
        };
        let key = header.request_api_key;
        let version = header.request_api_version;
        match ApiKey::try_from(key) {
            Ok(ApiKey::ApiVersions) => {
                let _ = tx.send(Owed::Forwarded { key, version });
                write_frame(&mut broker_w, &frame).await?;
            }
            Ok(ApiKey::SaslHandshake) => {
                let req = SaslHandshakeRequest::decode(&mut buf, version)?;
                let m = req.mechanism.as_str().to_string();
                let ok = m == "PLAIN" || m == "OAUTHBEARER";
                let resp = SaslHandshakeResponse::default()
                    .with_error_code(if ok { 0 } else { UNSUPPORTED_SASL_MECHANISM })
                    .with_mechanisms(vec![
                        StrBytes::from_static_str("PLAIN"),
                        StrBytes::from_static_str("OAUTHBEARER"),
                    ]);
                session.mechanism = ok.then_some(m);
                let _ = tx.send(Owed::Local(encode_response(&header, &resp)?));
                if !ok {
                    let _ = tx.send(Owed::Close);
                    break;
                }
            }
            Ok(ApiKey::SaslAuthenticate) => {
                let req = SaslAuthenticateRequest::decode(&mut buf, version)?;
                let verdict = match session.mechanism.as_deref() {
                    Some("PLAIN") => check_plain(&shared.opts, &req.auth_bytes),
                    Some("OAUTHBEARER") => {
                        check_bearer(&shared.opts, &shared.tokens, &req.auth_bytes)
                    }
                    _ => Err((
                        ILLEGAL_SASL_STATE,
                        "SaslAuthenticate before SaslHandshake".to_string(),
                    )),
                };
                match verdict {
                    Ok((token, token_left_ms)) => {
                        let lifetime =
                            (shared.opts.session_lifetime.as_millis() as i64).min(token_left_ms);
                        lock(&shared.stats).authentications.push(Authentication {
                            connection: id,
                            mechanism: session.mechanism.clone().unwrap_or_default(),
                            reauthentication: session.authenticated,
                            token,
                            session_lifetime_ms: lifetime,
                        });
                        session.authenticated = true;
                        session.expires =
                            Some(Instant::now() + Duration::from_millis(lifetime.max(0) as u64));
                        let resp =
                            SaslAuthenticateResponse::default().with_session_lifetime_ms(lifetime);
                        let _ = tx.send(Owed::Local(encode_response(&header, &resp)?));
                    }
                    Err((code, message)) => {
                        lock(&shared.stats).refusals.push(message.clone());
                        let resp = SaslAuthenticateResponse::default()
                            .with_error_code(code)
                            .with_error_message(Some(StrBytes::from_string(message)));
                        let _ = tx.send(Owed::Local(encode_response(&header, &resp)?));
                        let _ = tx.send(Owed::Close);
                        break;
                    }
                }
            }
            _ if !session.authenticated => {
                // Event Hubs serves nothing but ApiVersions and SASL before authentication.
                lock(&shared.stats)
                    .refusals
                    .push(format!("api key {key} before authentication"));
                let _ = tx.send(Owed::Close);
                break;
            }
            _ if session.expires.is_some_and(|e| Instant::now() > e) => {
                // KIP-368: a request after the session expired closes the connection.
                lock(&shared.stats).expired_sessions += 1;
                let _ = tx.send(Owed::Close);
                break;
            }
            Ok(ApiKey::Produce) => {
                let req = ProduceRequest::decode(&mut buf, version)?;
                let oversized = req
                    .topic_data
                    .iter()
                    .flat_map(|t| t.partition_data.iter())
                    .any(|p| {
                        p.records
                            .as_ref()
                            .is_some_and(|r| r.len() > MAX_MESSAGE_BYTES)
                    });
                if oversized {
                    lock(&shared.stats).oversized += 1;
                    if req.acks != 0 {
                        let resp = too_large(&req);
                        let _ = tx.send(Owed::Local(encode_response(&header, &resp)?));
                    }
                    continue;
                }
                if req.acks != 0 {
                    let _ = tx.send(Owed::Forwarded { key, version });
                }
                write_frame(&mut broker_w, &frame).await?;
            }
            _ => {
                let _ = tx.send(Owed::Forwarded { key, version });
                write_frame(&mut broker_w, &frame).await?;
            }
        }
    }
    let _ = tx.send(Owed::Close);
    drop(tx);
    let _ = writer.await;
    Ok(())
}

/// A ProduceResponse refusing every partition of the request as too large.
fn too_large(req: &ProduceRequest) -> ProduceResponse {
    let responses = req
        .topic_data
        .iter()
        .map(|t| {
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_topic_id(t.topic_id)
                .with_partition_responses(
                    t.partition_data
                        .iter()
                        .map(|p| {
                            PartitionProduceResponse::default()
                                .with_index(p.index)
                                .with_error_code(MESSAGE_TOO_LARGE)
                                .with_base_offset(-1)
                                .with_error_message(Some(StrBytes::from_static_str(
                                    "The message is larger than the 1 MB Event Hubs allows",
                                )))
                        })
                        .collect(),
                )
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}

fn encode_response<M: Encodable>(req: &RequestHeader, msg: &M) -> Result<Bytes> {
    let key = ApiKey::try_from(req.request_api_key).map_err(|_| anyhow::anyhow!("api key"))?;
    let mut out = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(req.correlation_id)
        .encode(
            &mut out,
            key.response_header_version(req.request_api_version),
        )?;
    msg.encode(&mut out, req.request_api_version)?;
    Ok(out.freeze())
}

/// Writes what the client is owed, in order: local answers, and the broker's answers
/// with broker addresses pointed back at the stand-in.
async fn respond<W: AsyncWrite + Unpin>(
    mut rx: mpsc::UnboundedReceiver<Owed>,
    mut broker: tokio::net::tcp::OwnedReadHalf,
    mut client: W,
    shared: Arc<Shared>,
) -> Result<()> {
    while let Some(owed) = rx.recv().await {
        match owed {
            Owed::Local(b) => write_frame(&mut client, &b).await?,
            Owed::Forwarded { key, version } => {
                let Some(frame) = read_frame(&mut broker).await? else {
                    break;
                };
                let out = rewrite(key, version, frame.clone(), &shared).unwrap_or(frame);
                write_frame(&mut client, &out).await?;
            }
            Owed::Close => break,
        }
    }
    let _ = client.shutdown().await;
    Ok(())
}

/// The broker's answer, with the stand-in's addresses and SASL in it; `None` leaves the
/// answer as the broker gave it.
fn rewrite(key: i16, version: i16, frame: Bytes, shared: &Shared) -> Option<Bytes> {
    let api = ApiKey::try_from(key).ok()?;
    if !matches!(
        api,
        ApiKey::ApiVersions | ApiKey::Metadata | ApiKey::FindCoordinator
    ) {
        return None;
    }
    let hv = api.response_header_version(version);
    let mut buf = frame;
    let header = ResponseHeader::decode(&mut buf, hv).ok()?;
    let mut out = BytesMut::new();
    header.encode(&mut out, hv).ok()?;
    let port = |id: BrokerId| shared.ports.get(&id.0).copied();
    let host = || StrBytes::from_static_str("127.0.0.1");
    match api {
        ApiKey::ApiVersions => {
            let mut r = ApiVersionsResponse::decode(&mut buf, version).ok()?;
            if r.error_code != 0 {
                return None;
            }
            r.api_keys.retain(|k| {
                k.api_key != ApiKey::SaslHandshake as i16
                    && k.api_key != ApiKey::SaslAuthenticate as i16
            });
            for k in &mut r.api_keys {
                // No KIP-951 node endpoints in Fetch/Produce answers (they would name the
                // broker behind the stand-in).
                if k.api_key == ApiKey::Fetch as i16 {
                    k.max_version = k.max_version.min(15);
                }
                if k.api_key == ApiKey::Produce as i16 {
                    k.max_version = k.max_version.min(9);
                }
            }
            for (k, max) in [(ApiKey::SaslHandshake, 1), (ApiKey::SaslAuthenticate, 1)] {
                r.api_keys.push(
                    ApiVersion::default()
                        .with_api_key(k as i16)
                        .with_min_version(0)
                        .with_max_version(max),
                );
            }
            r.encode(&mut out, version).ok()?;
        }
        ApiKey::Metadata => {
            let mut r = MetadataResponse::decode(&mut buf, version).ok()?;
            for b in &mut r.brokers {
                if let Some(p) = port(b.node_id) {
                    b.host = host();
                    b.port = p as i32;
                }
            }
            r.encode(&mut out, version).ok()?;
        }
        ApiKey::FindCoordinator => {
            let mut r = FindCoordinatorResponse::decode(&mut buf, version).ok()?;
            if let Some(p) = port(r.node_id) {
                r.host = host();
                r.port = p as i32;
            }
            for c in &mut r.coordinators {
                if let Some(p) = port(c.node_id) {
                    c.host = host();
                    c.port = p as i32;
                }
            }
            r.encode(&mut out, version).ok()?;
        }
        _ => return None,
    }
    Some(out.freeze())
}

type Verdict = std::result::Result<(Option<String>, i64), (i16, String)>;

/// PLAIN: `[authzid] NUL authcid NUL passwd`; Event Hubs takes user `$ConnectionString`
/// and the connection string itself as the password.
fn check_plain(opts: &Options, auth: &[u8]) -> Verdict {
    let parts: Vec<&[u8]> = auth.split(|b| *b == 0).collect();
    let (user, pass) = match parts.as_slice() {
        [_, u, p] => (*u, *p),
        _ => {
            return Err((
                SASL_AUTHENTICATION_FAILED,
                "Invalid SASL/PLAIN message".into(),
            ));
        }
    };
    if user != b"$ConnectionString" {
        return Err((
            SASL_AUTHENTICATION_FAILED,
            "Authentication failed: the SASL PLAIN username must be $ConnectionString".into(),
        ));
    }
    if pass != opts.connection_string.as_bytes() {
        return Err((
            SASL_AUTHENTICATION_FAILED,
            format!(
                "Authentication failed: invalid SAS token or connection string for {}.servicebus.windows.net",
                opts.namespace
            ),
        ));
    }
    Ok((None, i64::MAX))
}

/// OAUTHBEARER (RFC 7628 client first message `n,,\x01auth=Bearer <jwt>\x01\x01`): the JWT
/// must come from the managed-identity stand-in, be for the namespace and be unexpired.
fn check_bearer(opts: &Options, book: &TokenBook, auth: &[u8]) -> Verdict {
    let fail = |m: String| Err((SASL_AUTHENTICATION_FAILED, m));
    let text = String::from_utf8_lossy(auth);
    let Some(token) = text
        .split('\x01')
        .find_map(|kv| kv.strip_prefix("auth=Bearer "))
        .map(str::trim)
    else {
        return fail("Invalid OAUTHBEARER client message: no auth=Bearer".into());
    };
    if book.audience(token).is_none() {
        return fail("Authentication failed: the token was not issued by Entra ID".into());
    }
    let claims = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let Some(claims) = claims else {
        return fail("Authentication failed: the token is not a JWT".into());
    };
    let aud = claims["aud"].as_str().unwrap_or_default();
    let want = opts.audience();
    if aud.trim_end_matches('/') != want {
        return fail(format!(
            "Authentication failed: the token's audience {aud} is not {want}"
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let exp = claims["exp"].as_i64().unwrap_or(0) * 1000;
    let nbf = claims["nbf"].as_i64().unwrap_or(0) * 1000;
    if exp <= now {
        return fail(format!(
            "Authentication failed: the token expired {}s ago",
            (now - exp) / 1000
        ));
    }
    if nbf > now + 300_000 {
        return fail("Authentication failed: the token is not valid yet".into());
    }
    Ok((Some(token.to_string()), exp - now))
}

/// The socket address of a `host:port` (for tests that need the front's port).
pub fn port_of(bootstrap: &str) -> Option<u16> {
    bootstrap.parse::<SocketAddr>().ok().map(|a| a.port())
}
