//! Identity and secrets of the service: the Entra ID credential chain, secret references
//! (env, file, Key Vault), OAUTHBEARER tokens for Kafka and credentials for the lake.

pub mod chain;
pub mod http;
pub mod secrets;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use kvlake_hotpath::LakeAuth;
use kvlake_hotpath::source::{OAuthBearerToken, OAuthTokenProvider};
use object_store::CredentialProvider;
use object_store::azure::{AzureAccessKey, AzureCredential};
use tokio_util::sync::CancellationToken;

pub use chain::{CredentialKind, Identity, IdentityOptions};
pub use secrets::{SecretRef, SecretStore, SecretWatch};

use crate::secret::Secret;
use crate::settings::{HotSettings, KafkaAuth, StorageAuth};

/// The token scope of Azure Storage (Blob and ADLS Gen2).
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// Settings that may hold a secret or a reference to one, by setting name.
pub fn secret_settings(s: &HotSettings) -> Vec<(&'static str, &Secret)> {
    [
        (
            "--eventhubs-connection-string",
            s.eventhubs_connection_string.as_ref(),
        ),
        ("--storage-account-key", s.storage_account_key.as_ref()),
        ("--storage-sas", s.storage_sas.as_ref()),
        ("--alert-webhook-secret", s.alert_webhook_secret.as_ref()),
        ("--client-secret", s.client_secret.as_ref()),
        (
            "--client-certificate-password",
            s.client_certificate_password.as_ref(),
        ),
    ]
    .into_iter()
    .filter_map(|(n, v)| v.map(|v| (n, v)))
    .collect()
}

/// The credential options the settings ask for.
pub fn identity_options(s: &HotSettings) -> Result<IdentityOptions> {
    let kind = match s.credential.as_deref() {
        None => CredentialKind::Auto,
        Some(c) => CredentialKind::parse(c).with_context(|| {
            format!("--credential `{c}` is not one of auto, workload-identity, managed-identity, azure-cli, client-secret, client-certificate")
        })?,
    };
    Ok(IdentityOptions {
        kind,
        tenant_id: s.tenant_id.clone(),
        client_id: s.client_id.clone(),
        client_secret: None,
        client_certificate: s.client_certificate.clone().map(PathBuf::from),
        client_certificate_password: None,
    })
}

/// What start-up prepared: the settings with every secret reference replaced by its
/// value, the identity, and watches on the secrets that may rotate.
#[derive(Debug)]
pub struct Prepared {
    pub settings: HotSettings,
    pub identity: Option<Identity>,
    pub secrets: Arc<SecretStore>,
    pub roots: http::ExtraRoots,
    pub connection_string: Option<SecretWatch>,
    pub storage_account_key: Option<SecretWatch>,
    pub storage_sas: Option<SecretWatch>,
    pub alert_webhook_secret: Option<SecretWatch>,
}

/// Whether any setting points at Key Vault.
fn uses_key_vault(s: &HotSettings) -> bool {
    secret_settings(s)
        .into_iter()
        .any(|(n, v)| matches!(SecretRef::parse(n, v), Ok(SecretRef::KeyVault(_))))
        || s.storage_options.values().any(|v| {
            matches!(
                SecretRef::parse("", &Secret::new(v.clone())),
                Ok(SecretRef::KeyVault(_))
            )
        })
}

