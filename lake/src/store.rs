//! The lake: one object store (local folder, ADLS Gen2 / Blob, or anything object_store
//! reaches) under one root, with retries for transient errors and create-if-absent puts.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use url::Url;

use crate::LakeError;

/// Storage operations retried after a transient error (counter; named for the hot path,
/// which is where operators watch it).
pub const STORAGE_RETRIES: &str = "kvlake_hot_storage_retries_total";

/// False from a retried storage operation until the next success: `/readyz` says so.
static STORAGE_OK: AtomicBool = AtomicBool::new(true);

/// Whether storage answered the last operation without a transient error.
pub fn storage_healthy() -> bool {
    STORAGE_OK.load(Ordering::Relaxed)
}

/// A storage operation succeeded after retries, or a batch committed.
pub fn storage_recovered() {
    STORAGE_OK.store(true, Ordering::Relaxed);
}

fn storage_retrying() {
    metrics::counter!(STORAGE_RETRIES).increment(1);
    STORAGE_OK.store(false, Ordering::Relaxed);
}

/// How hard storage operations are retried before the batch gives up (uncommitted).
#[derive(Debug, Clone, Copy)]
pub struct StorageRetry {
    /// Total time spent retrying one operation.
    pub total: Duration,
    /// Longest pause between two tries.
    pub max_delay: Duration,
}

impl Default for StorageRetry {
    fn default() -> Self {
        StorageRetry {
            total: Duration::from_secs(300),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// Outcome of a create-if-absent put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// This call created the object.
    Created,
    /// The object was already there; nothing was written.
    AlreadyExists,
}

/// Credentials and trust for an Azure lake beyond what the URL and options carry: the
/// binary's identity (bearer tokens) or a rotating key/SAS, and extra root certificates.
#[derive(Clone, Default)]
pub struct LakeAuth {
    /// Used instead of object_store's own credential lookup.
    pub credentials: Option<object_store::azure::AzureCredentialProvider>,
    /// PEM roots trusted besides the system's (a private CA or TLS inspection).
    pub root_certificates_pem: Option<Arc<Vec<u8>>>,
}

impl std::fmt::Debug for LakeAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeAuth")
            .field("credentials", &self.credentials.is_some())
            .field("root_certificates", &self.root_certificates_pem.is_some())
            .finish()
    }
}

/// An object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Path relative to the lake root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Last modified, milliseconds since the epoch.
    pub modified_ms: i64,
}

/// A lake root in an object store.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    root: Path,
    display: String,
    retry: StorageRetry,
}

impl Lake {
    /// Opens a lake from a URL: a plain path or `file://` (created if missing),
    /// `abfss://<container>@<account>.dfs.core.windows.net/<path>`, `az://<container>/<path>`,
    /// or any other scheme object_store knows. `options` are object_store settings
    /// (e.g. `azure_storage_account_key`, `azure_storage_sas_key`, `use_emulator`).
    pub fn open(
        url: &str,
        options: &[(String, String)],
        output_prefix: Option<&str>,
    ) -> Result<Lake, LakeError> {
        Lake::open_with(url, options, output_prefix, &LakeAuth::default())
    }

