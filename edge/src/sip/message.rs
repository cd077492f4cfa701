//! The parsed SIP message (RFC 3261 §7): one `Bytes` buffer plus spans for the start line,
//! each header field and the body. Typed values (Via, CSeq, From, ...) are parsed when asked
//! for, straight from the buffer.

use bytes::Bytes;

use super::cseq::CSeq;
use super::error::{ParseError, ParseErrorKind};
use super::header::{HeaderMatch, HeaderName, HeaderRef};
use super::lex::{parse_u32, split_top_opt, trim};
use super::method::Method;
use super::name_addr::NameAddr;
use super::scan::{scan, Field, Fields, Span, StartLine};
use super::via::Via;

/// Size limits applied while parsing (config keys `limits.max_message_bytes`,
/// `limits.max_headers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 65_535,
            max_headers: 128,
        }
    }
}

impl From<&config::LimitsConfig> for Limits {
    fn from(c: &config::LimitsConfig) -> Self {
        Limits {
            max_message_bytes: c.max_message_bytes,
            max_headers: c.max_headers,
        }
    }
}

/// A SIP request or response, parsed without copying.
#[derive(Debug, Clone)]
pub struct Message {
    pub(crate) buf: Bytes,
    pub(crate) start: u32,
    pub(crate) line_end: u32,
    pub(crate) start_line: StartLine,
    pub(crate) fields: Fields,
    /// The empty line after the header section.
    pub(crate) blank: Span,
    pub(crate) body: Span,
}

/// Parses one message with datagram semantics (§18.3): a body longer than Content-Length is
/// truncated, a shorter one is an error, and without Content-Length the body is the rest of
/// the buffer. For streams, cut the buffer with [`super::frame_len`] first. Leading CRLFs are
/// skipped (§7.5).
pub fn parse(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
    Message::parse(buf, limits)
}

impl Message {
    /// See [`parse`].
    pub fn parse(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
        // Keep offsets in u32 and bound the work spent on an oversize message to its head.
        let scan_limit = limits.max_message_bytes.max(65_536).min(u32::MAX as usize);
        let too_large = buf.len() > limits.max_message_bytes;
        let from = buf
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')
            .unwrap_or(buf.len());
        let scanned = &buf[..buf.len().min(scan_limit)];
        let head = scan(scanned, from, limits.max_headers)?.ok_or_else(|| {
            if too_large {
                ParseError::new(ParseErrorKind::TooLarge, "Message Too Large")
                    .with_respondable(false)
            } else {
                ParseError::start_line("no start line")
            }
        })?;
        if let StartLine::Response { version, .. } = head.start_line {
            if !version.get(&buf).eq_ignore_ascii_case(b"SIP/2.0") {
                return Err(ParseError::start_line(
                    "unsupported SIP version in response",
                ));
            }
        }
        let mut error = head.deferred;
        let mut body = Span::new(scanned.len(), scanned.len());
        let blank = match head.blank {
            Some(blank) => {
                let body_start = blank.end as usize;
                let avail = buf.len() - body_start;
                match content_length(&buf, &head.fields) {
                    Ok(Some(n)) if n as usize > avail => {
                        body = Span::new(body_start, buf.len());
                        error.get_or_insert(ParseError::new(
                            ParseErrorKind::ContentLength,
                            "Bad Request (body shorter than Content-Length)",
                        ));
                    }
                    // §18.3: bytes beyond Content-Length in a datagram are discarded.
                    Ok(Some(n)) => body = Span::new(body_start, body_start + n as usize),
                    Ok(None) => body = Span::new(body_start, buf.len()),
                    Err(e) => {
                        body = Span::new(body_start, buf.len());
                        error.get_or_insert(e);
                    }
                }
                blank
            }
            None => {
                error.get_or_insert(ParseError::new(
                    ParseErrorKind::HeaderSyntax,
                    "Bad Request (header section not terminated)",
                ));
                body
            }
        };
        let msg = Message {
            start: head.start,
            line_end: head.line_end,
            start_line: head.start_line,
            fields: head.fields,
            blank,
            body,
            buf,
        };
        if too_large {
            error = Some(ParseError::new(
                ParseErrorKind::TooLarge,
                "Message Too Large",
            ));
        }
        match error {
            None => Ok(msg),
            Some(e) => Err(msg.attach(e)),
        }
    }

