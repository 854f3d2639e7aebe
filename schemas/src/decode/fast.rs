//! The envelope fast path: one pass over a `{"records":[...]}` message straight into rows,
//! with the same rules as the serde path (the same [`SectionSeed`] methods, key by key).
//!
//! Strings without escapes, nested objects (`properties`, `secretProperties`, ...) and
//! numbers are borrowed from the message as they are; nothing is re-serialised. Anything
//! unusual (another envelope key, an empty array, a number where an object belongs, a lone
//! surrogate, text that is not JSON) gives up, and the message takes the general path,
//! which then decides every row and every dead letter as it always has.

use std::borrow::Cow;

use super::scan::{GiveUp, Res, Scanner};
use super::{
    Decoder, Flex, Row, Section, SectionSeed, Slot, Spare, escaped_str, flex_text, json_plain,
    section_path,
};
use crate::decode::shape::{Evidence, Shape, top_slot};

/// A record of an envelope, read but not yet appended.
// Rows are staged for one message only; boxing would cost an allocation per record.
#[allow(clippy::large_enum_variant)]
pub(super) enum Staged<'a> {
    /// An object: its row and its text.
    Record(Row<'a>, &'a str),
    /// Anything else: its text.
    NotAnObject(&'a str),
}

/// Reads a whole envelope into `out`, one entry per record, or gives up.
pub(super) fn envelope<'a>(
    text: &'a str,
    allow: u8,
    out: &mut Vec<Staged<'a>>,
    spare: &mut Spare,
    keys: &mut KeyMemo,
) -> Res<()> {
    keys.allow(allow);
    let mut s = Scanner::new(text);
    if s.peek()? != b'{' {
        return Err(GiveUp);
    }
    s.open()?;
    if s.key()? != ("records", false) {
        return Err(GiveUp);
    }
    if s.peek()? != b'[' {
        return Err(GiveUp);
    }
    s.open()?;
    if s.close_if(b']')? {
        return Err(GiveUp);
    }
    loop {
        if s.peek()? == b'{' {
            let start = s.pos();
            // Filled where it is staged: built aside and pushed, a row is copied once more.
            out.push(Staged::Record(Decoder::new_row(spare), ""));
            if let Some(Staged::Record(row, raw)) = out.last_mut() {
                object(
                    &mut s,
                    SectionSeed {
                        row,
                        section: Section::Top,
                        path: Cow::Borrowed(""),
                        claim_path: String::new(),
                        allow,
                        depth: 0,
                    },
                    keys,
                )?;
                *raw = s.slice(start, s.pos())?;
            }
        } else {
            out.push(Staged::NotAnObject(s.value()?));
        }
        if !s.next_or_close(b']')? {
            break;
        }
    }
    // Only one key: another one (even a second `records`) is left to the general path.
    if s.next_or_close(b'}')? || !s.at_end() {
        return Err(GiveUp);
    }
    Ok(())
}

/// A key, borrowed when it holds no escapes.
fn key<'a>(s: &mut Scanner<'a>) -> Res<Cow<'a, str>> {
    let (k, escaped) = s.string()?;
    let k = if escaped {
        Cow::Owned(serde_json::from_str::<String>(s.quoted(k)?).map_err(|_| GiveUp)?)
    } else {
        Cow::Borrowed(k)
    };
    s.eat(b':')?;
    Ok(k)
}

/// A value as [`super::flex`] reads it.
// Inlined: returned through memory, the value costs a store-forwarding stall per field.
#[inline(always)]
fn flex<'a>(s: &mut Scanner<'a>) -> Res<Flex<'a>> {
    if s.peek()? == b'"' {
        let (inner, escaped) = s.string()?;
        return Ok(if escaped {
            escaped_str(s.quoted(inner)?)
        } else {
            Flex::Str(Cow::Borrowed(inner))
        });
    }
    Ok(flex_text(s.value()?))
}

/// Keys already seen, with what each feeds, and which key followed each: records of one
/// stream name their keys in nearly the same order, so the next key is most often the one
/// that followed the previous key last time, and is then matched byte for byte instead of
/// scanned and looked up. A key that was not expected is scanned, then found here by a
/// hash of its text (its slot is not looked up again).
#[derive(Debug)]
pub(super) struct KeyMemo {
    /// The shapes the slots were looked up for.
    allow: u8,
    /// Per kind of object ([`memo_kind`]), [`MEMO_SLOTS`] entries by hash.
    entries: Vec<Option<KeyEntry>>,
    /// Per kind of object, the entries of the first key last time and the time before.
    first: [[Option<u16>; 2]; 4],
    /// Per kind of object, the entry of each key by its place in the last object of that
    /// kind: tried first, since finding it needs no entry read before (the successors of
    /// the previous key are in its entry, a dependent load from a table that the message
    /// and the builders keep pushing out of the cache).
    seq: [Vec<u16>; 4],
}

