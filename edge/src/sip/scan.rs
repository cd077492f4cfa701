//! Splitting a message into start line, header fields and body (RFC 3261 §7, §7.3.1, §7.5).
//!
//! One pass over the bytes with `memchr` for line ends and colons; nothing is copied. Header
//! values are located, not interpreted: only Content-Length is read here, because framing
//! needs it.

use memchr::memchr;
use smallvec::SmallVec;

use super::error::{ParseError, ParseErrorKind};
use super::header::HeaderName;
use super::lex::is_token_char;
use super::method::Method;

/// Byte range `[start, end)` in the message buffer. u32 keeps spans small; messages are
/// limited far below 4 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    #[inline]
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartLine {
    Request {
        method: Method,
        uri: Span,
        version: Span,
    },
    Response {
        version: Span,
        status: u16,
        reason: Span,
    },
}

/// One header field: `start..end` covers the name through the line end of its last
/// (continuation) line, so it can be copied verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    pub name: HeaderName,
    pub start: u32,
    pub name_end: u32,
    pub value: Span,
    pub end: u32,
}

pub(crate) type Fields = SmallVec<[Field; 20]>;

/// The located header section.
#[derive(Debug)]
pub(crate) struct Head {
    pub start: u32,
    pub line_end: u32,
    pub start_line: StartLine,
    pub fields: Fields,
    /// The empty line closing the header section; `None` when the input ends before it.
    pub blank: Option<Span>,
    /// The first problem met in the header lines (the scan goes on so that the fields after
    /// it are still known).
    pub deferred: Option<ParseError>,
}

/// Next line from `pos`: (end of its content without CR LF, start of the next line).
/// Bare LF line ends are accepted (§7.5 robustness).
#[inline]
pub(crate) fn next_line(buf: &[u8], pos: usize) -> Option<(usize, usize)> {
    let nl = pos + memchr(b'\n', buf.get(pos..)?)?;
    let content_end = if nl > pos && buf.get(nl - 1) == Some(&b'\r') {
        nl - 1
    } else {
        nl
    };
    Some((content_end, nl + 1))
}

/// Scans from `from` (the first byte of the start line). `Ok(None)`: the start line is not
/// terminated yet. `Err`: the start line is unusable.
pub(crate) fn scan(
    buf: &[u8],
    from: usize,
    max_headers: usize,
) -> Result<Option<Head>, ParseError> {
    let Some((content_end, mut pos)) = next_line(buf, from) else {
        return Ok(None);
    };
    let start_line = parse_start_line(buf, from, content_end)?;
    let mut head = Head {
        start: from as u32,
        line_end: pos as u32,
        start_line,
        fields: SmallVec::new(),
        blank: None,
        deferred: None,
    };
    let mut cur: Option<Field> = None;
    let mut dropped_cur = false;
    while let Some((content_end, next)) = next_line(buf, pos) {
        if content_end == pos {
            head.blank = Some(Span::new(pos, next));
            break;
        }
        let first = buf.get(pos).copied().unwrap_or(0);
        if first == b' ' || first == b'\t' {
            // §7.3.1: a line starting with white space continues the previous field.
            match cur.as_mut() {
                Some(f) => {
                    extend_value(buf, f, pos, content_end);
                    f.end = next as u32;
                }
                None if dropped_cur => {}
                None => defer(
                    &mut head,
                    ParseErrorKind::HeaderSyntax,
                    "Bad Request (continuation line without header)",
                ),
            }
            pos = next;
            continue;
        }
        if let Some(f) = cur.take() {
            head.fields.push(f);
        }
        dropped_cur = false;
        match parse_field_line(buf, pos, content_end, next) {
            Ok(f) if head.fields.len() < max_headers => cur = Some(f),
            Ok(_) => {
                dropped_cur = true;
                defer(
                    &mut head,
                    ParseErrorKind::TooManyHeaders,
                    "Bad Request (too many headers)",
                );
            }
            Err(reason) => {
                dropped_cur = true;
                defer(&mut head, ParseErrorKind::HeaderSyntax, reason);
            }
        }
        pos = next;
    }
    if let Some(f) = cur.take() {
        head.fields.push(f);
    }
    Ok(Some(head))
}

fn defer(head: &mut Head, kind: ParseErrorKind, reason: &'static str) {
    if head.deferred.is_none() {
        head.deferred = Some(ParseError::new(kind, reason));
    }
}

fn parse_field_line(
    buf: &[u8],
    pos: usize,
    content_end: usize,
    next: usize,
) -> Result<Field, &'static str> {
    let line = buf.get(pos..content_end).unwrap_or(&[]);
    // One pass over the name: token characters, optional SP/HTAB, then the colon
    // (HCOLON = *( SP / HTAB ) ":" SWS, §25.1).
    let name_end = line
        .iter()
        .position(|&b| !is_token_char(b))
        .unwrap_or(line.len());
    let mut colon = name_end;
    while matches!(line.get(colon), Some(b' ' | b'\t')) {
        colon += 1;
    }
    if line.get(colon) != Some(&b':') {
        return Err(if memchr(b':', line).is_none() {
            "Bad Request (malformed header line)"
        } else {
            "Bad Request (malformed header name)"
        });
    }
    if name_end == 0 {
        return Err("Bad Request (malformed header name)");
    }
    let name = &line[..name_end];
    let mut f = Field {
        name: HeaderName::from_bytes(name),
        start: pos as u32,
        name_end: (pos + name_end) as u32,
        value: Span::new(content_end, content_end),
        end: next as u32,
    };
    extend_value(buf, &mut f, pos + colon + 1, content_end);
    Ok(f)
}

