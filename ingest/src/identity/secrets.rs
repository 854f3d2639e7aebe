//! Secret references: a secret setting holds the value itself, `env:NAME`, `file:PATH` or
//! a Key Vault secret URL. This module resolves them, caches the values and re-reads them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::chain::Identity;
use crate::secret::Secret;

/// Where a secret setting's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// The value itself.
    Literal(Secret),
    /// `env:NAME`: an environment variable.
    Env(String),
    /// `file:PATH`: a file, e.g. a Kubernetes secret mount (a trailing newline is dropped).
    File(PathBuf),
    /// `https://<vault>.vault.azure.net/secrets/<name>[/<version>]`.
    KeyVault(KeyVaultRef),
}

/// A Key Vault secret, by vault URL, name and optional version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyVaultRef {
    /// `https://<vault>.vault.azure.net` (scheme, host and port).
    pub vault: String,
    /// Secret name.
    pub name: String,
    /// Version; the latest when absent.
    pub version: Option<String>,
}

impl KeyVaultRef {
    /// The vault's host, for DNS and TLS checks.
    pub fn host_port(&self) -> (String, u16) {
        let u = url::Url::parse(&self.vault).ok();
        (
            u.as_ref()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_default(),
            u.and_then(|u| u.port_or_known_default()).unwrap_or(443),
        )
    }

    /// The token scope of the vault's cloud (public, China, US Government).
    pub fn scope(&self) -> &'static str {
        let (host, _) = self.host_port();
        if host.ends_with(".vault.azure.cn") {
            "https://vault.azure.cn/.default"
        } else if host.ends_with(".vault.usgovcloudapi.net") {
            "https://vault.usgovcloudapi.net/.default"
        } else {
            "https://vault.azure.net/.default"
        }
    }
}

impl std::fmt::Display for KeyVaultRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/secrets/{}", self.vault, self.name)?;
        if let Some(v) = &self.version {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Why a Key Vault read failed, as `kvlake check` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No network path (DNS, firewall, private endpoint).
    Blocked,
    /// The identity may not read it.
    Denied,
    /// The reference or its target is wrong.
    Misconfigured,
}

/// A secret could not be resolved. Names the setting, the variable, the file or the
/// vault and secret: never the value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    #[error("{setting}: environment variable {name} is not set (the setting says env:{name})")]
    EnvMissing { setting: String, name: String },
    #[error("{setting}: cannot read secret file {path}: {detail}")]
    File {
        setting: String,
        path: String,
        detail: String,
    },
    #[error("{setting}: Key Vault {vault}, secret {name}: {detail}")]
    KeyVault {
        setting: String,
        vault: String,
        name: String,
        detail: String,
        failure: Failure,
    },
    #[error("{setting}: {detail}")]
    Invalid { setting: String, detail: String },
}

impl SecretError {
    /// The kind of failure, for `kvlake check`.
    pub fn failure(&self) -> Failure {
        match self {
            SecretError::KeyVault { failure, .. } => *failure,
            _ => Failure::Misconfigured,
        }
    }
}

impl SecretRef {
    /// Reads a setting's value as a reference. Only the prefixes `env:`, `file:` and a
    /// `https://…/secrets/<name>` URL are references: a connection string, key or SAS
    /// token never looks like one.
    pub fn parse(setting: &str, value: &Secret) -> Result<SecretRef, SecretError> {
        let v = value.expose().trim();
        let invalid = |detail: String| SecretError::Invalid {
            setting: setting.into(),
            detail,
        };
        if let Some(name) = v.strip_prefix("env:") {
            if name.is_empty() {
                return Err(invalid(
                    "env: needs a variable name, e.g. env:EH_CONN".into(),
                ));
            }
            return Ok(SecretRef::Env(name.into()));
        }
        if let Some(path) = v.strip_prefix("file:") {
            if path.is_empty() {
                return Err(invalid(
                    "file: needs a path, e.g. file:/mnt/secrets/eh-conn".into(),
                ));
            }
            return Ok(SecretRef::File(path.into()));
        }
        if v.starts_with("https://")
            && let Ok(u) = url::Url::parse(v)
        {
            let segs: Vec<&str> = u.path_segments().map(|s| s.collect()).unwrap_or_default();
            if segs.first() == Some(&"secrets") {
                let ok = |s: &str| {
                    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                };
                let (name, version) = match segs.as_slice() {
                    [_, n] | [_, n, ""] if ok(n) => (*n, None),
                    [_, n, ver] if ok(n) && ok(ver) => (*n, Some(ver.to_string())),
                    _ => {
                        return Err(invalid(
                            "a Key Vault reference is https://<vault>.vault.azure.net/secrets/<name>[/<version>] (letters, digits and dashes)".into(),
                        ));
                    }
                };
                let mut vault = format!("https://{}", u.host_str().unwrap_or_default());
                if let Some(p) = u.port() {
                    vault.push_str(&format!(":{p}"));
                }
                return Ok(SecretRef::KeyVault(KeyVaultRef {
                    vault,
                    name: name.into(),
                    version,
                }));
            }
        }
        Ok(SecretRef::Literal(value.clone()))
    }