#[derive(Debug)]
struct KeyEntry {
    key: Box<str>,
    slot: Slot,
    /// What the key says about the shape (top-level keys only).
    ev: Evidence,
    /// `ev` says something (most keys say nothing: no merge into the row's evidence).
    says: bool,
    /// The entry of the key that followed it last time.
    next: Option<u16>,
    /// The entry of the key that followed it the time before, when another: records
    /// alternate between two spellings or two sets of optional fields (`oid` or the claim
    /// URI, `xms_mirid` or none), so the second guess saves most of what the first misses.
    alt: Option<u16>,
}

/// Entries per kind of object.
const MEMO_SLOTS: usize = 256;
/// `MEMO_START + kind` stands for "before the first key" of that kind of object.
const MEMO_START: usize = 4 * MEMO_SLOTS;

impl Default for KeyMemo {
    fn default() -> Self {
        KeyMemo {
            allow: 0,
            entries: (0..MEMO_START).map(|_| None).collect(),
            first: [[None; 2]; 4],
            seq: Default::default(),
        }
    }
}

impl KeyMemo {
    fn allow(&mut self, allow: u8) {
        if self.allow != allow {
            *self = KeyMemo {
                allow,
                ..KeyMemo::default()
            };
        }
    }

    /// The entries expected after `prev` (an entry, or `MEMO_START + kind`): the one that
    /// followed it last time, and the one before.
    #[inline]
    fn next(&self, prev: usize) -> [Option<u16>; 2] {
        match prev.checked_sub(MEMO_START) {
            Some(kind) => self.first[kind],
            None => self.entries[prev]
                .as_ref()
                .map_or([None; 2], |e| [e.next, e.alt]),
        }
    }

    /// Remembers that entry `at` was the key at place `n` of an object of `kind`.
    #[inline]
    fn placed(&mut self, kind: usize, n: usize, at: usize) {
        let seq = &mut self.seq[kind];
        if n < seq.len() {
            seq[n] = at as u16;
        } else if n == seq.len() {
            seq.push(at as u16);
        }
    }

    /// Remembers that entry `at` followed `prev`.
    fn followed(&mut self, prev: usize, at: usize) {
        let at = Some(at as u16);
        let [next, alt] = match prev.checked_sub(MEMO_START) {
            Some(kind) => {
                let [next, alt] = &mut self.first[kind];
                [next, alt]
            }
            None => match &mut self.entries[prev] {
                Some(e) => [&mut e.next, &mut e.alt],
                None => return,
            },
        };
        if *next != at {
            *alt = std::mem::replace(next, at);
        }
    }

    /// The key of entry `i`, if it is the string at the cursor: taken, with its slot, what
    /// it says about the shape (when anything) and `i`.
    #[inline]
    fn try_entry<'a>(
        &self,
        s: &mut Scanner<'a>,
        i: u16,
    ) -> Option<(&'a str, Slot, Option<Evidence>, usize)> {
        let i = usize::from(i);
        let e = self.entries[i].as_ref()?;
        Some((s.string_is(&e.key)?, e.slot, e.says.then_some(e.ev), i))
    }

    /// Where `key` is in `kind`'s table (a hash of the whole key, then up to
    /// [`MEMO_PROBES`] entries on), or where it goes: its own entry, a free one, or the
    /// last probed (a key that collides with more replaces it).
    fn find(&self, kind: usize, key: &str) -> (usize, bool) {
        let base = kind * MEMO_SLOTS;
        let mut at = base + key_hash(key.as_bytes()) % MEMO_SLOTS;
        for _ in 0..MEMO_PROBES {
            match &self.entries[at] {
                Some(e) if *e.key == *key => return (at, true),
                Some(_) => at = base + (at + 1 - base) % MEMO_SLOTS,
                None => return (at, false),
            }
        }
        (at, false)
    }
}

/// Entries looked at for a key before one is replaced.
const MEMO_PROBES: usize = 4;

