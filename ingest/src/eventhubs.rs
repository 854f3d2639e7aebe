//! Event Hubs' Kafka endpoint: what a connection string says, and the client settings
//! Microsoft recommends for it.

use std::collections::BTreeMap;

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
