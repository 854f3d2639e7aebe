//! `kvlake check`: a connectivity and permission doctor for private networks. For every
//! endpoint the settings use: DNS, TCP, TLS, a token, then the least real operation.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use bytes::Bytes;
use kvlake_hotpath::Lake;
use kvlake_hotpath::lake::StorageRetry;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cli::CheckArgs;
use crate::identity::http::ExtraRoots;
use crate::identity::secrets::{Failure, SecretError};
use crate::identity::{self, Identity, SecretRef, SecretStore};
use crate::secret::Secret;
use crate::settings::{self, HotSettings, KafkaAuth, StorageAuth};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
enum Status {
    Ok,
    Blocked,
    Denied,
    Misconfigured,
}

/// One line of the report.
#[derive(Debug, Serialize)]
struct Row {
    check: String,
    target: String,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
}

impl Report {
    fn add(
        &mut self,
        check: &str,
        target: &str,
        status: Status,
        detail: String,
        fix: Option<&str>,
    ) {
        self.rows.push(Row {
            check: check.into(),
            target: target.into(),
            status,
            detail,
            fix: fix.map(str::to_string),
        });
    }
    fn ok(&self) -> bool {
        self.rows.iter().all(|r| r.status == Status::Ok)
    }
}

pub async fn run(args: &CheckArgs) -> Result<()> {
    let timeout = humantime::parse_duration(&args.timeout).map_err(|_| {
        anyhow::anyhow!("--timeout `{}` is not a duration (e.g. 10s)", args.timeout)
    })?;
    let mut report = Report::default();
    check_all(args, timeout, &mut report).await;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": report.ok(),
                "checks": report.rows,
            }))?
        );
    } else {
        print_table(&report.rows);
    }
    let failed = report
        .rows
        .iter()
        .filter(|r| r.status != Status::Ok)
        .count();
    if failed > 0 {
        bail!("{failed} of {} checks failed", report.rows.len());
    }
    Ok(())
}

