//! A validating JSON scanner over one message's text, for the envelope fast path.
//! It is stricter than serde_json, never looser: what it does not take, it gives up on.
//!
//! Portable code only (no SIMD intrinsics, no `unsafe`): strings are searched eight bytes
//! at a time in a `u64` (SWAR) for `"`, `\` and control characters, which any x86-64
//! (or other) CPU runs at full speed without feature detection.

/// The scanner gave up: the text is not JSON, or holds something the fast path leaves to
/// serde_json (a lone surrogate, a number in a section, deep nesting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GiveUp;

/// A scanner result.
pub(crate) type Res<T> = Result<T, GiveUp>;

/// Deepest nesting the scanner follows; serde_json's limit is 128.
const MAX_DEPTH: u32 = 100;

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// A mask of the bytes of `w` (little-endian lanes) that are `"`, `\` or below 0x20:
/// zero when there is none, and its lowest set bit always marks the first one. (A borrow
/// may mark a lane above a true match too, never one below it, so only the lowest bit is
/// exact.)
#[inline]
fn special_mask(w: u64) -> u64 {
    let quote = w ^ (ONES * u64::from(b'"'));
    let backslash = w ^ (ONES * u64::from(b'\\'));
    let zero_q = quote.wrapping_sub(ONES) & !quote;
    let zero_b = backslash.wrapping_sub(ONES) & !backslash;
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    (zero_q | zero_b | control) & HIGH
}

/// Whether any byte of `block` is `"`, `\\` or below 0x20. Written byte by byte without
/// an early exit so that the compiler vectorises it: portable code, a few SSE2
/// instructions on x86-64.
#[inline]
fn any_special(block: &[u8; 16]) -> bool {
    block.iter().fold(false, |any, &b| {
        any | (b == b'"') | (b == b'\\') | (b < 0x20)
    })
}

/// Whether any byte of `w` is `"`, `\` or below 0x20 (exact, no false positives).
#[cfg(test)]
fn special(w: u64) -> bool {
    special_mask(w) != 0
}

/// `a == b` for slices of the same length, eight bytes at a time and inline: keys are
/// short, and a call to `memcmp` costs more than comparing them.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let (mut a, mut b) = (a, b);
    while let (Some((x, ra)), Some((y, rb))) =
        (a.split_first_chunk::<8>(), b.split_first_chunk::<8>())
    {
        if x != y {
            return false;
        }
        (a, b) = (ra, rb);
    }
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

fn hex4(b: &[u8], at: usize) -> Res<u32> {
    let digits = b.get(at..at + 4).ok_or(GiveUp)?;
    let mut v = 0u32;
    for &d in digits {
        let n = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(GiveUp),
        };
        v = v * 16 + u32::from(n);
    }
    Ok(v)
}

