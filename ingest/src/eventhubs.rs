//! Event Hubs' Kafka endpoint: what a connection string says, and the client settings
//! Microsoft recommends for it.

use std::collections::BTreeMap;

use kvlake_hotpath::source::Refusal;

use crate::secret::Secret;

/// The parts of an Event Hubs connection string kvlake uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// `<namespace>.servicebus.windows.net`.
    pub host: String,
    /// `EntityPath`: the event hub, when the string is scoped to one.
    pub entity_path: Option<String>,
}

/// Reads `Endpoint=sb://<ns>.servicebus.windows.net/;SharedAccessKeyName=..;SharedAccessKey=..[;EntityPath=..]`.
/// Errors name what is missing, never the value.
pub fn parse_connection_string(cs: &Secret) -> Result<ConnectionString, String> {
    let mut endpoint = None;
    let mut entity = None;
    let mut has_key = false;
    for part in cs
        .expose()
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let Some((k, v)) = part.split_once('=') else {
            return Err("the Event Hubs connection string is not a list of Key=Value pairs separated by `;`".into());
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "endpoint" => endpoint = Some(v.trim().to_string()),
            "entitypath" => entity = Some(v.trim().to_string()),
            "sharedaccesskey" | "sharedaccesssignature" => has_key = true,
            _ => {}
        }
    }
    let endpoint = endpoint.ok_or(
        "the Event Hubs connection string has no Endpoint=sb://<namespace>.servicebus.windows.net/",
    )?;
    let host = endpoint
        .strip_prefix("sb://")
        .ok_or("the connection string's Endpoint must start with sb://")?
        .trim_end_matches('/')
        .to_string();
    if host.is_empty() {
        return Err("the connection string's Endpoint has no host".into());
    }
    if !has_key {
        return Err("the Event Hubs connection string has no SharedAccessKey (copy it from the namespace's or hub's Shared access policies)".into());
    }
    Ok(ConnectionString {
        host,
        entity_path: entity.filter(|e| !e.is_empty()),
    })
}

/// librdkafka settings for Event Hubs with a connection string: SASL_SSL + PLAIN with
/// user `$ConnectionString`, and Microsoft's recommended client settings.
pub fn connection_string_settings(cs: &Secret) -> BTreeMap<String, String> {
    let mut m = recommended_settings();
    m.insert("security.protocol".into(), "SASL_SSL".into());
    m.insert("sasl.mechanism".into(), "PLAIN".into());
    m.insert("sasl.username".into(), "$ConnectionString".into());
    m.insert("sasl.password".into(), cs.expose().to_string());
    m
}