fn print_table(rows: &[Row]) {
    let w = |f: fn(&Row) -> usize, min: usize| rows.iter().map(f).max().unwrap_or(0).max(min);
    let (wc, wt) = (w(|r| r.check.len(), 5), w(|r| r.target.len(), 6));
    println!(
        "{:<wc$}  {:<wt$}  {:<13}  DETAIL",
        "CHECK", "TARGET", "STATUS"
    );
    for r in rows {
        let status = serde_json::to_value(r.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        println!(
            "{:<wc$}  {:<wt$}  {:<13}  {}",
            r.check, r.target, status, r.detail
        );
        if let Some(f) = &r.fix {
            println!("{:<wc$}  {:<wt$}  {:<13}  fix: {f}", "", "", "");
        }
    }
}

async fn check_all(args: &CheckArgs, timeout: Duration, report: &mut Report) {
    let s = match settings::load(args.hot.config.as_deref(), &args.hot) {
        Ok(s) => s,
        Err(e) => {
            report.add(
                "settings",
                "layers",
                Status::Misconfigured,
                format!("{e:#}"),
                None,
            );
            return;
        }
    };
    let roots = match ExtraRoots::load(s.ca_file.as_deref().map(std::path::Path::new)) {
        Ok(r) => r,
        Err(e) => {
            report.add(
                "settings",
                "--ca-file",
                Status::Misconfigured,
                format!("{e:#}"),
                None,
            );
            return;
        }
    };
    let http = match identity::http::client(&roots) {
        Ok(h) => h,
        Err(e) => {
            report.add(
                "settings",
                "https client",
                Status::Misconfigured,
                format!("{e:#}"),
                None,
            );
            return;
        }
    };

    // The identity, when anything needs it: check its token endpoint first.
    let mut s = s;
    let local = SecretStore::new(http.clone(), None);
    let mut id_opts = match settings::identity_options(&s) {
        Ok(o) => o,
        Err(e) => {
            report.add(
                "settings",
                "--credential",
                Status::Misconfigured,
                format!("{e:#}"),
                None,
            );
            return;
        }
    };
    if let Some(v) = &s.client_secret {
        id_opts.client_secret = resolve_local(&local, "--client-secret", v, report).await;
    }
    if let Some(v) = &s.client_certificate_password {
        id_opts.client_certificate_password =
            resolve_local(&local, "--client-certificate-password", v, report).await;
    }
    let brokers_hint = s.brokers.clone().unwrap_or_default();
    let kafka_entra = settings::kafka_auth(&s, &brokers_hint).ok() == Some(KafkaAuth::Entra);
    let storage_entra = settings::storage_auth(&s).ok() == Some(StorageAuth::Entra);
    let vault_refs: Vec<(&'static str, SecretRef)> = settings::secret_settings(&s)
        .into_iter()
        .filter_map(|(n, v)| SecretRef::parse(n, v).ok().map(|r| (n, r)))
        .filter(|(_, r)| !matches!(r, SecretRef::Literal(_)))
        .collect();
    let needs_identity = kafka_entra
        || storage_entra
        || vault_refs
            .iter()
            .any(|(_, r)| matches!(r, SecretRef::KeyVault(_)));
    let identity = if needs_identity {
        check_token_endpoint(&roots, timeout, report).await;
        match Identity::new(&id_opts, &http) {
            Ok(i) => Some(i),
            Err(e) => {
                report.add(
                    "identity",
                    id_opts.kind.name(),
                    Status::Misconfigured,
                    format!("{e:#}"),
                    None,
                );
                None
            }
        }
    } else {
        None
    };

    // Secret references: each read for real.
    let store = SecretStore::new(http.clone(), identity.clone());
    let mut vaults_probed = Vec::new();
    for (name, r) in &vault_refs {
        if let SecretRef::KeyVault(kv) = r {
            let (host, port) = kv.host_port();
            if !vaults_probed.contains(&host) {
                vaults_probed.push(host.clone());
                if !probe(
                    report,
                    "key vault network",
                    &host,
                    port,
                    true,
                    &roots,
                    timeout,
                    "privatelink.vaultcore.azure.net",
                )
                .await
                {
                    continue;
                }
            }
        }
        match tokio::time::timeout(timeout * 3, store.fetch(name, r)).await {
            Ok(Ok(v)) => {
                report.add(
                    "secret",
                    name,
                    Status::Ok,
                    format!("read from {}", r.describe()),
                    None,
                );
                set_secret(&mut s, name, v);
            }
            Ok(Err(e)) => {
                let (status, fix) = secret_failure(&e);
                report.add("secret", name, status, e.to_string(), fix);
            }
            Err(_) => report.add(
                "secret",
                name,
                Status::Blocked,
                format!("{}: no answer in time", r.describe()),
                None,
            ),
        }
    }

    // Tokens for each resource the run will use.
    if let Some(id) = &identity {
        let mut scopes = Vec::new();
        if kafka_entra && let Ok(scope) = settings::kafka_token_scope(&s, &brokers_hint) {
            scopes.push((
                scope,
                "Azure Event Hubs Data Receiver on the event hub or namespace",
            ));
        }
        if storage_entra {
            scopes.push((
                identity::STORAGE_SCOPE.to_string(),
                "Storage Blob Data Contributor on the container or account",
            ));
        }
        for (scope, role) in scopes {
            match tokio::time::timeout(timeout * 3, id.token(&scope)).await {
                Ok(Ok(_)) => report.add(
                    "token",
                    &scope,
                    Status::Ok,
                    format!("from {}", id.chosen().unwrap_or("identity")),
                    None,
                ),
                Ok(Err(e)) => report.add(
                    "token",
                    &scope,
                    Status::Denied,
                    e.to_string(),
                    Some(&format!(
                        "check the identity exists here, then give it {role}"
                    )),
                ),
                Err(_) => report.add(
                    "token",
                    &scope,
                    Status::Blocked,
                    "the token endpoint did not answer in time".into(),
                    None,
                ),
            }
        }
    }

    check_kafka(&s, identity.as_ref(), &roots, timeout, report).await;
    check_storage(&s, identity.as_ref(), &roots, timeout, report).await;
}

async fn resolve_local(
    store: &SecretStore,
    name: &str,
    v: &Secret,
    report: &mut Report,
) -> Option<Secret> {
    match SecretRef::parse(name, v) {
        Ok(r @ (SecretRef::Env(_) | SecretRef::File(_) | SecretRef::Literal(_))) => {
            match store.fetch(name, &r).await {
                Ok(v) => Some(v),
                Err(e) => {
                    report.add("secret", name, Status::Misconfigured, e.to_string(), None);
                    None
                }
            }
        }
        Ok(_) => {
            report.add(
                "secret",
                name,
                Status::Misconfigured,
                "cannot be a Key Vault reference (the identity needs it to read the vault)".into(),
                Some("use env: or file:"),
            );
            None
        }
        Err(e) => {
            report.add("secret", name, Status::Misconfigured, e.to_string(), None);
            None
        }
    }
}

fn set_secret(s: &mut HotSettings, name: &str, v: Secret) {
    match name {
        "--eventhubs-connection-string" => s.eventhubs_connection_string = Some(v),
        "--storage-account-key" => s.storage_account_key = Some(v),
        "--storage-sas" => s.storage_sas = Some(v),
        "--client-secret" => s.client_secret = Some(v),
        _ => s.client_certificate_password = Some(v),
    }
}

fn secret_failure(e: &SecretError) -> (Status, Option<&'static str>) {
    match e.failure() {
        Failure::Denied => (
            Status::Denied,
            Some("give the identity the Key Vault Secrets User role on the vault"),
        ),
        Failure::Blocked => (
            Status::Blocked,
            Some(
                "check the vault's private endpoint, the privatelink.vaultcore.azure.net DNS zone and the vault firewall",
            ),
        ),
        Failure::Misconfigured => (Status::Misconfigured, None),
    }
}

/// The managed-identity or Entra endpoint the chain will call, when it is a URL.
async fn check_token_endpoint(roots: &ExtraRoots, timeout: Duration, report: &mut Report) {
    let endpoint = if let Ok(e) = std::env::var("IDENTITY_ENDPOINT") {
        e
    } else if std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").is_some() {
        std::env::var("AZURE_AUTHORITY_HOST")
            .unwrap_or_else(|_| "https://login.microsoftonline.com".into())
    } else {
        // IMDS answers on a link-local address inside Azure only; the token check
        // below tells whether it works, without a probe from a machine outside Azure.
        return;
    };
    let Ok(u) = url::Url::parse(&endpoint) else {
        report.add(
            "identity network",
            &endpoint,
            Status::Misconfigured,
            "not a URL".into(),
            None,
        );
        return;
    };
    let host = u.host_str().unwrap_or_default().to_string();
    let port = u.port_or_known_default().unwrap_or(443);
    probe(
        report,
        "identity network",
        &host,
        port,
        u.scheme() == "https",
        roots,
        timeout,
        "",
    )
    .await;
}

/// DNS, TCP and (when `tls`) a TLS handshake; one row. False when the path is blocked.
#[allow(clippy::too_many_arguments)]
async fn probe(
    report: &mut Report,
    check: &str,
    host: &str,
    port: u16,
    tls: bool,
    roots: &ExtraRoots,
    timeout: Duration,
    private_zone: &str,
) -> bool {
    let target = format!("{host}:{port}");
    let zone_fix = if private_zone.is_empty() {
        "check the host name and the network's DNS".to_string()
    } else {
        format!(
            "link the private DNS zone {private_zone} to the network, with a record for this host"
        )
    };
    let addrs = match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(a)) => a.collect::<Vec<_>>(),
        Ok(Err(e)) => {
            report.add(
                check,
                &target,
                Status::Blocked,
                format!("DNS: cannot resolve {host}: {e}"),
                Some(&zone_fix),
            );
            return false;
        }
        Err(_) => {
            report.add(
                check,
                &target,
                Status::Blocked,
                format!("DNS: no answer for {host}"),
                Some(&zone_fix),
            );
            return false;
        }
    };
    let Some(addr) = addrs.first().copied() else {
        report.add(
            check,
            &target,
            Status::Blocked,
            format!("DNS: no address for {host}"),
            Some(&zone_fix),
        );
        return false;
    };
    let kind = address_kind(addr.ip());
    let tcp = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            report.add(check, &target, Status::Blocked, format!("DNS {} ({kind}); TCP: {e}", addr.ip()), Some("open the port in the NSG / firewall, check the private endpoint is approved, and that the service listens there"));
            return false;
        }
        Err(_) => {
            report.add(check, &target, Status::Blocked, format!("DNS {} ({kind}); TCP: no answer within {}s", addr.ip(), timeout.as_secs()), Some("a firewall or NSG drops the traffic, or the address is not reachable from here"));
            return false;
        }
    };
    let mut detail = format!("DNS {} ({kind}); TCP ok", addr.ip());
    if kind == "public" && !private_zone.is_empty() {
        detail.push_str(&format!(
            "; a public address: with a private endpoint, link {private_zone}"
        ));
    }
    if tls {
        let mut store = rustls::RootCertStore::empty();
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = store.add(c);
        }
        for c in roots.der() {
            let _ = store.add(c);
        }
        let config = rustls::ClientConfig::builder()
            .with_root_certificates(store)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = match rustls::pki_types::ServerName::try_from(host.to_string()) {
            Ok(n) => n,
            Err(_) => {
                report.add(
                    check,
                    &target,
                    Status::Misconfigured,
                    format!("{detail}; TLS: {host} is not a valid server name"),
                    None,
                );
                return false;
            }
        };
        match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
            Ok(Ok(_)) => detail.push_str("; TLS ok"),
            Ok(Err(e)) => {
                report.add(
                    check,
                    &target,
                    Status::Blocked,
                    format!("{detail}; TLS: {e}"),
                    Some("if a proxy inspects TLS, give its root certificate with --ca-file"),
                );
                return false;
            }
            Err(_) => {
                report.add(
                    check,
                    &target,
                    Status::Blocked,
                    format!("{detail}; TLS: no handshake in time"),
                    None,
                );
                return false;
            }
        }
    }
    report.add(check, &target, Status::Ok, detail, None);
    true
}