    /// How `kvlake config show` prints it: the reference, or `[REDACTED]` for a value.
    pub fn describe(&self) -> String {
        match self {
            SecretRef::Literal(_) => "[REDACTED]".into(),
            SecretRef::Env(n) => format!("env:{n}"),
            SecretRef::File(p) => format!("file:{}", p.display()),
            SecretRef::KeyVault(k) => k.to_string(),
        }
    }
}

struct Entry {
    setting: String,
    reference: SecretRef,
    tx: watch::Sender<Secret>,
}

/// Resolves references and keeps the values current. One per process.
pub struct SecretStore {
    http: reqwest::Client,
    identity: Option<Identity>,
    entries: Mutex<Vec<Entry>>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore").finish_non_exhaustive()
    }
}

/// The current value of a resolved secret; it changes when the source is rotated.
pub type SecretWatch = watch::Receiver<Secret>;

impl SecretStore {
    /// A store reading Key Vault with `identity` (references to a vault fail without one).
    pub fn new(http: reqwest::Client, identity: Option<Identity>) -> SecretStore {
        SecretStore {
            http,
            identity,
            entries: Mutex::new(Vec::new()),
        }
    }

    /// Resolves and remembers a reference, so the refresh loop re-reads it.
    pub async fn resolve(
        &self,
        setting: &str,
        reference: &SecretRef,
    ) -> Result<SecretWatch, SecretError> {
        let value = self.fetch(setting, reference).await?;
        let (tx, rx) = watch::channel(value);
        if !matches!(reference, SecretRef::Literal(_)) {
            self.entries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Entry {
                    setting: setting.into(),
                    reference: reference.clone(),
                    tx,
                });
        }
        Ok(rx)
    }

    /// Reads a reference once, without remembering it.
    pub async fn fetch(&self, setting: &str, reference: &SecretRef) -> Result<Secret, SecretError> {
        match reference {
            SecretRef::Literal(s) => Ok(s.clone()),
            SecretRef::Env(name) => std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(Secret::new)
                .ok_or_else(|| SecretError::EnvMissing {
                    setting: setting.into(),
                    name: name.clone(),
                }),
            SecretRef::File(path) => {
                let text =
                    tokio::fs::read_to_string(path)
                        .await
                        .map_err(|e| SecretError::File {
                            setting: setting.into(),
                            path: path.display().to_string(),
                            detail: e.kind().to_string(),
                        })?;
                let v = text.trim_end_matches(['\r', '\n']);
                if v.is_empty() {
                    return Err(SecretError::File {
                        setting: setting.into(),
                        path: path.display().to_string(),
                        detail: "the file is empty".into(),
                    });
                }
                Ok(Secret::new(v))
            }
            SecretRef::KeyVault(kv) => self.key_vault(setting, kv).await,
        }
    }

    async fn key_vault(&self, setting: &str, kv: &KeyVaultRef) -> Result<Secret, SecretError> {
        let fail = |failure: Failure, detail: String| SecretError::KeyVault {
            setting: setting.into(),
            vault: kv.vault.clone(),
            name: kv.name.clone(),
            detail,
            failure,
        };
        let Some(identity) = &self.identity else {
            return Err(fail(
                Failure::Misconfigured,
                "Key Vault references need the service identity, which is not set up".into(),
            ));
        };
        let token = identity
            .token(kv.scope())
            .await
            .map_err(|e| fail(Failure::Denied, e.to_string()))?;
        let mut url = format!("{}/secrets/{}", kv.vault, kv.name);
        if let Some(v) = &kv.version {
            url.push('/');
            url.push_str(v);
        }
        url.push_str("?api-version=7.4");
        let resp = self
            .http
            .get(&url)
            .bearer_auth(token.token.secret())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| {
                fail(
                    Failure::Blocked,
                    format!(
                        "cannot reach the vault ({}); on a private network check the private endpoint and the privatelink.vaultcore.azure.net DNS zone",
                        one_line(&e)
                    ),
                )
            })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| {
            fail(
                Failure::Blocked,
                format!("the vault's answer broke off: {}", one_line(&e)),
            )
        })?;
        if status.is_success() {
            #[derive(serde::Deserialize)]
            struct Bundle {
                value: Option<String>,
            }
            let b: Bundle = serde_json::from_slice(&body).map_err(|_| {
                fail(
                    Failure::Misconfigured,
                    "the answer is not a Key Vault secret bundle (is this URL a vault?)".into(),
                )
            })?;
            return b
                .value
                .map(Secret::new)
                .ok_or_else(|| fail(Failure::Misconfigured, "the secret has no value".into()));
        }
        // Key Vault's error bodies carry a code and a message, never the secret.
        let reason = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                let e = v.get("error")?;
                Some(format!(
                    "{} {}",
                    e.get("code")?.as_str()?,
                    e.get("message").and_then(|m| m.as_str()).unwrap_or("")
                ))
            })
            .unwrap_or_default();
        Err(match status.as_u16() {
            401 | 403 => fail(
                Failure::Denied,
                format!(
                    "HTTP {status} {reason}: give the identity ({}) the Key Vault Secrets User role on this vault (or a Get secret access policy), and allow its network",
                    identity.chosen().unwrap_or("service identity")
                ),
            ),
            404 => fail(
                Failure::Misconfigured,
                format!(
                    "HTTP 404 {reason}: no such secret or version in this vault; check the name"
                ),
            ),
            _ => fail(Failure::Blocked, format!("HTTP {status} {reason}")),
        })
    }

    /// Re-reads every remembered reference every `every`, until `stop`. A changed value
    /// is published to its watchers; a failed read keeps the old value and warns.
    pub fn spawn_refresh(self: &Arc<Self>, every: Duration, stop: CancellationToken) {
        let store = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                store.refresh_once().await;
            }
        });
    }

    /// One pass of the refresh loop.
    pub async fn refresh_once(&self) {
        let todo: Vec<(String, SecretRef, watch::Sender<Secret>)> = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|e| (e.setting.clone(), e.reference.clone(), e.tx.clone()))
            .collect();
        for (setting, reference, tx) in todo {
            match self.fetch(&setting, &reference).await {
                Ok(v) => {
                    let changed = tx.send_if_modified(|old| {
                        if *old == v {
                            false
                        } else {
                            *old = v;
                            true
                        }
                    });
                    if changed {
                        tracing::info!(
                            setting,
                            source = reference.describe(),
                            "secret changed at its source: using the new value"
                        );
                    } else {
                        tracing::debug!(
                            setting,
                            source = reference.describe(),
                            "secret re-read, unchanged"
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot re-read a secret; keeping the value read before")
                }
            }
        }
    }
}

