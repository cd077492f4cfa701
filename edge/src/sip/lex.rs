//! Byte-level lexical helpers shared by the header grammars (RFC 3261 §25.1).
//!
//! Header values are kept raw, so a folded value still contains its `CRLF SP` continuation
//! (§7.3.1); every helper here treats CR and LF like SP/HTAB (linear white space).

/// Linear white space, including the CRLF of a folded line.
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// `token` characters (§25.1).
#[inline]
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token_char(b))
}

/// Strips leading and trailing LWS.
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_lws(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_lws(b)).map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or(&[])
}

pub(crate) fn trim_str(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_ascii() && is_lws(c as u8))
}

/// Index of the first `sep` that is outside a quoted string (with `\` escapes) and outside
/// `<...>`; `s.len()` when there is none.
pub(crate) fn find_top_level(s: &[u8], sep: u8) -> usize {
    // Jump between the three bytes that matter with memchr instead of testing every byte: this
    // runs for every value of every list header (Via, Route, Contact…) on the hot path.
    if sep == b'"' || sep == b'<' || sep == b'\\' {
        return find_top_level_slow(s, sep);
    }
    let mut i = 0;
    while let Some(off) = s.get(i..).and_then(|r| memchr::memchr3(sep, b'"', b'<', r)) {
        let j = i + off;
        match s[j] {
            b'"' => {
                // Quoted string: a backslash escapes the next byte.
                let mut k = j + 1;
                loop {
                    let Some(o) = s.get(k..).and_then(|r| memchr::memchr2(b'"', b'\\', r)) else {
                        return s.len();
                    };
                    let p = k + o;
                    if s[p] == b'\\' {
                        k = p + 2;
                    } else {
                        i = p + 1;
                        break;
                    }
                }
            }
            b'<' => match s.get(j + 1..).and_then(|r| memchr::memchr(b'>', r)) {
                Some(o) => i = j + 1 + o + 1,
                None => return s.len(),
            },
            _ => return j,
        }
    }
    s.len()
}

fn find_top_level_slow(s: &[u8], sep: u8) -> usize {
    let mut in_quotes = false;
    let mut in_angle = false;
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if in_quotes {
            if b == b'\\' {
                i += 1;
            } else if b == b'"' {
                in_quotes = false;
            }
        } else if b == b'"' {
            in_quotes = true;
        } else if in_angle {
            if b == b'>' {
                in_angle = false;
            }
        } else if b == b'<' {
            in_angle = true;
        } else if b == sep {
            return i;
        }
        i += 1;
    }
    s.len()
}

/// Iterator over the `sep`-separated parts of `s` at top level, trimmed, empty parts skipped.
/// With `sep == None` the whole (trimmed) input is the only part.
pub(crate) struct SplitTop<'a> {
    rest: &'a [u8],
    sep: Option<u8>,
    done: bool,
}

pub(crate) fn split_top(s: &[u8], sep: u8) -> SplitTop<'_> {
    split_top_opt(s, Some(sep))
}

pub(crate) fn split_top_opt(s: &[u8], sep: Option<u8>) -> SplitTop<'_> {
    SplitTop {
        rest: s,
        sep,
        done: false,
    }
}

impl<'a> Iterator for SplitTop<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        while !self.done {
            let at = match self.sep {
                Some(sep) => find_top_level(self.rest, sep),
                None => self.rest.len(),
            };
            let part = self.rest.get(..at).unwrap_or(&[]);
            match self.rest.get(at + 1..) {
                Some(r) => self.rest = r,
                None => {
                    self.rest = &[];
                    self.done = true;
                }
            }
            let part = trim(part);
            if !part.is_empty() {
                return Some(part);
            }
        }
        None
    }
}

/// Parses 1*DIGIT into a u32 (no sign, no overflow).
pub(crate) fn parse_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 10 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(b - b'0');
    }
    u32::try_from(v).ok()
}

pub(crate) fn parse_u16(s: &[u8]) -> Option<u16> {
    parse_u32(s).and_then(|v| u16::try_from(v).ok())
}

/// Looks up `name` (case-insensitive) in a raw `;a=b;c` parameter list. `Some(None)` for a
/// parameter without value; the value is returned raw (quotes kept).
pub(crate) fn find_param<'a>(params: &'a str, name: &str) -> Option<Option<&'a str>> {
    for p in split_top(params.as_bytes(), b';') {
        // `p` is a sub-slice of a &str split at ASCII bytes, so it is valid UTF-8.
        let p = std::str::from_utf8(p).ok()?;
        let (n, v) = match p.find('=') {
            Some(eq) => (trim_str(&p[..eq]), Some(trim_str(&p[eq + 1..]))),
            None => (p, None),
        };
        if n.eq_ignore_ascii_case(name) {
            return Some(v);
        }
    }
    None
}

