//! The service identity: an ordered chain of azure_identity credentials (workload
//! identity, managed identity, Azure CLI), or one pinned with `--credential`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential};
use azure_core::http::{ClientOptions, FixedRetryOptions, RetryOptions, Transport};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientCertificateCredential,
    ClientCertificateCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

use crate::secret::Secret;

/// Which credential to use (`--credential`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialKind {
    /// Workload identity, then managed identity, then the Azure CLI: the first that gives a token.
    Auto,
    /// Kubernetes workload identity (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE).
    WorkloadIdentity,
    /// The managed identity of the VM, container app or App Service (IMDS or IDENTITY_ENDPOINT).
    ManagedIdentity,
    /// `az login` on a developer's machine.
    AzureCli,
    /// A service principal with a client secret (--tenant-id, --client-id, --client-secret).
    ClientSecret,
    /// A service principal with a certificate (--tenant-id, --client-id, --client-certificate, a PFX file).
    ClientCertificate,
}

impl CredentialKind {
    /// The name used in flags and logs.
    pub fn name(self) -> &'static str {
        match self {
            CredentialKind::Auto => "auto",
            CredentialKind::WorkloadIdentity => "workload-identity",
            CredentialKind::ManagedIdentity => "managed-identity",
            CredentialKind::AzureCli => "azure-cli",
            CredentialKind::ClientSecret => "client-secret",
            CredentialKind::ClientCertificate => "client-certificate",
        }
    }

    /// Parses a setting value.
    pub fn parse(s: &str) -> Option<CredentialKind> {
        <CredentialKind as clap::ValueEnum>::from_str(s.trim(), true).ok()
    }
}

/// What the identity needs besides the environment azure_identity reads itself.
#[derive(Debug, Clone)]
pub struct IdentityOptions {
    pub kind: CredentialKind,
    pub tenant_id: Option<String>,
    /// Client id of a user-assigned managed identity, or of the service principal.
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub client_certificate: Option<PathBuf>,
    pub client_certificate_password: Option<Secret>,
}

/// One credential of the chain, by name.
struct Link {
    kind: CredentialKind,
    credential: Arc<dyn TokenCredential>,
}