/// An error and its causes on one line.
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

/// For output (`kvlake config show`): a reference (`env:NAME`, `file:PATH`, a Key Vault
/// URL) as written, since it names a place and not a value; a value as `[REDACTED]`.
pub fn serialize_described<S: serde::Serializer>(
    v: &Option<Secret>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        None => s.serialize_none(),
        Some(v) => s.serialize_str(
            &SecretRef::parse("", v).map_or_else(|_| "[REDACTED]".to_string(), |r| r.describe()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_print_without_values() {
        let p = |v: &str| SecretRef::parse("--x", &Secret::new(v)).unwrap();
        assert_eq!(p("env:EH"), SecretRef::Env("EH".into()));
        assert_eq!(p("file:/mnt/s/k"), SecretRef::File("/mnt/s/k".into()));
        let kv = p("https://kv1.vault.azure.net/secrets/eh-conn/0123abc");
        assert_eq!(
            kv,
            SecretRef::KeyVault(KeyVaultRef {
                vault: "https://kv1.vault.azure.net".into(),
                name: "eh-conn".into(),
                version: Some("0123abc".into())
            })
        );
        assert_eq!(
            kv.describe(),
            "https://kv1.vault.azure.net/secrets/eh-conn/0123abc"
        );
        let lit = p("Endpoint=sb://ns/;SharedAccessKey=k3y");
        assert_eq!(lit.describe(), "[REDACTED]");
        assert!(SecretRef::parse("--x", &Secret::new("https://kv/secrets/bad_name")).is_err());
        assert!(SecretRef::parse("--x", &Secret::new("env:")).is_err());
    }

    #[test]
    fn scope_follows_the_vaults_cloud() {
        let k = |v: &str| KeyVaultRef {
            vault: v.into(),
            name: "n".into(),
            version: None,
        };
        assert_eq!(
            k("https://a.vault.azure.net").scope(),
            "https://vault.azure.net/.default"
        );
        assert_eq!(
            k("https://a.vault.azure.cn").scope(),
            "https://vault.azure.cn/.default"
        );
    }

    #[tokio::test]
    async fn env_and_file_references_resolve_and_errors_name_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s");
        std::fs::write(&f, "v4lue\n").unwrap();
        super::super::http::install_crypto_provider();
        let store = SecretStore::new(reqwest::Client::new(), None);
        let v = store
            .fetch("--x", &SecretRef::File(f.clone()))
            .await
            .unwrap();
        assert_eq!(v.expose(), "v4lue");
        let e = store
            .fetch("--x", &SecretRef::Env("KVLAKE_TEST_SURELY_UNSET".into()))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("KVLAKE_TEST_SURELY_UNSET") && e.contains("--x"),
            "{e}"
        );
        let e = store
            .fetch(
                "--x",
                &SecretRef::KeyVault(KeyVaultRef {
                    vault: "https://kv1.vault.azure.net".into(),
                    name: "n".into(),
                    version: None,
                }),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kv1.vault.azure.net") && e.contains("secret n"),
            "{e}"
        );
    }
}