/// Adds the segment `[a, b)` of a (continuation) line to the field's value span.
fn extend_value(buf: &[u8], f: &mut Field, a: usize, b: usize) {
    let seg = buf.get(a..b).unwrap_or(&[]);
    let Some(first) = seg.iter().position(|&c| c != b' ' && c != b'\t') else {
        return;
    };
    let last = seg
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .unwrap_or(first);
    if f.value.is_empty_at_end() {
        f.value.start = (a + first) as u32;
    }
    f.value.end = (a + last + 1) as u32;
}

impl Span {
    /// An empty span means no non-blank value byte has been seen yet.
    fn is_empty_at_end(&self) -> bool {
        self.start == self.end
    }
}

fn parse_start_line(buf: &[u8], from: usize, end: usize) -> Result<StartLine, ParseError> {
    let line = buf.get(from..end).unwrap_or(&[]);
    let at = |i: usize| from + i;
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (§7.2)
        let sp = memchr(b' ', line).ok_or(ParseError::start_line("malformed status line"))?;
        let rest = line.get(sp + 1..).unwrap_or(&[]);
        let code = rest
            .get(..3)
            .ok_or(ParseError::start_line("malformed status code"))?;
        if !code.iter().all(u8::is_ascii_digit) || !matches!(rest.get(3), None | Some(b' ')) {
            return Err(ParseError::start_line("malformed status code"));
        }
        let status = code.iter().fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
        if !(100..=699).contains(&status) {
            return Err(ParseError::start_line("status code out of range"));
        }
        let reason_start = (sp + 5).min(line.len());
        if line
            .get(reason_start..)
            .unwrap_or(&[])
            .iter()
            .any(|&b| b < 0x20 && b != b'\t')
        {
            return Err(ParseError::start_line("control character in reason phrase"));
        }
        return Ok(StartLine::Response {
            version: Span::new(from, at(sp)),
            status,
            reason: Span::new(at(reason_start), end),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version (§7.1)
    let sp1 = memchr(b' ', line).ok_or(ParseError::start_line("malformed request line"))?;
    let method =
        Method::from_bytes(&line[..sp1]).ok_or(ParseError::start_line("malformed method"))?;
    let rest = line.get(sp1 + 1..).unwrap_or(&[]);
    let sp2 = memchr(b' ', rest).ok_or(ParseError::start_line("malformed request line"))?;
    let uri = &rest[..sp2];
    let version = rest.get(sp2 + 1..).unwrap_or(&[]);
    if uri.is_empty() || uri.iter().any(|&b| b <= 0x20 || b == 0x7f) {
        return Err(ParseError::start_line("malformed Request-URI"));
    }
    if version.len() < 5
        || !version[..4].eq_ignore_ascii_case(b"SIP/")
        || !version.iter().all(|&b| is_token_char(b) || b == b'/')
    {
        return Err(ParseError::start_line("malformed SIP version"));
    }
    let uri_start = at(sp1 + 1);
    let version_start = uri_start + sp2 + 1;
    Ok(StartLine::Request {
        method,
        uri: Span::new(uri_start, uri_start + sp2),
        version: Span::new(version_start, end),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folded_value_span() {
        let buf = b"OPTIONS sip:a SIP/2.0\r\nSubject: one\r\n  two  \r\nX:\r\n\tlate\r\n\r\n";
        let h = scan(buf, 0, 10).unwrap().unwrap();
        assert_eq!(h.fields.len(), 2);
        assert_eq!(h.fields[0].value.get(buf), b"one\r\n  two");
        assert_eq!(h.fields[1].value.get(buf), b"late");
        assert!(h.blank.is_some());
        assert!(h.deferred.is_none());
    }

    #[test]
    fn start_lines() {
        assert!(matches!(
            parse_start_line(b"SIP/2.0 180 Ringing", 0, 19),
            Ok(StartLine::Response { status: 180, .. })
        ));
        assert!(parse_start_line(b"SIP/2.0 099 x", 0, 13).is_err());
        assert!(parse_start_line(b"SIP/2.0 2000 x", 0, 14).is_err());
        assert!(parse_start_line(b"INVITE sip:a SIP/2.0", 0, 20).is_ok());
        assert!(parse_start_line(b"INVITE  sip:a SIP/2.0", 0, 21).is_err());
        assert!(parse_start_line(b"INVITE sip:a HTTP/1.1", 0, 21).is_err());
        assert!(parse_start_line(b"INVITE sip:a", 0, 12).is_err());
    }
}