/// The service identity. Cheap to clone; tokens are cached inside each credential.
#[derive(Clone)]
pub struct Identity {
    links: Arc<Vec<Link>>,
    /// Links that could not even be built (e.g. workload identity without its
    /// variables), named in the error when nothing works.
    unavailable: Arc<Vec<(CredentialKind, String)>>,
    /// The link that gave the first token: used alone from then on.
    chosen: Arc<Mutex<Option<usize>>>,
    pinned: bool,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field(
                "chain",
                &self.links.iter().map(|l| l.kind.name()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A token could not be had.
#[derive(Debug, thiserror::Error)]
#[error("no token for {scope}: {detail}")]
pub struct TokenError {
    pub scope: String,
    pub detail: String,
}

fn client_options(http: &reqwest::Client) -> ClientOptions {
    ClientOptions {
        transport: Some(Transport::new(Arc::new(http.clone()))),
        // A few quick retries: start-up and `kvlake check` should answer in seconds,
        // and the callers retry on their own schedule.
        retry: RetryOptions::fixed(FixedRetryOptions {
            delay: azure_core::time::Duration::milliseconds(500),
            max_retries: 2,
            max_total_elapsed: azure_core::time::Duration::seconds(15),
        }),
        ..ClientOptions::default()
    }
}

impl Identity {
    /// Builds the chain (or the one pinned credential). Fails only when a pinned
    /// credential cannot be built; the chain keeps whatever can be.
    pub fn new(opts: &IdentityOptions, http: &reqwest::Client) -> anyhow::Result<Identity> {
        let order: &[CredentialKind] = match opts.kind {
            CredentialKind::Auto => &[
                CredentialKind::WorkloadIdentity,
                CredentialKind::ManagedIdentity,
                CredentialKind::AzureCli,
            ],
            CredentialKind::WorkloadIdentity => &[CredentialKind::WorkloadIdentity],
            CredentialKind::ManagedIdentity => &[CredentialKind::ManagedIdentity],
            CredentialKind::AzureCli => &[CredentialKind::AzureCli],
            CredentialKind::ClientSecret => &[CredentialKind::ClientSecret],
            CredentialKind::ClientCertificate => &[CredentialKind::ClientCertificate],
        };
        let pinned = opts.kind != CredentialKind::Auto;
        let mut links = Vec::new();
        let mut unavailable = Vec::new();
        for &kind in order {
            match build(kind, opts, http) {
                Ok(credential) => links.push(Link { kind, credential }),
                Err(e) if pinned => {
                    anyhow::bail!("--credential {}: {e}", kind.name())
                }
                Err(e) => unavailable.push((kind, e)),
            }
        }
        Ok(Identity {
            links: Arc::new(links),
            unavailable: Arc::new(unavailable),
            chosen: Arc::new(Mutex::new(None)),
            pinned,
        })
    }

    /// The credential in use, once one has given a token.
    pub fn chosen(&self) -> Option<&'static str> {
        let i = (*self.chosen.lock().unwrap_or_else(|p| p.into_inner()))?;
        self.links.get(i).map(|l| l.kind.name())
    }

    /// A token for one scope (e.g. `https://storage.azure.com/.default`).
    pub async fn token(&self, scope: &str) -> Result<AccessToken, TokenError> {
        let chosen = *self.chosen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = chosen
            && let Some(link) = self.links.get(i)
        {
            return link
                .credential
                .get_token(&[scope], None)
                .await
                .map_err(|e| TokenError {
                    scope: scope.into(),
                    detail: format!("{}: {}", link.kind.name(), describe(&e)),
                });
        }
        let mut failures: Vec<String> = self
            .unavailable
            .iter()
            .map(|(k, e)| format!("{}: {e}", k.name()))
            .collect();
        for (i, link) in self.links.iter().enumerate() {
            // Outside Azure the IMDS address does not answer: in the chain, a silent
            // endpoint must not hold start-up for minutes.
            let limit = if self.pinned {
                Duration::from_secs(60)
            } else {
                Duration::from_secs(10)
            };
            match tokio::time::timeout(limit, link.credential.get_token(&[scope], None)).await {
                Ok(Ok(token)) => {
                    *self.chosen.lock().unwrap_or_else(|p| p.into_inner()) = Some(i);
                    tracing::info!(
                        credential = link.kind.name(),
                        scope,
                        "identity: using {}",
                        link.kind.name()
                    );
                    return Ok(token);
                }
                Ok(Err(e)) => failures.push(format!("{}: {}", link.kind.name(), describe(&e))),
                Err(_) => failures.push(format!(
                    "{}: no answer within {}s",
                    link.kind.name(),
                    limit.as_secs()
                )),
            }
        }
        Err(TokenError {
            scope: scope.into(),
            detail: format!(
                "{} (pin one with --credential; outside Azure, `az login` or workload-identity variables)",
                failures.join("; ")
            ),
        })
    }
}

/// azure_core errors, on one line. They carry no token: a failing token request
/// never got one, and response bodies of token endpoints hold only error text.
fn describe(e: &azure_core::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s.replace('\n', " ")
}

fn build(
    kind: CredentialKind,
    opts: &IdentityOptions,
    http: &reqwest::Client,
) -> Result<Arc<dyn TokenCredential>, String> {
    let co = client_options(http);
    let err = |e: azure_core::Error| describe(&e);
    Ok(match kind {
        CredentialKind::Auto => return Err("auto is not a credential".into()),
        CredentialKind::WorkloadIdentity => {
            WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
                client_id: opts.client_id.clone(),
                tenant_id: opts.tenant_id.clone(),
                credential_options: azure_identity::ClientAssertionCredentialOptions {
                    client_options: co,
                },
                ..Default::default()
            }))
            .map_err(err)?
        }
        CredentialKind::ManagedIdentity => {
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: opts.client_id.clone().map(UserAssignedId::ClientId),
                client_options: co,
            }))
            .map_err(err)?
        }
        CredentialKind::AzureCli => AzureCliCredential::new(Some(AzureCliCredentialOptions {
            tenant_id: opts.tenant_id.clone(),
            ..Default::default()
        }))
        .map_err(err)?,
        CredentialKind::ClientSecret => {
            let (tenant, client) = sp_ids(opts)?;
            let secret = opts
                .client_secret
                .as_ref()
                .ok_or("needs --client-secret (or KVLAKE_CLIENT_SECRET)")?;
            ClientSecretCredential::new(
                &tenant,
                client,
                azure_core::credentials::Secret::new(secret.expose().to_string()),
                Some(ClientSecretCredentialOptions { client_options: co }),
            )
            .map_err(err)?
        }
        CredentialKind::ClientCertificate => {
            let (tenant, client) = sp_ids(opts)?;
            let path = opts
                .client_certificate
                .as_ref()
                .ok_or("needs --client-certificate (a PFX/PKCS#12 file)")?;
            let bytes = std::fs::read(path)
                .map_err(|e| format!("--client-certificate {}: {e}", path.display()))?;
            ClientCertificateCredential::new(
                tenant,
                client,
                azure_core::credentials::SecretBytes::new(bytes),
                Some(ClientCertificateCredentialOptions {
                    client_options: co,
                    password: opts
                        .client_certificate_password
                        .as_ref()
                        .map(|p| azure_core::credentials::Secret::new(p.expose().to_string())),
                }),
            )
            .map_err(err)?
        }
    })
}

fn sp_ids(opts: &IdentityOptions) -> Result<(String, String), String> {
    let tenant = opts
        .tenant_id
        .clone()
        .or_else(|| std::env::var("AZURE_TENANT_ID").ok())
        .ok_or("needs --tenant-id (or AZURE_TENANT_ID)")?;
    let client = opts
        .client_id
        .clone()
        .or_else(|| std::env::var("AZURE_CLIENT_ID").ok())
        .ok_or("needs --client-id (or AZURE_CLIENT_ID)")?;
    Ok((tenant, client))
}