fn address_kind(ip: IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(v) if v.is_loopback() => "loopback",
        IpAddr::V4(v) if v.is_private() || v.is_link_local() => "private",
        IpAddr::V4(v) if v.octets()[0] == 100 && (v.octets()[1] & 0xc0) == 64 => "private",
        IpAddr::V6(v) if v.is_loopback() => "loopback",
        IpAddr::V6(v) if (v.segments()[0] & 0xfe00) == 0xfc00 => "private",
        _ => "public",
    }
}

async fn check_kafka(
    s: &HotSettings,
    identity: Option<&Identity>,
    roots: &ExtraRoots,
    timeout: Duration,
    report: &mut Report,
) {
    let (cfg, _, _) = match settings::validate(s.clone()) {
        Ok(v) => v,
        Err(e) => {
            report.add(
                "kafka settings",
                "hot",
                Status::Misconfigured,
                format!("{e:#}"),
                None,
            );
            return;
        }
    };
    let brokers = cfg.kafka["bootstrap.servers"].clone();
    let protocol = cfg
        .kafka
        .get("security.protocol")
        .map(|p| p.to_ascii_lowercase())
        .unwrap_or_default();
    let tls = protocol.ends_with("ssl");
    let mut reachable = true;
    for b in brokers.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let (host, port) = b
            .rsplit_once(':')
            .map_or((b, 9092), |(h, p)| (h, p.parse().unwrap_or(9092)));
        reachable &= probe(
            report,
            "event hubs network",
            host,
            port,
            tls,
            roots,
            timeout,
            "privatelink.servicebus.windows.net",
        )
        .await;
    }
    if !reachable {
        return;
    }
    let mut cfg = cfg;
    let stop = CancellationToken::new();
    let entra = cfg.kafka.get("sasl.mechanism").map(String::as_str) == Some("OAUTHBEARER");
    if entra {
        let (Some(id), Ok(scope)) = (identity, settings::kafka_token_scope(s, &brokers)) else {
            return;
        };
        match identity::KafkaTokens::start(id.clone(), scope, stop.clone()).await {
            Ok(t) => cfg.oauth = Some(t),
            Err(_) => return, // the token row already says why
        }
    }
    let target = format!(
        "{} / {}",
        cfg.topic,
        cfg.kafka.get("group.id").cloned().unwrap_or_default()
    );
    let result = async {
        let consumer =
            kvlake_hotpath::source::create_consumer(&cfg.kafka, 1024, cfg.oauth.clone())?;
        if cfg.oauth.is_some() {
            kvlake_hotpath::source::serve_first_oauth_token(&consumer).await;
        }
        let parts = kvlake_hotpath::source::partitions(&consumer, &cfg.topic, timeout).await?;
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in &parts {
            tpl.add_partition(&cfg.topic, *p);
        }
        let c = consumer.clone();
        let committed = tokio::task::spawn_blocking(move || {
            use rdkafka::consumer::Consumer;
            c.committed_offsets(tpl, timeout)
        })
        .await
        .map_err(|e| kvlake_hotpath::HotError::Task(e.to_string()))?;
        Ok::<_, kvlake_hotpath::HotError>((parts, committed))
    }
    .await;
    stop.cancel();
    let fix_denied = if entra {
        "give the identity Azure Event Hubs Data Receiver on the event hub (or namespace)"
    } else {
        "check the connection string: its policy needs Listen; the Basic tier has no Kafka endpoint"
    };
    match result {
        Ok((parts, committed)) => {
            let detail = match committed {
                Ok(list) => {
                    let with = list
                        .elements()
                        .iter()
                        .filter(|e| matches!(e.offset(), rdkafka::Offset::Offset(_)))
                        .count();
                    format!(
                        "{} partitions; group has committed offsets on {with}",
                        parts.len()
                    )
                }
                Err(e) => format!("{} partitions; group offsets unreadable: {e}", parts.len()),
            };
            report.add("event hubs read", &target, Status::Ok, detail, None);
        }
        Err(kvlake_hotpath::HotError::KafkaRefused { refusal, .. }) => {
            let scope = settings::kafka_token_scope(s, &brokers).ok();
            let ns = crate::eventhubs::namespace_of(
                &brokers,
                s.eventhubs_connection_string.as_ref(),
                scope.as_deref(),
            );
            let mechanism = cfg
                .kafka
                .get("sasl.mechanism")
                .map(|m| m.to_ascii_uppercase())
                .unwrap_or_default();
            let (detail, fix) =
                crate::eventhubs::refusal_parts(&ns, &brokers, &mechanism, &refusal);
            let status = match refusal {
                kvlake_hotpath::source::Refusal::Credentials(_) => Status::Denied,
                kvlake_hotpath::source::Refusal::Closed(_) => Status::Misconfigured,
            };
            report.add("event hubs read", &target, status, detail, Some(fix));
        }
        Err(e @ kvlake_hotpath::HotError::Topic { .. }) => report.add(
            "event hubs read",
            &target,
            Status::Misconfigured,
            e.to_string(),
            Some("check --topic (the event hub's name) and that it exists in this namespace"),
        ),
        Err(e) => {
            let text = e.to_string();
            let denied =
                text.contains("SASL") || text.contains("uthenticat") || text.contains("uthoriz");
            if denied {
                report.add(
                    "event hubs read",
                    &target,
                    Status::Denied,
                    text,
                    Some(fix_denied),
                );
            } else {
                report.add("event hubs read", &target, Status::Blocked, text, None);
            }
        }
    }
}