/// Builds the identity (when anything needs it) and resolves every secret reference.
pub async fn prepare(mut s: HotSettings) -> Result<Prepared> {
    let roots = http::ExtraRoots::load(s.ca_file.as_deref().map(std::path::Path::new))?;
    let client = http::client(&roots)?;
    // Service-principal secrets cannot come from Key Vault: reading the vault needs them.
    let store = SecretStore::new(client.clone(), None);
    let mut opts = identity_options(&s)?;
    for (name, slot) in [
        ("--client-secret", &mut opts.client_secret),
        (
            "--client-certificate-password",
            &mut opts.client_certificate_password,
        ),
    ] {
        let v = match name {
            "--client-secret" => s.client_secret.clone(),
            _ => s.client_certificate_password.clone(),
        };
        if let Some(v) = v {
            let r = SecretRef::parse(name, &v)?;
            if matches!(r, SecretRef::KeyVault(_)) {
                anyhow::bail!(
                    "{name} cannot be a Key Vault reference: the identity needs it to read the vault (use env: or file:)"
                );
            }
            *slot = Some(store.fetch(name, &r).await?);
        }
    }
    let needs_identity = uses_key_vault(&s)
        || s.brokers
            .as_deref()
            .is_some_and(|b| crate::settings::kafka_auth(&s, b).ok() == Some(KafkaAuth::Entra))
        || s.auth.as_deref() == Some("entra")
        || s.alert_logs_endpoint.is_some()
        || crate::settings::storage_auth(&s).ok() == Some(StorageAuth::Entra);
    let identity = if needs_identity {
        Some(Identity::new(&opts, &client)?)
    } else {
        None
    };
    let store = Arc::new(SecretStore::new(client, identity.clone()));
    let resolve = |name: &'static str, v: Option<Secret>| {
        let store = store.clone();
        async move {
            match v {
                None => Ok::<_, anyhow::Error>(None),
                Some(v) => {
                    let r = SecretRef::parse(name, &v)?;
                    Ok(Some(store.resolve(name, &r).await?))
                }
            }
        }
    };
    let connection_string = resolve(
        "--eventhubs-connection-string",
        s.eventhubs_connection_string.take(),
    )
    .await?;
    let storage_account_key =
        resolve("--storage-account-key", s.storage_account_key.take()).await?;
    let storage_sas = resolve("--storage-sas", s.storage_sas.take()).await?;
    let alert_webhook_secret =
        resolve("--alert-webhook-secret", s.alert_webhook_secret.take()).await?;
    s.eventhubs_connection_string = connection_string.as_ref().map(|w| w.borrow().clone());
    s.storage_account_key = storage_account_key.as_ref().map(|w| w.borrow().clone());
    s.storage_sas = storage_sas.as_ref().map(|w| w.borrow().clone());
    s.alert_webhook_secret = alert_webhook_secret.as_ref().map(|w| w.borrow().clone());
    s.client_secret = opts.client_secret.clone();
    s.client_certificate_password = opts.client_certificate_password.clone();
    // Secret-looking storage options may be references too (read once, at start).
    for (k, v) in s.storage_options.iter_mut() {
        if crate::settings::is_storage_credential_option(k) {
            let setting = format!("--storage-option {k}");
            let r = SecretRef::parse(&setting, &Secret::new(v.clone()))?;
            if !matches!(r, SecretRef::Literal(_)) {
                *v = store.fetch(&setting, &r).await?.expose().to_string();
            }
        }
    }
    Ok(Prepared {
        settings: s,
        identity,
        secrets: store,
        roots,
        connection_string,
        storage_account_key,
        storage_sas,
        alert_webhook_secret,
    })
}

/// OAUTHBEARER tokens for librdkafka, kept fresh in the background so that the
/// callback on librdkafka's poll path never waits on the network.
#[derive(Debug)]
pub struct KafkaTokens {
    scope: String,
    current: Mutex<Result<OAuthBearerToken, String>>,
}

impl KafkaTokens {
    /// Gets the first token (so a missing role or identity fails start-up with its
    /// cause), then refreshes it at three quarters of its remaining life until `stop`.
    pub async fn start(
        identity: Identity,
        scope: String,
        stop: CancellationToken,
    ) -> Result<Arc<KafkaTokens>> {
        let first = fetch_kafka_token(&identity, &scope)
            .await
            .map_err(anyhow::Error::msg)
            .context("--auth entra: cannot get a token for Event Hubs")?;
        let tokens = Arc::new(KafkaTokens {
            scope,
            current: Mutex::new(Ok(first)),
        });
        let t = tokens.clone();
        tokio::spawn(async move {
            loop {
                let wait = {
                    let cur = t.current.lock().unwrap_or_else(|p| p.into_inner());
                    match &*cur {
                        Ok(tok) => {
                            let left = (tok.expires_ms - now_ms()).max(0) as u64;
                            Duration::from_millis(left * 3 / 4).max(Duration::from_secs(10))
                        }
                        Err(_) => Duration::from_secs(10),
                    }
                };
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                match fetch_kafka_token(&identity, &t.scope).await {
                    Ok(tok) => *t.current.lock().unwrap_or_else(|p| p.into_inner()) = Ok(tok),
                    Err(e) => {
                        tracing::warn!(error = %e, scope = %t.scope, "cannot refresh the Event Hubs token; retrying in 10s");
                        let mut cur = t.current.lock().unwrap_or_else(|p| p.into_inner());
                        // Keep a token that is still valid; librdkafka uses it until expiry.
                        if !matches!(&*cur, Ok(tok) if tok.expires_ms > now_ms()) {
                            *cur = Err(e);
                        }
                    }
                }
            }
        });
        Ok(tokens)
    }
}

