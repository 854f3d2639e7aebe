//! Start-up's second step: the layered settings with every secret reference resolved
//! (env, file, Key Vault), the identity built when anything needs it, the lake's credentials.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use kvlake_hotpath::LakeAuth;

use super::{HotSettings, KafkaAuth, StorageAuth};
use crate::identity::{
    self, CredentialKind, Identity, IdentityOptions, LakeCredential, SecretRef, SecretStore,
    SecretWatch,
};
use crate::secret::Secret;

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
    pub roots: identity::http::ExtraRoots,
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
    let roots = identity::http::ExtraRoots::load(s.ca_file.as_deref().map(std::path::Path::new))?;
    let client = identity::http::client(&roots)?;
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
            .is_some_and(|b| super::kafka_auth(&s, b).ok() == Some(KafkaAuth::Entra))
        || s.auth.as_deref() == Some("entra")
        || s.alert_logs_endpoint.is_some()
        || super::storage_auth(&s).ok() == Some(StorageAuth::Entra);
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
        if super::is_storage_credential_option(k) {
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

/// What the lake needs from the identity and secrets.
pub fn lake_auth(p: &Prepared) -> Result<LakeAuth> {
    let auth = super::storage_auth(&p.settings)?;
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