async fn check_storage(
    s: &HotSettings,
    identity: Option<&Identity>,
    roots: &ExtraRoots,
    timeout: Duration,
    report: &mut Report,
) {
    let Some(url) = s.lake.clone().filter(|l| !l.trim().is_empty()) else {
        report.add(
            "lake",
            "--lake",
            Status::Misconfigured,
            "missing --lake (or KVLAKE_LAKE)".into(),
            None,
        );
        return;
    };
    let auth = match settings::storage_auth(s) {
        Ok(a) => a,
        Err(e) => {
            report.add(
                "lake",
                "--storage-auth",
                Status::Misconfigured,
                format!("{e:#}"),
                None,
            );
            return;
        }
    };
    let parsed = url::Url::parse(&url).ok().filter(|u| u.scheme().len() > 1);
    if let Some(u) = &parsed
        && u.scheme() != "file"
    {
        let endpoint = s.storage_options.iter().find(|(k, _)| {
            let k = k.to_ascii_lowercase();
            k.ends_with("endpoint") && !k.contains("msi")
        });
        if let Some((_, e)) = endpoint {
            if let Ok(e) = url::Url::parse(e) {
                let host = e.host_str().unwrap_or_default().to_string();
                let port = e.port_or_known_default().unwrap_or(443);
                if !probe(
                    report,
                    "storage network",
                    &host,
                    port,
                    e.scheme() == "https",
                    roots,
                    timeout,
                    "privatelink.blob.core.windows.net",
                )
                .await
                {
                    return;
                }
            }
        } else if let Some(account) = storage_account(u, s) {
            let mut ok = true;
            for (svc, zone) in [
                ("blob", "privatelink.blob.core.windows.net"),
                ("dfs", "privatelink.dfs.core.windows.net"),
            ] {
                ok &= probe(
                    report,
                    "storage network",
                    &format!("{account}.{svc}.core.windows.net"),
                    443,
                    true,
                    roots,
                    timeout,
                    zone,
                )
                .await;
            }
            if !ok {
                return;
            }
        }
    }
    // The same credentials the run would use, with key/SAS already read above.
    let watch = |v: &Option<Secret>| v.clone().map(|v| tokio::sync::watch::channel(v).1);
    let prepared = settings::Prepared {
        settings: s.clone(),
        identity: identity.cloned(),
        secrets: Arc::new(SecretStore::new(reqwest::Client::new(), None)),
        roots: roots.clone(),
        connection_string: None,
        storage_account_key: watch(&s.storage_account_key),
        storage_sas: watch(&s.storage_sas),
        alert_webhook_secret: None,
    };
    let lake_auth = match settings::lake_auth(&prepared) {
        Ok(a) => a,
        Err(e) => {
            report.add(
                "lake",
                "credentials",
                Status::Misconfigured,
                format!("{e:#}"),
                None,
            );
            return;
        }
    };
    let options: Vec<(String, String)> = s.storage_options.clone().into_iter().collect();
    let lake = match Lake::open_with(&url, &options, s.output_prefix.as_deref(), &lake_auth) {
        Ok(l) => l.with_retry(StorageRetry {
            total: Duration::from_secs(1),
            max_delay: Duration::from_millis(500),
        }),
        Err(e) => {
            report.add("lake", &url, Status::Misconfigured, e.to_string(), None);
            return;
        }
    };
    let target = lake.display().to_string();
    let probe_path = format!("_kvlake/check/probe-{}-{}", std::process::id(), stamp_ms());
    let result = tokio::time::timeout(timeout * 3, async {
        lake.put(&probe_path, Bytes::from_static(b"kvlake check"))
            .await?;
        let back = lake.get(&probe_path).await?;
        lake.delete(&probe_path).await?;
        Ok::<_, kvlake_hotpath::HotError>(back)
    })
    .await;
    let fix_denied = match auth {
        StorageAuth::Entra => {
            "give the identity Storage Blob Data Contributor on the container (or account)"
        }
        StorageAuth::Key => "the account key is wrong or was rotated: update --storage-account-key",
        StorageAuth::Sas => {
            "the SAS is wrong, expired, or lacks read/write/delete/list: renew --storage-sas"
        }
        StorageAuth::Options => {
            "the credentials in --storage-option are wrong, or the identity lacks Storage Blob Data Contributor"
        }
    };
    match result {
        Ok(Ok(Some(b))) if b.as_ref() == b"kvlake check" => report.add(
            "lake write/read/delete",
            &target,
            Status::Ok,
            format!("probe object {probe_path} written, read back and deleted ({auth:?} auth)"),
            None,
        ),
        Ok(Ok(_)) => report.add(
            "lake write/read/delete",
            &target,
            Status::Misconfigured,
            "the probe object read back differently".into(),
            None,
        ),
        Ok(Err(e)) => {
            let text = e.to_string();
            let (status, fix) = if let kvlake_hotpath::HotError::Lake(
                kvlake_hotpath::lake::LakeError::Storage { source, .. },
            ) = &e
            {
                match source.as_ref() {
                    object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. } => {
                        (Status::Denied, Some(fix_denied))
                    }
                    object_store::Error::NotFound { .. } => (
                        Status::Misconfigured,
                        Some(
                            "the container does not exist: create it (kvlake never creates containers)",
                        ),
                    ),
                    _ if text.contains("403")
                        || text.contains("401")
                        || text.contains("uthenticat")
                        || text.contains("Forbidden") =>
                    {
                        (Status::Denied, Some(fix_denied))
                    }
                    _ => (Status::Blocked, None),
                }
            } else {
                (Status::Misconfigured, None)
            };
            report.add("lake write/read/delete", &target, status, text, fix);
        }
        Err(_) => report.add(
            "lake write/read/delete",
            &target,
            Status::Blocked,
            "no answer in time".into(),
            None,
        ),
    }
}

fn stamp_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// The storage account of an Azure lake URL (or the account-name option).
fn storage_account(u: &url::Url, s: &HotSettings) -> Option<String> {
    if let Some(a) = s
        .storage_options
        .iter()
        .find(|(k, _)| k.to_ascii_lowercase().ends_with("account_name"))
        .map(|(_, v)| v.clone())
    {
        return Some(a);
    }
    let host = u.host_str()?;
    host.split('.')
        .next()
        .filter(|_| host.contains(".core."))
        .map(str::to_string)
}