impl OAuthTokenProvider for KafkaTokens {
    fn token(&self) -> Result<OAuthBearerToken, String> {
        match &*self.current.lock().unwrap_or_else(|p| p.into_inner()) {
            Ok(t) if t.expires_ms > now_ms() => Ok(t.clone()),
            Ok(_) => Err(format!(
                "the token for {} expired and could not be refreshed",
                self.scope
            )),
            Err(e) => Err(e.clone()),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

async fn fetch_kafka_token(identity: &Identity, scope: &str) -> Result<OAuthBearerToken, String> {
    let t = identity.token(scope).await.map_err(|e| e.to_string())?;
    Ok(OAuthBearerToken {
        token: t.token.secret().to_string(),
        expires_ms: t.expires_on.unix_timestamp().saturating_mul(1000),
        principal: "kvlake".into(),
    })
}

/// The lake's credentials: bearer tokens from the identity, or the current key / SAS.
#[derive(Debug)]
enum LakeCredential {
    Identity(Identity),
    Key(SecretWatch),
    Sas(SecretWatch),
}

#[async_trait::async_trait]
impl CredentialProvider for LakeCredential {
    type Credential = AzureCredential;

    /// Called per request: tokens come from the credential's cache, keys and SAS from
    /// the latest value the refresh loop read, so a rotation needs no restart.
    async fn get_credential(&self) -> object_store::Result<Arc<AzureCredential>> {
        let generic = |e: String| object_store::Error::Generic {
            store: "MicrosoftAzure",
            source: e.into(),
        };
        Ok(Arc::new(match self {
            LakeCredential::Identity(id) => {
                let t = id.token(STORAGE_SCOPE).await.map_err(|e| {
                    generic(format!(
                        "{e} (the identity needs the Storage Blob Data Contributor role on the account or container)"
                    ))
                })?;
                AzureCredential::BearerToken(t.token.secret().to_string())
            }
            LakeCredential::Key(w) => {
                let v = w.borrow().clone();
                AzureCredential::AccessKey(AzureAccessKey::try_new(v.expose()).map_err(|_| {
                    generic("--storage-account-key is not a base64 storage account key".into())
                })?)
            }
            LakeCredential::Sas(w) => {
                let v = w.borrow().clone();
                AzureCredential::SASToken(sas_pairs(v.expose()))
            }
        }))
    }
}

/// `?sv=..&sig=..` into pairs, decoded as object_store decodes its own SAS option.
fn sas_pairs(sas: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(sas.trim().trim_start_matches('?').as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// What the lake needs from the identity and secrets.
pub fn lake_auth(p: &Prepared) -> Result<LakeAuth> {
    let auth = crate::settings::storage_auth(&p.settings)?;
    let credential = match auth {
        StorageAuth::Options => None,
        StorageAuth::Entra => {
            Some(LakeCredential::Identity(p.identity.clone().context(
                "--storage-auth entra needs the service identity",
            )?))
        }
        StorageAuth::Key => Some(LakeCredential::Key(
            p.storage_account_key
                .clone()
                .context("--storage-account-key")?,
        )),
        StorageAuth::Sas => Some(LakeCredential::Sas(
            p.storage_sas.clone().context("--storage-sas")?,
        )),
    };
    Ok(LakeAuth {
        credentials: credential
            .map(|c| Arc::new(c) as object_store::azure::AzureCredentialProvider),
        root_certificates_pem: p.roots.pem.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lake_credentials_follow_a_rotated_key() {
        // Two valid base64 keys.
        let (k1, k2) = ("Zmlyc3Qta2V5", "c2Vjb25kLWtleQ==");
        let access = |k: &str| AzureCredential::AccessKey(AzureAccessKey::try_new(k).unwrap());
        let (tx, rx) = tokio::sync::watch::channel(Secret::new(k1));
        let cred = LakeCredential::Key(rx);
        assert_eq!(*cred.get_credential().await.unwrap(), access(k1));
        tx.send_replace(Secret::new(k2));
        assert_eq!(
            *cred.get_credential().await.unwrap(),
            access(k2),
            "the provider reads the current value on every request"
        );
    }

    #[test]
    fn sas_tokens_split_like_object_store_does() {
        assert_eq!(
            sas_pairs("?sv=2022-11-02&sig=a%2Bb%3D"),
            vec![
                ("sv".to_string(), "2022-11-02".to_string()),
                ("sig".to_string(), "a+b=".to_string())
            ]
        );
    }
}