    /// Marks whether `e` can be answered and, for requests, keeps the message for the answer.
    fn attach(self, e: ParseError) -> ParseError {
        let respondable = self.respondable();
        if self.is_request() {
            e.with_respondable(respondable).with_partial(self)
        } else {
            e.with_respondable(false)
        }
    }

    /// A request other than ACK whose top Via can be read (§17.1.1, §18.2.2).
    pub(crate) fn respondable(&self) -> bool {
        match self.method() {
            None | Some(Method::Ack) => false,
            Some(_) => self.top_via().is_ok(),
        }
    }

    pub fn buf(&self) -> &Bytes {
        &self.buf
    }

    pub fn is_request(&self) -> bool {
        matches!(self.start_line, StartLine::Request { .. })
    }

    pub fn method(&self) -> Option<&Method> {
        match &self.start_line {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self.start_line {
            StartLine::Response { status, .. } => Some(status),
            StartLine::Request { .. } => None,
        }
    }

    /// Reason phrase of a response; empty for requests.
    pub fn reason(&self) -> &[u8] {
        match self.start_line {
            StartLine::Response { reason, .. } => reason.get(&self.buf),
            StartLine::Request { .. } => &[],
        }
    }

    /// The Request-URI as written; parse it with [`super::Uri::parse`].
    pub fn request_uri(&self) -> Option<&[u8]> {
        match self.start_line {
            StartLine::Request { uri, .. } => Some(uri.get(&self.buf)),
            StartLine::Response { .. } => None,
        }
    }

    /// The SIP-Version of the start line as written (e.g. `SIP/2.0`).
    pub fn version(&self) -> &[u8] {
        match self.start_line {
            StartLine::Request { version, .. } | StartLine::Response { version, .. } => {
                version.get(&self.buf)
            }
        }
    }

    /// The start line without its line end.
    pub fn start_line(&self) -> &[u8] {
        let s = Span {
            start: self.start,
            end: self.line_end,
        };
        trim(s.get(&self.buf))
    }

    fn header_ref(&self, index: usize, f: &Field) -> HeaderRef<'_> {
        HeaderRef {
            name: f.name,
            raw_name: Span {
                start: f.start,
                end: f.name_end,
            }
            .get(&self.buf),
            value: f.value.get(&self.buf),
            index,
        }
    }

