//! Parse errors and the response each one earns (RFC 3261 §8.2, §16.3, §21.4).

use std::borrow::Cow;

use super::message::Message;

/// What went wrong; decides the status code of the rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The start line is not a SIP request or response line: the message is dropped.
    StartLine,
    /// A SIP version other than SIP/2.0 (§8.2.2 → 505).
    Version,
    /// The message exceeds `Limits::max_message_bytes` (§18.1.1 → 513).
    TooLarge,
    /// More header fields than `Limits::max_headers`.
    TooManyHeaders,
    /// A header line that is not `name: value`, or a header section without its empty line.
    HeaderSyntax,
    /// A mandatory header field is absent (§8.1.1).
    MissingHeader,
    /// A header field value does not follow its grammar (§25.1).
    InvalidHeader,
    /// Content-Length unparsable, conflicting, or larger than the body (§18.3, §20.14).
    ContentLength,
    /// A URI that does not follow the sip/sips/tel grammar (§19.1, RFC 3966).
    Uri,
    /// A syntactically valid URI with a scheme we do not serve (§8.2.2.1 → 416).
    UnsupportedScheme,
}

/// A message or a header value that could not be parsed, with the status and reason phrase a
/// server answers it with.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason}")]
pub struct ParseError {
    pub kind: ParseErrorKind,
    /// Reason phrase for the rejection, e.g. "Bad Request (missing Call-ID)".
    pub reason: Cow<'static, str>,
    respondable: bool,
    partial: Option<Box<Message>>,
}

impl ParseError {
    pub(crate) fn new(kind: ParseErrorKind, reason: impl Into<Cow<'static, str>>) -> ParseError {
        ParseError {
            kind,
            reason: reason.into(),
            respondable: true,
            partial: None,
        }
    }

    pub(crate) fn bad(reason: &'static str) -> ParseError {
        ParseError::new(ParseErrorKind::InvalidHeader, reason)
    }

    pub(crate) fn missing(reason: &'static str) -> ParseError {
        ParseError::new(ParseErrorKind::MissingHeader, reason)
    }

    pub(crate) fn start_line(reason: &'static str) -> ParseError {
        let mut e = ParseError::new(ParseErrorKind::StartLine, reason);
        e.respondable = false;
        e
    }

    pub(crate) fn with_respondable(mut self, respondable: bool) -> ParseError {
        self.respondable = respondable;
        self
    }

    pub(crate) fn with_partial(mut self, msg: Message) -> ParseError {
        self.partial = Some(Box::new(msg));
        self
    }

    /// Status code of the response to a request rejected with this error.
    pub fn status_code(&self) -> u16 {
        match self.kind {
            ParseErrorKind::Version => 505,
            ParseErrorKind::TooLarge => 513,
            ParseErrorKind::UnsupportedScheme => 416,
            _ => 400,
        }
    }

    /// Reason phrase for the response.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Whether a response can be sent at all.
    ///
    /// For errors from [`super::parse`] and [`Message::validate_request`]: false when the message
    /// is a response or an ACK (§17.1.1: never answered), when its start line is unusable, or
    /// when its top Via is missing or unparsable (§18.2.2: nowhere to send the response). Then the
    /// message is dropped and counted. For errors of the typed accessors (a single header value)
    /// this is true.
    pub fn can_respond(&self) -> bool {
        self.respondable
    }

    /// The request as far as it could be read, when [`super::parse`] failed on a request whose
    /// start line and header lines were usable (too large, too many headers, bad
    /// Content-Length, a malformed header line). Use it with [`super::response_to`] when
    /// [`ParseError::can_respond`] is true.
    pub fn partial(&self) -> Option<&Message> {
        self.partial.as_deref()
    }

    /// The complete rejection (`SIP/2.0 <status_code> <reason>`) for a respondable error, built
    /// from `req` or, if `None`, from [`ParseError::partial`]. `None` when the message must be
    /// dropped instead.
    pub fn response(&self, req: Option<&Message>, to_tag: Option<&str>) -> Option<bytes::Bytes> {
        if !self.respondable {
            return None;
        }
        let req = req.or(self.partial())?;
        if !req.is_request() {
            return None;
        }
        Some(super::response::response_to(
            req,
            self.status_code(),
            &self.reason,
            to_tag,
            &[],
        ))
    }
}
