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
    Decoder, Flex, Row, Section, SectionSeed, Slot, Spare, escaped_str, flex_text, section_path,
};
use crate::decode::shape::Shape;

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
) -> Res<()> {
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
            let mut row = Decoder::new_row(spare);
            object(
                &mut s,
                SectionSeed {
                    row: &mut row,
                    section: Section::Top,
                    path: Cow::Borrowed(""),
                    claim_path: String::new(),
                    allow,
                    depth: 0,
                },
            )?;
            out.push(Staged::Record(row, s.slice(start, s.pos())?));
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

/// An object at the cursor, into `seed`'s row: what `SectionSeed::visit_map` does.
fn object<'a>(s: &mut Scanner<'a>, mut seed: SectionSeed<'_, 'a>) -> Res<()> {
    s.open()?;
    if s.close_if(b'}')? {
        return Ok(());
    }
    loop {
        let key = key(s)?;
        match seed.slot(&key) {
            slot @ (Slot::Identity | Slot::Properties) => {
                let section = if slot == Slot::Identity {
                    Section::Identity
                } else {
                    Section::Properties
                };
                let path = section_path(&seed.path, &key, false);
                section_value(s, seed.child(section, path, String::new()))?;
            }
            Slot::Claims => {
                let path = section_path(&seed.path, &key, true);
                section_value(s, seed.child(Section::Claims, path, String::new()))?;
            }
            Slot::NestedClaims => {
                let claim_path = if seed.claim_path.is_empty() {
                    key.to_string()
                } else {
                    format!("{}.{key}", seed.claim_path)
                };
                if s.peek()? == b'{' {
                    let path = Cow::Owned(format!("{}{key}.", seed.path));
                    object(s, seed.child(Section::Claims, path, claim_path))?;
                } else {
                    let v = flex(s)?;
                    seed.row.push_extra(&seed.path, &key, &v);
                }
            }
            Slot::Col(col) => {
                let v = flex(s)?;
                seed.row.set(col, v, &seed.path, key);
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
                let v = flex(s)?;
                seed.row.push_extra(&seed.path, &key, &v);
            }
        }
        if !s.next_or_close(b'}')? {
            return Ok(());
        }
    }
}

/// The value of `identity`, `properties` or `claim`: what `deserialize_any` on a
/// [`SectionSeed`] does, except numbers (serde_json may refuse one as out of range).
fn section_value<'a>(s: &mut Scanner<'a>, seed: SectionSeed<'_, 'a>) -> Res<()> {
    match s.peek()? {
        b'{' => object(s, seed),
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