/// A hash of a key from its length and its first and last eight bytes (keys that share
/// those only cost a probe more; the text decides): the long claim URIs are not read
/// byte by byte.
#[inline]
fn key_hash(b: &[u8]) -> usize {
    let word = |w: &[u8]| {
        let mut x = [0u8; 8];
        x[..w.len()].copy_from_slice(w);
        u64::from_le_bytes(x)
    };
    let n = b.len();
    let (head, tail) = if n <= 8 {
        (word(b), 0)
    } else {
        (word(&b[..8]), word(&b[n - 8..]))
    };
    let h = (head ^ tail.rotate_left(29) ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 40) as usize
}

/// Which memo an object's keys go to: the kinds of object whose slots depend on the key
/// alone (and the shapes allowed). Claims nested under a namespace depend on their path.
fn memo_kind(seed: &SectionSeed<'_, '_>) -> Option<usize> {
    match seed.section {
        Section::Top => Some(0),
        Section::Identity => Some(1),
        Section::Claims if seed.claim_path.is_empty() => Some(2),
        Section::Claims => None,
        Section::Properties => Some(3),
    }
}

/// Whether merging `ev` into a row's evidence changes anything.
fn says_something(ev: &Evidence) -> bool {
    let mut row = Evidence::default();
    row.merge(ev);
    row != Evidence::default()
}

/// [`SectionSeed::slot`], with what a top-level key says about the shape apart.
fn slot_of(seed: &mut SectionSeed<'_, '_>, key: &str) -> (Slot, Evidence) {
    let mut ev = Evidence::default();
    let slot = match seed.section {
        Section::Top => top_slot(key, seed.allow, &mut ev),
        _ => seed.slot(key),
    };
    (slot, ev)
}

