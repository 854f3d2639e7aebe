//! [`crate::resource::object_uri_parts`] in one pass over the bytes, for the decoder: the
//! same parts of the same URI (tests compare the two on arbitrary text), without the
//! general string searchers, which cost more than the rest of a record's derived columns.

use crate::resource::ObjectRef;

/// The vault as the host spells it, and the object the URI names: what
/// [`crate::resource::object_uri_parts`] returns.
pub(super) fn object_uri(uri: &str) -> (Option<&str>, ObjectRef<'_>) {
    let b = uri.as_bytes();
    // After the first `://`, if any.
    let mut start = 0;
    if let Some(i) = b.windows(3).position(|w| w == b"://") {
        start = i + 3;
    }
    // The host runs to the first `/`, `?` or `#`; every cut below is at an ASCII byte,
    // so at a char boundary. Nothing after `?` or `#` is read.
    let mut i = next_cut(b, start);
    let host = b[start..i]
        .iter()
        .position(|&ch| ch == b'.')
        .filter(|&p| p > 0)
        .map(|p| &uri[start..start + p]);
    let mut out = ObjectRef::default();
    // Up to three non-empty `/`-separated segments: kind, name, version.
    let mut segs: [Option<&str>; 3] = [None; 3];
    let mut found = 0;
    while found < 3 && i < b.len() && b[i] == b'/' {
        let from = i + 1;
        i = next_cut(b, from);
        if i > from {
            segs[found] = Some(&uri[from..i]);
            found += 1;
        }
    }
    out.kind = match segs[0].map(str::as_bytes) {
        Some(s) => match s.len() {
            4 if s.eq_ignore_ascii_case(b"keys") => Some("key"),
            7 if s.eq_ignore_ascii_case(b"secrets") => Some("secret"),
            11 if s.eq_ignore_ascii_case(b"deletedkeys") => Some("key"),
            12 if s.eq_ignore_ascii_case(b"certificates") => Some("certificate"),
            14 if s.eq_ignore_ascii_case(b"deletedsecrets") => Some("secret"),
            19 if s.eq_ignore_ascii_case(b"deletedcertificates") => Some("certificate"),
            _ => None,
        },
        None => None,
    };
    if out.kind.is_some() {
        (out.name, out.version) = (segs[1], segs[2]);
    }
    (host, out)
}

/// The first `/`, `?` or `#` from `i` on, or the end: sixteen bytes at a time while there
/// is none (a loop the compiler vectorises), then byte by byte.
fn next_cut(b: &[u8], mut i: usize) -> usize {
    let cut = |ch: u8| matches!(ch, b'/' | b'?' | b'#');
    while let Some(block) = b.get(i..).and_then(<[u8]>::first_chunk::<16>) {
        if block.iter().fold(false, |any, &ch| {
            any | (ch == b'/') | (ch == b'?') | (ch == b'#')
        }) {
            break;
        }
        i += 16;
    }
    while i < b.len() && !cut(b[i]) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::object_uri;
    use crate::resource::object_uri_parts;

    fn same(uri: &str) {
        let (h1, o1) = object_uri(uri);
        let (h2, o2) = object_uri_parts(uri);
        assert_eq!((h1, o1), (h2, o2), "{uri:?}");
    }

    #[test]
    fn the_same_parts_as_the_general_parser() {
        for uri in [
            "https://KV-1.vault.azure.net/secrets/db-password/5f2c?api-version=7.4",
            "https://kv-1.vault.azure.net/keys?api-version=7.4",
            "https://kv-1.vault.azure.net/deletedcertificates/c1",
            "https://kv-1.vault.azure.net/DeletedSecrets//n//v/x",
            "https://kv-1.vault.azure.net/",
            "https://kv-1/keys/k",
            "https://.vault/keys/k",
            "kv-1.vault.azure.net/keys/k/v",
            "a://b://c.d/keys/k",
            "https://h.x/keys/k#frag/1",
            "https://h.x?q=/keys/k",
            "://",
            ":/",
            "",
            "/keys/k",
            "https://kv-é.vault.azure.net/secrets/é/1",
            "https://h.x/certificate/c",
        ] {
            same(uri);
        }
    }

    proptest! {
        #[test]
        fn the_same_parts_on_any_text(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("https://"), Just("://"), Just(":"), Just("/"), Just("//"), Just("."),
                    Just("?"), Just("#"), Just("keys"), Just("Secrets"), Just("deletedkeys"),
                    Just("certificates"), Just("DELETEDSECRETS"), Just("deletedcertificates"),
                    Just("kv-1"), Just("é"), Just("v1"), Just("a"),
                ],
                0..12,
            )
        ) {
            same(&parts.concat());
        }
    }
}