    /// [`Lake::open`] with credentials and roots the binary supplies (Azure only).
    pub fn open_with(
        url: &str,
        options: &[(String, String)],
        output_prefix: Option<&str>,
        auth: &LakeAuth,
    ) -> Result<Lake, LakeError> {
        // A SAS URL carries its token in the query: keep it out of every message.
        let query = Url::parse(url)
            .ok()
            .and_then(|u| u.query().map(str::to_string))
            .filter(|q| !q.is_empty());
        let shown = Url::parse(url).map_or_else(|_| url.to_string(), |u| redact_url(&u));
        let err = |detail: String| LakeError::Config {
            url: shown.clone(),
            detail: match &query {
                Some(q) => detail.replace(q.as_str(), "[REDACTED]"),
                None => detail,
            },
        };
        let parsed = match Url::parse(url) {
            Ok(u) if u.scheme().len() > 1 => u,
            // A plain path (a one-letter "scheme" is a Windows drive).
            _ => {
                let abs =
                    std::path::absolute(url).map_err(|e| err(format!("not a usable path: {e}")))?;
                Url::from_directory_path(&abs).map_err(|()| err("not an absolute path".into()))?
            }
        };
        let (store, root): (Arc<dyn ObjectStore>, Path) = match parsed.scheme() {
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| err("file URL has no local path".into()))?;
                std::fs::create_dir_all(&dir)
                    .map_err(|e| err(format!("cannot create the folder: {e}")))?;
                let fs = LocalFileSystem::new_with_prefix(&dir).map_err(|e| err(e.to_string()))?;
                (Arc::new(fs), Path::default())
            }
            "az" | "azure" | "abfs" | "abfss" | "adl" => {
                let mut b = MicrosoftAzureBuilder::from_env();
                if let Some(pem) = &auth.root_certificates_pem {
                    // Set before the options, which may add client settings of their own.
                    let mut co = object_store::ClientOptions::new();
                    for c in object_store::Certificate::from_pem_bundle(pem)
                        .map_err(|e| err(format!("--ca-file: {e}")))?
                    {
                        co = co.with_root_certificate(c);
                    }
                    b = b.with_client_options(co);
                }
                b = b.with_url(url);
                if let Some(c) = &auth.credentials {
                    b = b.with_credentials(c.clone());
                }
                for (k, v) in options {
                    let key: AzureConfigKey = k
                        .parse()
                        .map_err(|_| err(format!("unknown storage option `{k}` for Azure (see object_store's AzureConfigKey)")))?;
                    b = b.with_config(key, v);
                }
                let store = b.build().map_err(|e| err(e.to_string()))?;
                let root =
                    Path::from_url_path(azure_root(&parsed)).map_err(|e| err(e.to_string()))?;
                (Arc::new(store), root)
            }
            _ => {
                let (store, root) = object_store::parse_url_opts(&parsed, options.iter().cloned())
                    .map_err(|e| err(e.to_string()))?;
                (Arc::from(store), root)
            }
        };
        let mut lake = Lake::with_store(store, root, redact_url(&parsed));
        if let Some(p) = output_prefix.filter(|p| !p.trim_matches('/').is_empty()) {
            lake = lake.child(p);
        }
        Ok(lake)
    }

    /// A lake over an existing store and root.
    pub fn with_store(store: Arc<dyn ObjectStore>, root: Path, display: String) -> Lake {
        Lake {
            store,
            root,
            display,
            retry: StorageRetry::default(),
        }
    }

    /// The same store, under `root/<prefix>` (replays write under their own prefix).
    pub fn child(&self, prefix: &str) -> Lake {
        let mut root = self.root.clone();
        for part in prefix.split('/').filter(|p| !p.is_empty()) {
            root = root.clone().join(part);
        }
        Lake {
            root,
            display: format!(
                "{}/{}",
                self.display.trim_end_matches('/'),
                prefix.trim_matches('/')
            ),
            ..self.clone()
        }
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: StorageRetry) -> Lake {
        self.retry = retry;
        self
    }

    /// The URL of the lake, without credentials.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The underlying store and the root inside it.
    pub fn store(&self) -> (&Arc<dyn ObjectStore>, &Path) {
        (&self.store, &self.root)
    }

    fn path(&self, rel: &str) -> Path {
        let mut p = self.root.clone();
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(self.retry.max_delay)
            .with_total_delay(Some(self.retry.total))
            .with_max_times(usize::MAX)
            .with_jitter()
    }

    /// Writes (or overwrites) an object.
    pub async fn put(&self, rel: &str, bytes: Bytes) -> Result<(), LakeError> {
        let path = self.path(rel);
        (|| async { self.store.put(&path, PutPayload::from_bytes(bytes.clone())).await.map(|_| ()) })
            .retry(self.backoff())
            .when(is_transient)
            .notify(|e, d| tracing::warn!(op = "put", path = %path, error = %e, retry_in = ?d, "storage unavailable, retrying"))
            .await
            .map_err(|source| LakeError::Storage { op: "put", path: path.to_string(), source: Box::new(source) })
    }

    /// Creates an object only if it does not exist: the fence of the checkpoint log.
    pub async fn put_if_absent(&self, rel: &str, bytes: Bytes) -> Result<Created, LakeError> {
        let path = self.path(rel);
        let opts = || PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let result = (|| async { self.store.put_opts(&path, PutPayload::from_bytes(bytes.clone()), opts()).await })
            .retry(self.backoff())
            .when(is_transient)
            .notify(|e, d| tracing::warn!(op = "create", path = %path, error = %e, retry_in = ?d, "storage unavailable, retrying"))
            .await;
        match result {
            Ok(_) => Ok(Created::Created),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(Created::AlreadyExists),
            Err(source) => Err(LakeError::Storage {
                op: "create",
                path: path.to_string(),
                source: Box::new(source),
            }),
        }
    }

    /// Reads an object; `None` if it does not exist.
    pub async fn get(&self, rel: &str) -> Result<Option<Bytes>, LakeError> {
        let path = self.path(rel);
        let result = (|| async { self.store.get(&path).await?.bytes().await })
            .retry(self.backoff())
            .when(is_transient)
            .notify(|e, d| tracing::warn!(op = "get", path = %path, error = %e, retry_in = ?d, "storage unavailable, retrying"))
            .await;
        match result {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(LakeError::Storage {
                op: "get",
                path: path.to_string(),
                source: Box::new(source),
            }),
        }
    }

    /// Lists every object under a folder, recursively: paths relative to the lake root, and sizes.
    pub async fn list(&self, rel_dir: &str) -> Result<Vec<(String, u64)>, LakeError> {
        self.list_from(rel_dir, None).await
    }

    /// Lists objects under a folder whose path sorts after `rel_offset` (a path relative
    /// to the lake root): the log's fast path, server-side on Azure (`startFrom`).
    pub async fn list_after(
        &self,
        rel_dir: &str,
        rel_offset: &str,
    ) -> Result<Vec<(String, u64)>, LakeError> {
        self.list_from(rel_dir, Some(self.path(rel_offset))).await
    }

    async fn list_from(
        &self,
        rel_dir: &str,
        offset: Option<Path>,
    ) -> Result<Vec<(String, u64)>, LakeError> {
        Ok(self
            .list_objects(rel_dir, offset)
            .await?
            .into_iter()
            .map(|o| (o.path, o.size))
            .collect())
    }

    /// Lists every object under a folder with its size and last-modified time
    /// (what VACUUM and log cleanup decide by).
    pub async fn list_meta(&self, rel_dir: &str) -> Result<Vec<ObjectInfo>, LakeError> {
        self.list_objects(rel_dir, None).await
    }

    async fn list_objects(
        &self,
        rel_dir: &str,
        offset: Option<Path>,
    ) -> Result<Vec<ObjectInfo>, LakeError> {
        let dir = self.path(rel_dir);
        let listing = || async {
            match &offset {
                Some(o) => {
                    self.store
                        .list_with_offset(Some(&dir), o)
                        .try_collect::<Vec<_>>()
                        .await
                }
                None => self.store.list(Some(&dir)).try_collect::<Vec<_>>().await,
            }
        };
        let items = listing
            .retry(self.backoff())
            .when(is_transient)
            .notify(|e, d| tracing::warn!(op = "list", path = %dir, error = %e, retry_in = ?d, "storage unavailable, retrying"))
            .await
            .map_err(|source| LakeError::Storage { op: "list", path: dir.to_string(), source: Box::new(source) })?;
        let mut out: Vec<ObjectInfo> = items
            .into_iter()
            .filter_map(|m| {
                let rel: Vec<_> = m
                    .location
                    .prefix_match(&self.root)?
                    .map(|p| p.as_ref().to_string())
                    .collect();
                Some(ObjectInfo {
                    path: rel.join("/"),
                    size: m.size,
                    modified_ms: m.last_modified.timestamp_millis(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Whether anything exists under a folder (one listing page, not the whole tree).
    pub async fn has_any(&self, rel_dir: &str) -> Result<bool, LakeError> {
        let dir = self.path(rel_dir);
        let first = (|| async { self.store.list(Some(&dir)).next().await.transpose() })
            .retry(self.backoff())
            .when(is_transient)
            .await
            .map_err(|source| LakeError::Storage {
                op: "list",
                path: dir.to_string(),
                source: Box::new(source),
            })?;
        Ok(first.is_some())
    }

    /// Deletes an object; missing is fine.
    pub async fn delete(&self, rel: &str) -> Result<(), LakeError> {
        let path = self.path(rel);
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(LakeError::Storage {
                op: "delete",
                path: path.to_string(),
                source: Box::new(source),
            }),
        }
    }
}

/// Path inside the container for the Azure URL forms object_store accepts.
fn azure_root(url: &Url) -> &str {
    let path = url.path();
    // `az://container/path` and `abfss://container@account.../path`: the container is the
    // host or user part, so the whole URL path is the root. `https://account.../container/path`: skip the container.
    match url.scheme() {
        "https" | "http" => path
            .trim_start_matches('/')
            .split_once('/')
            .map_or("", |(_, rest)| rest),
        _ => path,
    }
}

/// Errors worth another try: anything but a definite answer from the store.
fn is_transient(e: &object_store::Error) -> bool {
    let transient = !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::UnknownConfigurationKey { .. }
            | object_store::Error::InvalidPath { .. }
    );
    if transient {
        storage_retrying();
    }
    transient
}

/// The URL with user info and query (SAS tokens) removed, for logs.
fn redact_url(url: &Url) -> String {
    let mut u = url.clone();
    if !u.username().is_empty() && u.scheme() != "abfss" && u.scheme() != "abfs" {
        let _ = u.set_username("");
    }
    let _ = u.set_password(None);
    if u.query().is_some() {
        u.set_query(Some("[REDACTED]"));
    }
    u.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_lake_put_if_absent_fences_a_second_writer() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), &[], Some("replay-1")).unwrap();
        assert_eq!(
            lake.put_if_absent("_kvlake/a.json", Bytes::from("one"))
                .await
                .unwrap(),
            Created::Created
        );
        assert_eq!(
            lake.put_if_absent("_kvlake/a.json", Bytes::from("two"))
                .await
                .unwrap(),
            Created::AlreadyExists
        );
        assert_eq!(
            lake.get("_kvlake/a.json").await.unwrap().unwrap(),
            Bytes::from("one")
        );
        assert_eq!(lake.get("_kvlake/missing.json").await.unwrap(), None);
        lake.put("raw/x.parquet", Bytes::from("data"))
            .await
            .unwrap();
        let listed = lake.list("").await.unwrap();
        assert_eq!(
            listed,
            vec![
                ("_kvlake/a.json".to_string(), 3),
                ("raw/x.parquet".to_string(), 4)
            ]
        );
        assert!(dir.path().join("replay-1/raw/x.parquet").exists());
    }

    #[test]
    fn urls_are_redacted_and_roots_found() {
        let u = Url::parse("https://acct.blob.core.windows.net/lake/data?sig=secret").unwrap();
        assert!(!redact_url(&u).contains("secret"));
        assert_eq!(azure_root(&u), "data");
        assert_eq!(
            azure_root(&Url::parse("abfss://lake@acct.dfs.core.windows.net/kv/raw").unwrap()),
            "/kv/raw"
        );
        assert!(Lake::open("az://c/p", &[("bogus".into(), "1".into())], None).is_err());
        let e = Lake::open("s3x://bucket/p?sig=TOPSECRET", &[], None)
            .unwrap_err()
            .to_string();
        assert!(!e.contains("TOPSECRET"), "{e}");
    }
}