/// An object at the cursor, into `seed`'s row: what `SectionSeed::visit_map` does.
fn object<'a>(s: &mut Scanner<'a>, mut seed: SectionSeed<'_, 'a>, keys: &mut KeyMemo) -> Res<()> {
    s.open()?;
    if s.close_if(b'}')? {
        return Ok(());
    }
    let kind = memo_kind(&seed);
    // The entry of the previous key, or the start of this kind of object.
    let mut prev = kind.map(|k| MEMO_START + k);
    // The place of the key in this object.
    let mut n = 0;
    loop {
        let placed = kind.and_then(|k| keys.seq[k].get(n).copied());
        // The key at this place last time; else the successors of the previous key (then
        // remembered as its first successor).
        let hit = match placed.and_then(|i| keys.try_entry(s, i)) {
            Some(hit) => Some(hit),
            None => {
                let expected = prev.map_or([None; 2], |p| keys.next(p));
                let hit = expected
                    .into_iter()
                    .flatten()
                    .filter(|&i| Some(i) != placed)
                    .find_map(|i| keys.try_entry(s, i));
                if let (Some((.., at)), Some(p)) = (hit, prev)
                    && expected[0] != Some(at as u16)
                {
                    keys.followed(p, at);
                }
                hit
            }
        };
        let (key, slot, ev, at) = match hit {
            Some((key, slot, ev, at)) => {
                s.eat(b':')?;
                (Cow::Borrowed(key), slot, ev, Some(at))
            }
            None => {
                let key = key(s)?;
                match (kind, &key) {
                    (Some(k), Cow::Borrowed(text)) => {
                        let (at, known) = keys.find(k, text);
                        let (slot, ev) = match &keys.entries[at] {
                            Some(e) if known => (e.slot, e.ev),
                            _ => {
                                let (slot, ev) = slot_of(&mut seed, text);
                                keys.entries[at] = Some(KeyEntry {
                                    key: (*text).into(),
                                    slot,
                                    ev,
                                    says: says_something(&ev),
                                    next: None,
                                    alt: None,
                                });
                                (slot, ev)
                            }
                        };
                        if let Some(p) = prev {
                            keys.followed(p, at);
                        }
                        (key, slot, Some(ev), Some(at))
                    }
                    _ => {
                        let (slot, ev) = slot_of(&mut seed, &key);
                        (key, slot, Some(ev), None)
                    }
                }
            }
        };
        if let Some(ev) = ev {
            seed.row.ev.merge(&ev);
        }
        if let (Some(k), Some(at)) = (kind, at)
            && placed != Some(at as u16)
        {
            keys.placed(k, n, at);
        }
        n += 1;
        prev = at;
        match slot {
            slot @ (Slot::Identity | Slot::Properties) => {
                let section = if slot == Slot::Identity {
                    Section::Identity
                } else {
                    Section::Properties
                };
                let path = section_path(&seed.path, &key, false);
                section_value(s, seed.child(section, path, String::new()), keys)?;
            }
            Slot::Claims => {
                let path = section_path(&seed.path, &key, true);
                section_value(s, seed.child(Section::Claims, path, String::new()), keys)?;
            }
            Slot::NestedClaims => {
                let claim_path = if seed.claim_path.is_empty() {
                    key.to_string()
                } else {
                    format!("{}.{key}", seed.claim_path)
                };
                if s.peek()? == b'{' {
                    let path = Cow::Owned(format!("{}{key}.", seed.path));
                    object(s, seed.child(Section::Claims, path, claim_path), keys)?;
                } else {
                    let v = flex(s)?;
                    seed.row.push_extra(&seed.path, &key, &v);
                }
            }
            Slot::Col(col) => {
                // A plain string (nearly every value) is written straight into its column:
                // built as a `Flex` and moved, it costs a store-forwarding stall.
                if s.peek()? == b'"' {
                    let (inner, escaped) = s.string()?;
                    if escaped {
                        let v = escaped_str(s.quoted(inner)?);
                        seed.row.set(col, v, &seed.path, key);
                    } else {
                        seed.row.set_str(col, inner, &seed.path, key);
                    }
                } else {
                    let v = flex_text(s.value()?);
                    seed.row.set(col, v, &seed.path, key);
                }
            }
            Slot::TimeGenerated => seed.row.time_generated = Some(flex(s)?),
            Slot::LaResourceId => seed.row.la_resource_id = Some(flex(s)?),
            Slot::LaType => {
                let v = flex(s)?;
                if let Flex::Str(t) = &v {
                    seed.row.ev.la_type = [Shape::AzureDiagnostics, Shape::AzkvAuditLogs]
                        .into_iter()
                        .find(|shape| shape.name().eq_ignore_ascii_case(t));
                }
                seed.row.push_extra(&seed.path, &key, &v);
            }
            Slot::Flat(col, start, end) => {
                let v = flex(s)?;
                seed.row.flat.push((col, key, (start, end), v));
            }
            Slot::Unknown => {
                // Nearly every record has one (`type`): its text goes to `extra` as it
                // stands when nothing in it needs escaping again, which is what writing the
                // value back as JSON would give.
                let plain_name = matches!(key, Cow::Borrowed(_)) && json_plain(&seed.path);
                if s.peek()? == b'"' {
                    let (inner, escaped) = s.string()?;
                    if plain_name && !escaped {
                        let raw = s.quoted(inner)?;
                        seed.row
                            .push_extra_raw(&seed.path, &key, raw, inner.is_empty());
                    } else {
                        let v = if escaped {
                            escaped_str(s.quoted(inner)?)
                        } else {
                            Flex::Str(Cow::Borrowed(inner))
                        };
                        seed.row.push_extra(&seed.path, &key, &v);
                    }
                } else {
                    let raw = s.value()?;
                    if plain_name {
                        seed.row
                            .push_extra_raw(&seed.path, &key, raw, raw.starts_with('n'));
                    } else {
                        seed.row.push_extra(&seed.path, &key, &flex_text(raw));
                    }
                }
            }
        }
        if !s.next_or_close(b'}')? {
            return Ok(());
        }
    }
}

/// The value of `identity`, `properties` or `claim`: what `deserialize_any` on a
/// [`SectionSeed`] does, except numbers (serde_json may refuse one as out of range).
fn section_value<'a>(
    s: &mut Scanner<'a>,
    seed: SectionSeed<'_, 'a>,
    keys: &mut KeyMemo,
) -> Res<()> {
    match s.peek()? {
        b'{' => object(s, seed, keys),
        b'"' => {
            let (inner, escaped) = s.string()?;
            if escaped {
                let text = serde_json::from_str::<String>(s.quoted(inner)?).map_err(|_| GiveUp)?;
                seed.text_section(&text);
            } else {
                seed.text_section(inner);
            }
            Ok(())
        }
        b'n' => s.value().map(drop),
        b't' | b'f' | b'[' => {
            s.value()?;
            seed.shape_error();
            Ok(())
        }
        _ => Err(GiveUp),
    }
}