/// A cursor over JSON text.
pub(crate) struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    depth: u32,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Scanner {
            text,
            pos: 0,
            depth: 0,
        }
    }

    /// Byte position of the cursor.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The text between two positions (both at ASCII delimiters, so char boundaries).
    pub(crate) fn slice(&self, from: usize, to: usize) -> Res<&'a str> {
        self.text.get(from..to).ok_or(GiveUp)
    }

    fn skip_ws(&mut self) {
        let b = self.text.as_bytes();
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = b.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte that is not whitespace, without taking it.
    #[inline]
    pub(crate) fn peek(&mut self) -> Res<u8> {
        self.skip_ws();
        self.text.as_bytes().get(self.pos).copied().ok_or(GiveUp)
    }

    /// Takes `byte` after whitespace.
    #[inline]
    pub(crate) fn eat(&mut self, byte: u8) -> Res<()> {
        if self.peek()? == byte {
            self.pos += 1;
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// Whether only whitespace is left.
    pub(crate) fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.pos == self.text.len()
    }

    /// Takes an opening `{` or `[` (already peeked), counting depth.
    pub(crate) fn open(&mut self) -> Res<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(GiveUp);
        }
        self.pos += 1;
        Ok(())
    }

    /// Takes `,` (true: more members follow) or `close` (false: done), after whitespace.
    #[inline]
    pub(crate) fn next_or_close(&mut self, close: u8) -> Res<bool> {
        match self.peek()? {
            b',' => {
                self.pos += 1;
                Ok(true)
            }
            b if b == close => {
                self.pos += 1;
                self.depth -= 1;
                Ok(false)
            }
            _ => Err(GiveUp),
        }
    }

    /// Takes `close` right after an opening bracket if it is there (an empty object or array).
    pub(crate) fn close_if(&mut self, close: u8) -> Res<bool> {
        if self.peek()? == close {
            self.pos += 1;
            self.depth -= 1;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    /// A string at the cursor (after whitespace): its text between the quotes, raw,
    /// and whether it holds escapes.
    #[inline]
    pub(crate) fn string(&mut self) -> Res<(&'a str, bool)> {
        if self.peek()? != b'"' {
            return Err(GiveUp);
        }
        let b = self.text.as_bytes();
        let start = self.pos + 1;
        let mut i = start;
        let mut escaped = false;
        loop {
            // Sixteen bytes at a time while none is special (the compiler makes the block
            // test a few SSE2 instructions, which every x86-64 has), then eight at a time up
            // to the first special byte, which the lowest bit of the mask points at: the
            // byte loop below then starts on it.
            while let Some(block) = b.get(i..).and_then(<[u8]>::first_chunk::<16>) {
                if any_special(block) {
                    break;
                }
                i += 16;
            }
            while let Some(chunk) = b.get(i..).and_then(<[u8]>::first_chunk::<8>) {
                let m = special_mask(u64::from_le_bytes(*chunk));
                if m != 0 {
                    i += (m.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            match b.get(i) {
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok((self.slice(start, i)?, escaped));
                }
                Some(b'\\') => {
                    escaped = true;
                    i = escape_end(b, i + 1)?;
                }
                Some(0..=0x1f) | None => return Err(GiveUp),
                Some(_) => i += 1,
            }
        }
    }

    /// Takes the string `"expected"` at the cursor (after whitespace) if it is there, byte
    /// for byte, and returns its text; `expected` holds no escapes, so neither does the
    /// text, and it is the string [`Scanner::string`] would have read.
    #[inline]
    pub(crate) fn string_is(&mut self, expected: &str) -> Option<&'a str> {
        self.skip_ws();
        let b = self.text.as_bytes();
        let start = self.pos + 1;
        let end = start + expected.len();
        if b.get(self.pos) == Some(&b'"')
            && b.get(end) == Some(&b'"')
            && b.get(start..end)
                .is_some_and(|t| same_bytes(t, expected.as_bytes()))
        {
            let text = self.text.get(start..end)?;
            self.pos = end + 1;
            Some(text)
        } else {
            None
        }
    }

    /// A key and its `:`; the key's raw text between the quotes and whether it holds escapes.
    #[inline]
    pub(crate) fn key(&mut self) -> Res<(&'a str, bool)> {
        let k = self.string()?;
        self.eat(b':')?;
        Ok(k)
    }

    /// The text of the string just scanned, quotes included (for serde_json to unescape).
    pub(crate) fn quoted(&self, inner: &'a str) -> Res<&'a str> {
        // `inner` ends one byte before the cursor's closing quote.
        let end = self.pos;
        self.slice(end - inner.len() - 2, end)
    }

    /// Skips one value (after whitespace) and returns its text.
    pub(crate) fn value(&mut self) -> Res<&'a str> {
        let first = self.peek()?;
        let start = self.pos;
        match first {
            b'"' => {
                self.string()?;
            }
            b'{' => self.skip_object()?,
            b'[' => self.skip_array()?,
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'-' | b'0'..=b'9' => self.number()?,
            _ => return Err(GiveUp),
        }
        self.slice(start, self.pos)
    }

    fn literal(&mut self, word: &[u8]) -> Res<()> {
        let end = self.pos + word.len();
        if self.text.as_bytes().get(self.pos..end) == Some(word) {
            self.pos = end;
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, serde_json's grammar.
    fn number(&mut self) -> Res<()> {
        let b = self.text.as_bytes();
        let mut i = self.pos;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let digits = |mut i: usize| {
            let from = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == from { Err(GiveUp) } else { Ok(i) }
        };
        i = match b.get(i) {
            Some(b'0') => i + 1,
            Some(b'1'..=b'9') => digits(i)?,
            _ => return Err(GiveUp),
        };
        if b.get(i) == Some(&b'.') {
            i = digits(i + 1)?;
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            i = digits(i)?;
        }
        self.pos = i;
        Ok(())
    }

    fn skip_object(&mut self) -> Res<()> {
        self.open()?;
        if self.close_if(b'}')? {
            return Ok(());
        }
        loop {
            self.key()?;
            self.value()?;
            if !self.next_or_close(b'}')? {
                return Ok(());
            }
        }
    }

    fn skip_array(&mut self) -> Res<()> {
        self.open()?;
        if self.close_if(b']')? {
            return Ok(());
        }
        loop {
            self.value()?;
            if !self.next_or_close(b']')? {
                return Ok(());
            }
        }
    }
}

/// Where an escape whose letter is at `at` ends; gives up on lone surrogates, which
/// serde_json refuses or turns into text differently depending on where they are.
fn escape_end(b: &[u8], at: usize) -> Res<usize> {
    match b.get(at) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(at + 1),
        Some(b'u') => match hex4(b, at + 1)? {
            0xD800..=0xDBFF => {
                if b.get(at + 5..at + 7) == Some(b"\\u")
                    && (0xDC00..=0xDFFF).contains(&hex4(b, at + 7)?)
                {
                    Ok(at + 11)
                } else {
                    Err(GiveUp)
                }
            }
            0xDC00..=0xDFFF => Err(GiveUp),
            _ => Ok(at + 5),
        },
        _ => Err(GiveUp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_bytes_are_found_in_any_lane() {
        for lane in 0..8 {
            for byte in [b'"', b'\\', 0u8, 0x1f] {
                let mut w = [b'a'; 8];
                w[lane] = byte;
                assert!(special(u64::from_le_bytes(w)), "{byte:#x} at {lane}");
            }
        }
        // The lowest bit of the mask is the first special byte, whatever follows it.
        for lane in 0..8 {
            for byte in [b'"', b'\\', 0u8, 0x1f] {
                for after in [b'a', b'"', 0u8, 0x01, 0xff] {
                    let mut w = [0xc3u8; 8];
                    w[lane] = byte;
                    w[lane + 1..].fill(after);
                    let m = special_mask(u64::from_le_bytes(w));
                    assert_eq!(m.trailing_zeros() / 8, lane as u32, "{byte:#x} at {lane}");
                }
            }
        }
        // Sixteen bytes at a time: any lane.
        for lane in 0..16 {
            for byte in [b'"', b'\\', 0u8, 0x1f] {
                let mut w = [0xc3u8; 16];
                w[lane] = byte;
                assert!(any_special(&w), "{byte:#x} at {lane}");
            }
        }
        assert!(!any_special(b"ab \x7f\xc3\xa9~!0123456\x20"));
        assert!(!special(u64::from_le_bytes(*b"ab \x7f\xc3\xa9~!")));
        assert!(!special(u64::from_le_bytes([
            0x20, 0x21, 0xff, 0x80, 0x5b, 0x5d, 0x23, 0x7e
        ])));
    }

    #[test]
    fn an_expected_string_is_taken_only_when_it_is_there() {
        let mut s = Scanner::new(r#"  "time" : 1, "timeX": 2, "t\u0069me": 3, "é":4"#);
        assert_eq!(s.string_is("tim"), None);
        assert_eq!(s.string_is("timeX"), None);
        assert_eq!(s.pos(), 2);
        assert_eq!(s.string_is("time"), Some("time"));
        s.eat(b':').unwrap();
        s.value().unwrap();
        assert_eq!(s.next_or_close(b'}'), Ok(true));
        assert_eq!(s.string_is("time"), None);
        assert_eq!(s.key(), Ok(("timeX", false)));
        s.value().unwrap();
        assert_eq!(s.next_or_close(b'}'), Ok(true));
        assert_eq!(s.string_is("time"), None);
        assert_eq!(s.key(), Ok(("t\\u0069me", true)));
        s.value().unwrap();
        assert_eq!(s.next_or_close(b'}'), Ok(true));
        assert_eq!(s.string_is("é"), Some("é"));
        let mut end = Scanner::new(r#""tim"#);
        assert_eq!(end.string_is("time"), None);
        assert_eq!(end.string_is("tim"), None);
    }

    #[test]
    fn values_are_validated() {
        let ok = [
            r#""plain""#,
            r#""esc \" \\ \/ \n \u00e9 \ud83d\ude00""#,
            "0",
            "-0.5e+3",
            "12E7",
            "[1, {\"a\" : [true, false, null]}, \"x\"]",
            "{}",
            "[]",
        ];
        for t in ok {
            let mut s = Scanner::new(t);
            assert_eq!(s.value(), Ok(t), "{t}");
            assert!(s.at_end());
        }
        let bad = [
            "\"open",
            "\"a\x01\"",
            r#""\x""#,
            r#""\ud800""#,
            r#""\udc00x""#,
            "-",
            "1.",
            "1e",
            ".5",
            "tru",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\"}",
            "{1:2}",
            "[1 2]",
        ];
        for t in bad {
            let mut s = Scanner::new(t);
            let done = s.value().is_ok() && s.at_end();
            assert!(!done, "{t}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert_eq!(Scanner::new(&deep).value(), Err(GiveUp));
    }
}