    /// All header fields in order.
    pub fn headers(&self) -> impl Iterator<Item = HeaderRef<'_>> {
        self.fields
            .iter()
            .enumerate()
            .map(|(i, f)| self.header_ref(i, f))
    }

    /// Number of header fields.
    pub fn header_count(&self) -> usize {
        self.fields.len()
    }

    /// Fields matching `name` (a [`HeaderName`] or any `&str` spelling).
    pub fn fields<'k, N: Into<HeaderMatch<'k>>>(
        &self,
        name: N,
    ) -> impl Iterator<Item = HeaderRef<'_>> + use<'_, 'k, N> {
        let m = name.into();
        self.fields
            .iter()
            .enumerate()
            .filter(move |(_, f)| self.field_matches(&m, f))
            .map(|(i, f)| self.header_ref(i, f))
    }

    /// Compares the enum first; the raw name is only looked at for unknown headers.
    #[inline]
    fn field_matches(&self, m: &HeaderMatch<'_>, f: &Field) -> bool {
        match m {
            HeaderMatch::Known(h) => f.name == *h && *h != HeaderName::Other,
            HeaderMatch::Other(_) => {
                f.name == HeaderName::Other
                    && m.matches(
                        f.name,
                        Span {
                            start: f.start,
                            end: f.name_end,
                        }
                        .get(&self.buf),
                    )
            }
        }
    }

    /// Number of fields of each of `names` (one pass).
    pub(crate) fn count_fields<const N: usize>(&self, names: [HeaderName; N]) -> [usize; N] {
        let mut counts = [0; N];
        for f in &self.fields {
            for (c, n) in counts.iter_mut().zip(names) {
                *c += usize::from(f.name == n);
            }
        }
        counts
    }

    /// Value of the first field named `name`, trimmed.
    pub fn header<'k>(&self, name: impl Into<HeaderMatch<'k>>) -> Option<&[u8]> {
        self.fields(name).next().map(|h| h.value)
    }

    /// Every value of every field named `name`, split at top-level commas (outside quotes and
    /// `<>`) for list-valued headers (Via, Contact, Route, Record-Route, Supported, ...), §7.3.1.
    /// Headers that are not lists (From, Authorization, Date, ...) yield each field whole.
    pub fn values<'k, N: Into<HeaderMatch<'k>>>(
        &self,
        name: N,
    ) -> impl Iterator<Item = &[u8]> + use<'_, 'k, N> {
        let m = name.into();
        let sep = if m.is_list() { Some(b',') } else { None };
        self.fields(m)
            .flat_map(move |h| split_top_opt(h.value, sep))
    }

    /// The body: after the empty line, Content-Length bytes long.
    pub fn body(&self) -> &[u8] {
        self.body.get(&self.buf)
    }

    /// The body as a zero-copy slice of the message buffer.
    pub fn body_bytes(&self) -> Bytes {
        let (s, e) = (self.body.start as usize, self.body.end as usize);
        if s <= e && e <= self.buf.len() {
            self.buf.slice(s..e)
        } else {
            Bytes::new()
        }
    }

    pub fn call_id(&self) -> Option<&[u8]> {
        self.header(HeaderName::CallId)
    }

    pub fn cseq(&self) -> Result<CSeq, ParseError> {
        CSeq::parse(
            self.header(HeaderName::CSeq)
                .ok_or(ParseError::missing("Bad Request (missing CSeq)"))?,
        )
    }

    /// The topmost Via value (§8.1.1.7).
    pub fn top_via(&self) -> Result<Via<'_>, ParseError> {
        self.vias()
            .next()
            .unwrap_or(Err(ParseError::missing("Bad Request (missing Via)")))
    }

    /// All Via values, top first.
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'_>, ParseError>> {
        self.values(HeaderName::Via).map(Via::parse)
    }

    /// Max-Forwards (§8.1.1.6, §20.22); `Ok(None)` when absent.
    pub fn max_forwards(&self) -> Result<Option<u32>, ParseError> {
        match self.header(HeaderName::MaxForwards) {
            None => Ok(None),
            Some(v) => parse_u32(v)
                .map(Some)
                .ok_or(ParseError::bad("Bad Request (invalid Max-Forwards)")),
        }
    }

    pub fn from(&self) -> Result<NameAddr<'_>, ParseError> {
        let v = self
            .header(HeaderName::From)
            .ok_or(ParseError::missing("Bad Request (missing From)"))?;
        NameAddr::parse(v).map_err(|_| ParseError::bad("Bad Request (invalid From)"))
    }

    pub fn to(&self) -> Result<NameAddr<'_>, ParseError> {
        let v = self
            .header(HeaderName::To)
            .ok_or(ParseError::missing("Bad Request (missing To)"))?;
        NameAddr::parse(v).map_err(|_| ParseError::bad("Bad Request (invalid To)"))
    }

    pub(crate) fn field_span(&self, index: usize) -> Option<&Field> {
        self.fields.get(index)
    }
}

/// Content-Length of the header section (§20.14): all fields must agree.
pub(crate) fn content_length(buf: &[u8], fields: &[Field]) -> Result<Option<u32>, ParseError> {
    let mut found = None;
    for f in fields
        .iter()
        .filter(|f| f.name == HeaderName::ContentLength)
    {
        let n = parse_u32(f.value.get(buf)).ok_or(ParseError::new(
            ParseErrorKind::ContentLength,
            "Bad Request (invalid Content-Length)",
        ))?;
        if found.is_some_and(|m| m != n) {
            return Err(ParseError::new(
                ParseErrorKind::ContentLength,
                "Bad Request (conflicting Content-Length)",
            ));
        }
        found = Some(n);
    }
    Ok(found)
}