/// Microsoft's recommended Kafka client settings for Event Hubs.
pub fn recommended_settings() -> BTreeMap<String, String> {
    [
        ("socket.keepalive.enable", "true"),
        ("metadata.max.age.ms", "180000"),
        ("session.timeout.ms", "30000"),
        ("request.timeout.ms", "60000"),
        ("max.poll.interval.ms", "300000"),
        // Event Hubs caps a message at 1 MB; fetches need no more per partition.
        ("max.partition.fetch.bytes", "1048576"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Whether a broker list points at Event Hubs.
pub fn is_event_hubs(brokers: &str) -> bool {
    brokers.split(',').any(|b| {
        b.contains(".servicebus.windows.net")
            || b.contains(".servicebus.chinacloudapi.cn")
            || b.contains(".servicebus.usgovcloudapi.net")
    })
}

/// The one line said when the Kafka endpoint refuses kvlake: the namespace (and the
/// brokers when they differ), what was refused with the broker's reason, and the fix.
/// `mechanism` is librdkafka's `sasl.mechanism` (`PLAIN`, `OAUTHBEARER`) or empty.
pub fn refusal_message(namespace: &str, brokers: &str, mechanism: &str, r: &Refusal) -> String {
    let (what, fix) = refusal_parts(namespace, brokers, mechanism, r);
    format!("{what}; fix: {fix}")
}

/// [`refusal_message`] in two parts: what happened, and the fix.
pub fn refusal_parts(
    namespace: &str,
    brokers: &str,
    mechanism: &str,
    r: &Refusal,
) -> (String, &'static str) {
    let at = if namespace == brokers || brokers.is_empty() {
        format!("Event Hubs namespace {namespace}")
    } else {
        format!("Event Hubs namespace {namespace} (at {brokers})")
    };
    let (what, reason) = match r {
        Refusal::Credentials(reason) => (
            match mechanism {
                "PLAIN" => "refused the connection string",
                "OAUTHBEARER" => "refused the Entra ID token",
                _ => "refused the credentials",
            },
            reason,
        ),
        Refusal::Closed(reason) => (
            "closed every connection before authentication (no Kafka endpoint)",
            reason,
        ),
    };
    let low = reason.to_ascii_lowercase();
    let fix = match (r, mechanism) {
        (Refusal::Closed(_), _) => {
            "the Basic tier has no Kafka endpoint: use a Standard (or higher) namespace; otherwise check --security-protocol (Event Hubs needs sasl_ssl on port 9093)"
        }
        (_, "PLAIN") => {
            "copy the connection string again from the namespace's or event hub's Shared access policies (a policy with Listen; a rotated key invalidates the old string)"
        }
        (_, "OAUTHBEARER") if low.contains("audience") => {
            "the token must be for https://<namespace>.servicebus.windows.net of the namespace in --brokers: fix --kafka-oauth-scope or leave it out"
        }
        (_, "OAUTHBEARER") if low.contains("expired") || low.contains("not valid yet") => {
            "the token's validity is off: check this machine's clock (NTP) and that the identity endpoint hands out fresh tokens"
        }
        (_, "OAUTHBEARER") => {
            "give the identity the Azure Event Hubs Data Receiver role on the event hub (or namespace), and check --credential / --client-id"
        }
        _ => "check --kafka-option sasl.* and the broker's SASL settings",
    };
    let reason = reason.replace(['\r', '\n'], " ");
    (format!("{at} {what}: {reason}"), fix)
}

/// The namespace a Kafka connection is for, for messages: the brokers' Event Hubs host,
/// else the connection string's, else the OAuth scope's, else the brokers as given.
pub fn namespace_of(
    brokers: &str,
    connection_string: Option<&Secret>,
    scope: Option<&str>,
) -> String {
    let host = |b: &str| {
        b.trim()
            .rsplit_once(':')
            .map_or(b.trim(), |(h, _)| h)
            .to_string()
    };
    if let Some(h) = brokers.split(',').map(host).find(|h| is_event_hubs(h)) {
        return h;
    }
    if let Some(cs) = connection_string.and_then(|c| parse_connection_string(c).ok()) {
        return cs.host;
    }
    if let Some(h) = scope
        .and_then(|s| s.strip_prefix("https://"))
        .map(|s| s.split('/').next().unwrap_or(s).to_string())
        .filter(|h| !h.is_empty())
    {
        return h;
    }
    brokers.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespace_and_hub() {
        let cs = Secret::new(
            "Endpoint=sb://ns1.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=k3y=;EntityPath=kv-audit",
        );
        let p = parse_connection_string(&cs).unwrap();
        assert_eq!(p.host, "ns1.servicebus.windows.net");
        assert_eq!(p.entity_path.as_deref(), Some("kv-audit"));
        let s = connection_string_settings(&cs);
        assert_eq!(s["sasl.username"], "$ConnectionString");
        assert_eq!(s["security.protocol"], "SASL_SSL");
        assert_eq!(s["metadata.max.age.ms"], "180000");
    }

    #[test]
    fn refusals_name_the_namespace_and_the_fix_on_one_line() {
        let cs = Secret::new(
            "Endpoint=sb://ns1.servicebus.windows.net/;SharedAccessKeyName=l;SharedAccessKey=k=",
        );
        let ns = namespace_of("127.0.0.1:9093", Some(&cs), None);
        assert_eq!(ns, "ns1.servicebus.windows.net");
        let m = refusal_message(
            &ns,
            "127.0.0.1:9093",
            "PLAIN",
            &Refusal::Credentials("SASL authentication error: bad\nkey".into()),
        );
        assert!(
            m.contains("ns1.servicebus.windows.net")
                && m.contains("fix: copy the connection string"),
            "{m}"
        );
        assert!(!m.contains('\n'), "{m}");
        assert_eq!(
            namespace_of(
                "x:1",
                None,
                Some("https://ns2.servicebus.windows.net/.default")
            ),
            "ns2.servicebus.windows.net"
        );
        let m = refusal_message(
            "ns",
            "ns",
            "OAUTHBEARER",
            &Refusal::Credentials("token audience wrong".into()),
        );
        assert!(m.contains("--kafka-oauth-scope"), "{m}");
        let m = refusal_message("ns", "ns", "PLAIN", &Refusal::Closed("Disconnected".into()));
        assert!(m.contains("Basic tier"), "{m}");
    }

    #[test]
    fn errors_never_quote_the_value() {
        for bad in [
            "garbage-with-k3y",
            "Endpoint=https://x/;SharedAccessKey=k3y",
            "Endpoint=sb://x/;SharedAccessKeyName=a",
        ] {
            let e = parse_connection_string(&Secret::new(bad)).unwrap_err();
            assert!(!e.contains("k3y") && !e.contains("garbage"), "{e}");
        }
    }
}