/// Checks a raw parameter list (`;name[=value]`*): names are tokens, values are tokens,
/// quoted strings or bracketed IPv6 references (§25.1 generic-param).
pub(crate) fn valid_params(params: &[u8]) -> bool {
    let params = trim(params);
    if params.is_empty() {
        return true;
    }
    if params.first() != Some(&b';') {
        return false;
    }
    let mut any_empty = false;
    let body = params.get(1..).unwrap_or(&[]);
    // An empty parameter (";;") is tolerated by split_top, but a trailing lone ";" is not.
    if trim(body).is_empty() {
        any_empty = true;
    }
    for p in split_top(body, b';') {
        let (n, v) = match p.iter().position(|&b| b == b'=') {
            Some(eq) => (trim(&p[..eq]), Some(trim(&p[eq + 1..]))),
            None => (p, None),
        };
        if !is_token(n) {
            return false;
        }
        if let Some(v) = v {
            if !valid_gen_value(v) {
                return false;
            }
        }
    }
    !any_empty
}

fn valid_gen_value(v: &[u8]) -> bool {
    if v.first() == Some(&b'"') {
        return valid_quoted(v);
    }
    if v.first() == Some(&b'[') {
        return v.last() == Some(&b']')
            && v.len() > 2
            && v[1..v.len() - 1]
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    is_token(v)
}

/// A complete quoted string: `"` ... `"` with `\` escapes and nothing after the closing quote.
pub(crate) fn valid_quoted(v: &[u8]) -> bool {
    quoted_len(v) == Some(v.len())
}

/// Length of the quoted string at the start of `v` (including both quotes), if closed.
pub(crate) fn quoted_len(v: &[u8]) -> Option<usize> {
    if v.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < v.len() {
        match v[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            b'\r' | b'\n' => {
                // Only a folded line (CRLF followed by SP/HTAB) may break a quoted string.
                i += 1;
            }
            b if b < 0x20 && b != b'\t' => return None,
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_respects_quotes_and_angles() {
        let v: Vec<&[u8]> =
            split_top(b"\"a, b\" <sip:x@y;p=1,2>;q=1 , <sip:z> ,, sip:w", b',').collect();
        assert_eq!(
            v,
            vec![
                &b"\"a, b\" <sip:x@y;p=1,2>;q=1"[..],
                &b"<sip:z>"[..],
                &b"sip:w"[..]
            ]
        );
        let v: Vec<&[u8]> = split_top(b"\"x\\\",y\", z", b',').collect();
        assert_eq!(v, vec![&b"\"x\\\",y\""[..], &b"z"[..]]);
    }

    #[test]
    fn params() {
        let p = ";branch=z9hG4bK1;RPORT; received = 1.2.3.4;x=\"a;b\"";
        assert_eq!(find_param(p, "rport"), Some(None));
        assert_eq!(find_param(p, "received"), Some(Some("1.2.3.4")));
        assert_eq!(find_param(p, "x"), Some(Some("\"a;b\"")));
        assert_eq!(find_param(p, "nope"), None);
        assert!(valid_params(p.as_bytes()));
        assert!(valid_params(b";maddr=[2001:db8::1]"));
        assert!(!valid_params(b";a b"));
        assert!(!valid_params(b";=x"));
        assert!(!valid_params(b";"));
        assert!(!valid_params(b"x"));
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
        assert_eq!(parse_u32(b"-1"), None);
        assert_eq!(parse_u32(b""), None);
        assert_eq!(parse_u16(b"65536"), None);
    }

    #[test]
    fn trims_folded_space() {
        assert_eq!(trim(b" \r\n\t a b\r\n "), b"a b");
        assert_eq!(trim(b"  "), b"");
    }
}

#[cfg(test)]
mod find_top_level_tests {
    use super::{find_top_level, find_top_level_slow};
    use proptest::prelude::*;

    #[test]
    fn skips_quotes_and_angles() {
        assert_eq!(find_top_level(b"\"a,b\" <sip:x;y,z>, c", b','), 17);
        assert_eq!(find_top_level(b"\"a\\\",b\" <x>", b','), 11);
        assert_eq!(find_top_level(b"<sip:a,b", b','), 8);
        assert_eq!(find_top_level(b"a;b", b';'), 1);
    }

    proptest! {
        /// The memchr version agrees with the byte-by-byte definition wherever angle brackets
        /// hold no quote (the only place the two readings could differ).
        #[test]
        fn agrees_with_reference(s in "[a-z,;<>\"\\\\ ]{0,40}") {
            let b = s.as_bytes();
            let quote_in_angle = b.iter().enumerate().any(|(i, c)| {
                *c == b'<' && b[i..].iter().take_while(|c| **c != b'>').any(|c| *c == b'"')
            });
            prop_assume!(!quote_in_angle);
            prop_assert_eq!(find_top_level(b, b','), find_top_level_slow(b, b','));
            prop_assert_eq!(find_top_level(b, b';'), find_top_level_slow(b, b';'));
        }
    }
}
