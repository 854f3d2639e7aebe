//! Identity and secrets of the service: the Entra ID credential chain, secret references
//! (env, file, Key Vault), OAUTHBEARER tokens for Kafka and credentials for the lake.

pub mod chain;
pub mod http;
pub mod secrets;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use kvlake_hotpath::source::{OAuthBearerToken, OAuthTokenProvider};
use object_store::CredentialProvider;
use object_store::azure::{AzureAccessKey, AzureCredential};
use tokio_util::sync::CancellationToken;

pub use chain::{CredentialKind, Identity, IdentityOptions};
pub use secrets::{SecretRef, SecretStore, SecretWatch};

/// The token scope of Azure Storage (Blob and ADLS Gen2).
pub const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

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
pub enum LakeCredential {
    /// Entra tokens for Azure Storage.
    Identity(Identity),
    /// The storage account key, as last read.
    Key(SecretWatch),
    /// The SAS token, as last read.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

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
