//! What kvlake derives from a record's identifiers: the vault, subscription and resource
//! group from `resourceId`, and the object a request touched from its URI.

/// Parts of a Key Vault ARM resource id, lower-cased.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct VaultResource {
    /// Subscription id.
    pub subscription_id: Option<String>,
    /// Resource group name.
    pub resource_group: Option<String>,
    /// Vault (or managed HSM) name.
    pub vault_name: Option<String>,
}

/// Splits `/SUBSCRIPTIONS/<id>/RESOURCEGROUPS/<rg>/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/<name>`.
pub fn parse_resource_id(id: &str) -> VaultResource {
    let [subscription_id, resource_group, vault_name] =
        resource_id_parts(id).map(|p| p.map(str::to_ascii_lowercase));
    VaultResource {
        subscription_id,
        resource_group,
        vault_name,
    }
}

/// [`parse_resource_id`] without lower-casing or copying: subscription, resource group, vault.
pub fn resource_id_parts(id: &str) -> [Option<&str>; 3] {
    let mut out = [None; 3];
    let mut parts = id.split('/').filter(|p| !p.is_empty());
    while let Some(p) = parts.next() {
        let slot = if p.eq_ignore_ascii_case("subscriptions") {
            0
        } else if p.eq_ignore_ascii_case("resourcegroups") {
            1
        } else if p.eq_ignore_ascii_case("vaults") || p.eq_ignore_ascii_case("managedhsms") {
            2
        } else {
            continue;
        };
        out[slot] = parts.next();
    }
    out
}

/// The object a request touched, from `https://<vault>.vault.azure.net/<kind>s/<name>[/<version>]`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ObjectRef<'a> {
    /// Vault name from the host (lower case).
    pub vault_from_host: Option<String>,
    /// secret, key or certificate.
    pub kind: Option<&'static str>,
    /// Object name.
    pub name: Option<&'a str>,
    /// Object version.
    pub version: Option<&'a str>,
}

/// Parses an object URI; anything it does not recognise gives empty parts, never an error.
pub fn parse_object_uri(uri: &str) -> ObjectRef<'_> {
    let (host, o) = object_uri_parts(uri);
    ObjectRef {
        vault_from_host: host.map(str::to_ascii_lowercase),
        ..o
    }
}

/// [`parse_object_uri`] without copying: the vault as the host spells it, and the rest
/// (whose `vault_from_host` is `None`).
pub fn object_uri_parts(uri: &str) -> (Option<&str>, ObjectRef<'_>) {
    let mut out = ObjectRef::default();
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = host
        .split_once('.')
        .map(|(first, _)| first)
        .filter(|first| !first.is_empty());
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    let is = |seg: &str, names: [&str; 2]| names.iter().any(|n| seg.eq_ignore_ascii_case(n));
    out.kind = match segs.next() {
        Some(s) if is(s, ["secrets", "deletedsecrets"]) => Some("secret"),
        Some(s) if is(s, ["keys", "deletedkeys"]) => Some("key"),
        Some(s) if is(s, ["certificates", "deletedcertificates"]) => Some("certificate"),
        _ => return (host, out),
    };
    out.name = segs.next();
    out.version = segs.next();
    (host, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_id_parts() {
        let r = parse_resource_id(
            "/SUBSCRIPTIONS/AB-12/RESOURCEGROUPS/RG-SEC/PROVIDERS/MICROSOFT.KEYVAULT/VAULTS/KV-PROD-01",
        );
        assert_eq!(r.subscription_id.as_deref(), Some("ab-12"));
        assert_eq!(r.resource_group.as_deref(), Some("rg-sec"));
        assert_eq!(r.vault_name.as_deref(), Some("kv-prod-01"));
        assert_eq!(parse_resource_id("garbage"), VaultResource::default());
        assert_eq!(parse_resource_id("/subscriptions").subscription_id, None);
    }

    #[test]
    fn object_uris() {
        let o = parse_object_uri(
            "https://KV-1.vault.azure.net/secrets/db-password/5f2c?api-version=7.4",
        );
        assert_eq!(
            (o.vault_from_host.as_deref(), o.kind, o.name, o.version),
            (
                Some("kv-1"),
                Some("secret"),
                Some("db-password"),
                Some("5f2c")
            )
        );
        let o = parse_object_uri("https://kv-1.vault.azure.net/keys?api-version=7.4");
        assert_eq!((o.kind, o.name), (Some("key"), None));
        let o = parse_object_uri("https://kv-1.vault.azure.net/deletedcertificates/c1");
        assert_eq!((o.kind, o.name), (Some("certificate"), Some("c1")));
        assert_eq!(parse_object_uri("https://kv-1.vault.azure.net/").kind, None);
        assert_eq!(parse_object_uri("").kind, None);
    }
}
