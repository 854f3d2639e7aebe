//! HTTPS stand-ins for the Azure endpoints that cannot run here, speaking their real
//! protocols: the App Service managed-identity endpoint and Key Vault's GET secret API.
//!
//! One server on 127.0.0.1 with a certificate from a throw-away test CA (written to
//! `ca.pem`, which kvlake trusts through `--ca-file`). Tokens are unsigned JWTs with the
//! claims Azurite's `--oauth basic` mode checks (aud, iss, nbf, exp).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the stand-in knows and what it saw.
#[derive(Debug, Default)]
struct State {
    secrets: BTreeMap<String, String>,
    denied: BTreeSet<String>,
    /// Issued token -> resource (audience).
    tokens: BTreeMap<String, String>,
    /// Resources tokens were asked for, in order.
    token_requests: Vec<String>,
    /// Secret names read successfully, in order.
    secret_reads: Vec<String>,
    /// Lifetime of the tokens issued from now on (default one hour).
    token_lifetime: Option<std::time::Duration>,
    /// Issue tokens whose `exp` claim lies in the past while `expires_on` says an hour
    /// ahead (a skewed clock, a stale cache): only a server that reads the token sees it.
    expired_tokens: bool,
}

/// The managed-identity endpoint and a Key Vault, over HTTPS.
#[derive(Debug)]
pub struct AzureStandIn {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// PEM of the test CA.
    pub ca_file: PathBuf,
    /// The `IDENTITY_HEADER` value the endpoint requires.
    pub identity_header: String,
    state: Arc<Mutex<State>>,
    /// The stand-in's certificate (127.0.0.1, localhost), for the kit's other stand-ins.
    pub(crate) tls: Arc<rustls::ServerConfig>,
    _stop: std::sync::mpsc::Sender<()>,
}

/// Looks up the audience of tokens the managed-identity stand-in issued.
#[derive(Debug, Clone)]
pub struct TokenBook(Arc<Mutex<State>>);

impl TokenBook {
    /// The resource a token was issued for, if the stand-in issued it.
    pub fn audience(&self, token: &str) -> Option<String> {
        lock(&self.0).tokens.get(token).cloned()
    }
}

fn lock(s: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl AzureStandIn {
    /// Starts the server; the CA is written into `dir`.
    pub fn start(dir: &Path) -> Result<AzureStandIn> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kvlake test CA");
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate()?;
        let leaf_params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem())?;

        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )?;
        let tls = Arc::new(config);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(Mutex::new(State::default()));
        let identity_header = format!("idh-{port}-{}", std::process::id());
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let (st, header) = (state.clone(), identity_header.clone());
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                loop {
                    // The test dropped its handle: stop serving.
                    if matches!(
                        stop_rx.try_recv(),
                        Err(std::sync::mpsc::TryRecvError::Disconnected)
                    ) {
                        return;
                    }
                    let accepted = tokio::time::timeout(
                        std::time::Duration::from_millis(200),
                        listener.accept(),
                    )
                    .await;
                    let Ok(Ok((tcp, _))) = accepted else { continue };
                    let (acceptor, st, header) = (acceptor.clone(), st.clone(), header.clone());
                    tokio::spawn(async move {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            let _ = serve(tls, st, port, &header).await;
                        }
                    });
                }
            });
        });
        Ok(AzureStandIn {
            port,
            ca_file,
            identity_header,
            state,
            tls,
            _stop: stop_tx,
        })
    }

    /// The vault URL, e.g. `https://127.0.0.1:PORT`.
    pub fn vault(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// A Key Vault reference to a secret of this vault.
    pub fn secret_url(&self, name: &str) -> String {
        format!("{}/secrets/{name}", self.vault())
    }

    /// Environment of an App Service managed identity pointing here.
    pub fn identity_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "IDENTITY_ENDPOINT".into(),
                format!("https://127.0.0.1:{}/msi/token", self.port),
            ),
            ("IDENTITY_HEADER".into(), self.identity_header.clone()),
        ]
    }

    /// Sets (or rotates) a secret.
    pub fn set_secret(&self, name: &str, value: &str) {
        lock(&self.state).secrets.insert(name.into(), value.into());
    }

    /// Makes reads of a secret fail with 403, as without the Key Vault Secrets User role.
    pub fn deny(&self, name: &str) {
        lock(&self.state).denied.insert(name.into());
    }

    /// Resources tokens were requested for.
    pub fn token_requests(&self) -> Vec<String> {
        lock(&self.state).token_requests.clone()
    }

    /// How many times a secret was read.
    pub fn secret_reads(&self, name: &str) -> usize {
        lock(&self.state)
            .secret_reads
            .iter()
            .filter(|n| *n == name)
            .count()
    }

    /// Tokens issued from now on live this long (claims and `expires_on`).
    pub fn set_token_lifetime(&self, d: std::time::Duration) {
        lock(&self.state).token_lifetime = Some(d);
    }

    /// Tokens issued from now on carry an `exp` claim five minutes in the past, while the
    /// endpoint's `expires_on` says they are good for an hour.
    pub fn issue_expired_tokens(&self) {
        lock(&self.state).expired_tokens = true;
    }

    /// The tokens this stand-in issued, for other stand-ins to check.
    pub fn token_book(&self) -> TokenBook {
        TokenBook(self.state.clone())
    }

    /// Every token issued so far (to check none leaks into output).
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.state).tokens.keys().cloned().collect()
    }
}

