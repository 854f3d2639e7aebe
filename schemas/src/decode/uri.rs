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

/// The first `/`, `?` or `#` from `i` on, or the end: eight bytes at a time in a `u64`
/// (SWAR), whose mask's lowest bit is the first such byte, then byte by byte at the end.
/// Portable code: no SIMD intrinsics, no feature detection.
fn next_cut(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let m = cut_mask(u64::from_le_bytes(*chunk));
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && !matches!(b[i], b'/' | b'?' | b'#') {
        i += 1;
    }
    i
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// A mask of the bytes of `w` (little-endian lanes) that are `/`, `?` or `#`: zero when
/// there is none, and its lowest set bit always marks the first one (a borrow only
/// carries upwards from a byte that matched, so lanes above the first may be marked
/// wrongly, never one below).
#[inline]
fn cut_mask(w: u64) -> u64 {
    let zero = |x: u64| x.wrapping_sub(ONES) & !x;
    let slash = zero(w ^ (ONES * u64::from(b'/')));
    let query = zero(w ^ (ONES * u64::from(b'?')));
    let hash = zero(w ^ (ONES * u64::from(b'#')));
    (slash | query | hash) & HIGH
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

    #[test]
    fn the_first_cut_is_found_in_any_lane() {
        for len in 0..40 {
            for at in 0..=len {
                for cut in [b'/', b'?', b'#'] {
                    for fill in [b'a', 0x80, 0xff, b'.', 0x2e, 0x2f - 1, 0x2f + 1] {
                        let mut b = vec![fill; len];
                        if at < len {
                            b[at] = cut;
                            // Whatever follows the first cut.
                            for (j, x) in b.iter_mut().enumerate().skip(at + 1) {
                                *x = [b'/', 0u8, b'?', 0xff][j % 4];
                            }
                        }
                        assert_eq!(super::next_cut(&b, 0), at, "{b:?}");
                    }
                }
            }
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
