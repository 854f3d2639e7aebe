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
    let mut out = VaultResource::default();
    let mut parts = id.split('/').filter(|p| !p.is_empty());
    while let Some(p) = parts.next() {
        let slot = if p.eq_ignore_ascii_case("subscriptions") {
            &mut out.subscription_id
        } else if p.eq_ignore_ascii_case("resourcegroups") {
            &mut out.resource_group
        } else if p.eq_ignore_ascii_case("vaults") || p.eq_ignore_ascii_case("managedhsms") {
            &mut out.vault_name
        } else {
            continue;
        };
        *slot = parts.next().map(str::to_ascii_lowercase);
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
    let mut out = ObjectRef::default();
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    if let Some((first, _)) = host.split_once('.')
        && !first.is_empty()
    {
        out.vault_from_host = Some(first.to_ascii_lowercase());
    }
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    out.kind = match segs.next().map(str::to_ascii_lowercase).as_deref() {
        Some("secrets" | "deletedsecrets") => Some("secret"),
        Some("keys" | "deletedkeys") => Some("key"),
        Some("certificates" | "deletedcertificates") => Some("certificate"),
        _ => return ObjectRef { kind: None, ..out },
    };
    out.name = segs.next();
    out.version = segs.next();
    out
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