fn jwt(resource: &str, n: usize, exp: u64) -> String {
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": "standin"});
    let claims = serde_json::json!({
        "aud": resource,
        "iss": format!("https://sts.windows.net/{tenant}/"),
        "iat": now.min(exp) - 60, "nbf": now.min(exp) - 60, "exp": exp,
        "oid": "11111111-2222-3333-4444-555555555555",
        "tid": tenant,
        "appid": "66666666-7777-8888-9999-000000000000",
        "n": n,
    });
    format!("{}.{}.c2lnbmF0dXJl", b64(&header), b64(&claims))
}

async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut io: S,
    st: Arc<Mutex<State>>,
    port: u16,
    identity_header: &str,
) -> Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = io.read(&mut chunk).await?;
        if n == 0 || buf.len() > 64 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let url =
        url::Url::parse(&format!("https://127.0.0.1:{port}{target}")).context("request target")?;
    let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
    let (status, extra, body) = route(method, &url, &query, &headers, &st, identity_header);
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    io.write_all(resp.as_bytes()).await?;
    io.shutdown().await?;
    Ok(())
}

fn route(
    method: &str,
    url: &url::Url,
    query: &BTreeMap<String, String>,
    headers: &BTreeMap<String, String>,
    st: &Mutex<State>,
    identity_header: &str,
) -> (&'static str, String, String) {
    let err = |code: &str, msg: &str| {
        serde_json::json!({"error": {"code": code, "message": msg}}).to_string()
    };
    let path: Vec<&str> = url.path_segments().map(|s| s.collect()).unwrap_or_default();
    match (method, path.as_slice()) {
        // App Service managed identity, api-version 2019-08-01.
        ("GET", ["msi", "token"]) => {
            if headers.get("x-identity-header").map(String::as_str) != Some(identity_header) {
                return (
                    "401 Unauthorized",
                    String::new(),
                    err("Unauthorized", "missing or wrong X-IDENTITY-HEADER"),
                );
            }
            let (Some(_), Some(resource)) = (query.get("api-version"), query.get("resource"))
            else {
                return (
                    "400 Bad Request",
                    String::new(),
                    err("BadRequest", "api-version and resource are required"),
                );
            };
            let mut s = lock(st);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let exp = now + s.token_lifetime.map_or(3600, |d| d.as_secs());
            let claim_exp = if s.expired_tokens { now - 300 } else { exp };
            let token = jwt(resource, s.tokens.len(), claim_exp);
            s.tokens.insert(token.clone(), resource.clone());
            s.token_requests.push(resource.clone());
            let body = serde_json::json!({
                "access_token": token,
                "expires_on": exp.to_string(),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": "66666666-7777-8888-9999-000000000000",
            });
            ("200 OK", String::new(), body.to_string())
        }
        // Key Vault: GET {vault}/secrets/{name}[/{version}]?api-version=7.x
        ("GET", ["secrets", name, rest @ ..]) if rest.len() <= 1 => {
            let challenge = "www-authenticate: Bearer authorization=\"https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47\", resource=\"https://vault.azure.net\"\r\n".to_string();
            if !query.contains_key("api-version") {
                return (
                    "400 Bad Request",
                    String::new(),
                    err("BadParameter", "api-version is required"),
                );
            }
            let mut s = lock(st);
            let token = headers
                .get("authorization")
                .and_then(|a| a.strip_prefix("Bearer "))
                .unwrap_or("");
            if s.tokens.get(token).map(String::as_str) != Some("https://vault.azure.net") {
                return (
                    "401 Unauthorized",
                    challenge,
                    err(
                        "Unauthorized",
                        "AKV10000: Request is missing a Bearer or PoP token.",
                    ),
                );
            }
            if s.denied.contains(*name) {
                return (
                    "403 Forbidden",
                    String::new(),
                    err(
                        "Forbidden",
                        "Caller is not authorized to perform action on resource. Action: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'",
                    ),
                );
            }
            let Some(value) = s.secrets.get(*name).cloned() else {
                return (
                    "404 Not Found",
                    String::new(),
                    err(
                        "SecretNotFound",
                        &format!("A secret with (name/id) {name} was not found in this key vault."),
                    ),
                );
            };
            s.secret_reads.push(name.to_string());
            let id = format!(
                "{}secrets/{name}/0123456789abcdef",
                url.origin().ascii_serialization() + "/"
            );
            let body =
                serde_json::json!({"value": value, "id": id, "attributes": {"enabled": true}});
            ("200 OK", String::new(), body.to_string())
        }
        _ => (
            "404 Not Found",
            String::new(),
            err("NotFound", "no such route"),
        ),
    }
}
