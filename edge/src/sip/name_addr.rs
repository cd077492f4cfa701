//! name-addr / addr-spec with header parameters (RFC 3261 §20.10, §25.1): the value of From,
//! To, Contact, Route, Record-Route, Refer-To, P-Asserted-Identity, ...
//!
//! `"A \"B\" C" <sip:x@y>;tag=1`, `Bob <sip:b@h>`, `<sip:x@y;lr>`, or a bare `sip:x@y;tag=1`
//! where — without angle brackets — every `;` parameter belongs to the header, not the URI.

use std::borrow::Cow;

use super::error::ParseError;
use super::lex::{find_param, is_lws, is_token_char, quoted_len, trim, valid_params};
use super::uri::Uri;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// Display name: the text between the quotes (escapes kept, see
    /// [`NameAddr::display_unescaped`]) or the unquoted tokens.
    pub display: Option<&'a str>,
    /// The URI between `<` and `>` (or the bare addr-spec).
    pub uri_raw: &'a [u8],
    /// Header parameters raw, leading `;` kept, or "".
    pub params: &'a str,
}

fn bad() -> ParseError {
    ParseError::bad("Bad Request (invalid name-addr)")
}

fn valid_uri_chars(u: &[u8]) -> bool {
    !u.is_empty()
        && u.iter()
            .all(|&b| b > 0x20 && b != 0x7f && !matches!(b, b'<' | b'>' | b'"'))
}

impl<'a> NameAddr<'a> {
    pub fn parse(v: &'a [u8]) -> Result<NameAddr<'a>, ParseError> {
        let v = trim(v);
        let (display, rest): (Option<&[u8]>, &[u8]) = if v.first() == Some(&b'"') {
            let n = quoted_len(v).ok_or_else(bad)?;
            let rest = trim(&v[n..]);
            if rest.first() != Some(&b'<') {
                return Err(bad());
            }
            (Some(&v[1..n - 1]), rest)
        } else if let Some(lt) = v.iter().position(|&b| b == b'<') {
            // display-name as *(token LWS)
            let d = trim(&v[..lt]);
            if !d.iter().all(|&b| is_token_char(b) || is_lws(b)) {
                return Err(bad());
            }
            ((!d.is_empty()).then_some(d), &v[lt..])
        } else {
            (None, v)
        };
        let (uri_raw, params) = if let Some(inner) = rest.strip_prefix(b"<") {
            let gt = inner.iter().position(|&b| b == b'>').ok_or_else(bad)?;
            (&inner[..gt], &inner[gt + 1..])
        } else {
            // addr-spec: the URI ends at the first ';' (§20.10).
            let semi = rest.iter().position(|&b| b == b';').unwrap_or(rest.len());
            (trim(&rest[..semi]), &rest[semi..])
        };
        if !valid_uri_chars(uri_raw) {
            return Err(bad());
        }
        let params = trim(params);
        if !params.is_empty() && !valid_params(params) {
            return Err(bad());
        }
        let display = match display {
            Some(d) => Some(std::str::from_utf8(d).map_err(|_| bad())?),
            None => None,
        };
        Ok(NameAddr {
            display,
            uri_raw,
            params: std::str::from_utf8(params).map_err(|_| bad())?,
        })
    }

    pub fn uri(&self) -> Result<Uri<'a>, ParseError> {
        Uri::parse(self.uri_raw)
    }

    /// A header parameter, case-insensitively (`Some(None)` for a flag).
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        find_param(self.params, name)
    }

    /// The dialog tag (§19.3).
    pub fn tag(&self) -> Option<&'a str> {
        self.param("tag").flatten()
    }

    /// The display name with quoted-pair escapes resolved.
    pub fn display_unescaped(&self) -> Option<Cow<'a, str>> {
        let d = self.display?;
        if !d.contains('\\') {
            return Some(Cow::Borrowed(d));
        }
        let mut out = String::with_capacity(d.len());
        let mut chars = d.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else {
                out.push(c);
            }
        }
        Some(Cow::Owned(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_display_with_escapes() {
        let n = NameAddr::parse(br#""A \"B\" C" <sip:x@y>;tag=1928301774"#).unwrap();
        assert_eq!(n.display, Some(r#"A \"B\" C"#));
        assert_eq!(n.display_unescaped().unwrap(), r#"A "B" C"#);
        assert_eq!(n.uri_raw, b"sip:x@y");
        assert_eq!(n.tag(), Some("1928301774"));
    }

    #[test]
    fn token_display_and_uri_params() {
        let n = NameAddr::parse(b"Bob Smith <sip:b@h;transport=tcp;lr>;expires=60").unwrap();
        assert_eq!(n.display, Some("Bob Smith"));
        assert!(n.uri().unwrap().has_lr());
        assert_eq!(n.param("EXPIRES"), Some(Some("60")));
        assert_eq!(n.tag(), None);
    }

    #[test]
    fn addr_spec_params_belong_to_header() {
        let n = NameAddr::parse(b"sip:carol@chicago.com;tag=abc;transport=tcp").unwrap();
        assert_eq!(n.display, None);
        assert_eq!(n.uri_raw, b"sip:carol@chicago.com");
        assert_eq!(n.tag(), Some("abc"));
        assert_eq!(n.uri().unwrap().transport(), None);
    }

    #[test]
    fn rejects() {
        for bad in [
            &b""[..],
            b"\"unterminated <sip:a@b>",
            b"\"x\" sip:a@b",
            b"<sip:a@b",
            b"<>",
            b"a@b <sip:a@b>",
            b"<sip:a@b>;=x",
            b"<sip:a@b> junk",
            b"<sip:a b@c>",
        ] {
            assert!(
                NameAddr::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
