//! Header field names (RFC 3261 §7.3, §20): canonical names, compact forms (§7.3.3) and the
//! case-insensitive matching of names (§7.3.1).

use std::fmt;

/// The header fields the edge looks at. Anything else is `Other`; its spelling is in
/// [`HeaderRef::raw_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    MaxForwards,
    Route,
    RecordRoute,
    ContentLength,
    ContentType,
    ContentEncoding,
    ContentDisposition,
    Expires,
    Supported,
    Require,
    ProxyRequire,
    Unsupported,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    ProxyAuthenticate,
    AuthenticationInfo,
    Reason,
    Path,
    UserAgent,
    Server,
    Event,
    AllowEvents,
    SubscriptionState,
    Subject,
    Accept,
    Allow,
    MinExpires,
    Timestamp,
    Date,
    Warning,
    RetryAfter,
    ReferTo,
    ReferredBy,
    SessionExpires,
    MinSe,
    RSeq,
    RAck,
    Identity,
    PAssertedIdentity,
    PPreferredIdentity,
    Privacy,
    Other,
}

/// (canonical name, variant) — the lookup table for [`HeaderName::from_bytes`].
const TABLE: &[(&str, HeaderName)] = &[
    ("Via", HeaderName::Via),
    ("From", HeaderName::From),
    ("To", HeaderName::To),
    ("Call-ID", HeaderName::CallId),
    ("CSeq", HeaderName::CSeq),
    ("Contact", HeaderName::Contact),
    ("Max-Forwards", HeaderName::MaxForwards),
    ("Route", HeaderName::Route),
    ("Record-Route", HeaderName::RecordRoute),
    ("Content-Length", HeaderName::ContentLength),
    ("Content-Type", HeaderName::ContentType),
    ("Content-Encoding", HeaderName::ContentEncoding),
    ("Content-Disposition", HeaderName::ContentDisposition),
    ("Expires", HeaderName::Expires),
    ("Supported", HeaderName::Supported),
    ("Require", HeaderName::Require),
    ("Proxy-Require", HeaderName::ProxyRequire),
    ("Unsupported", HeaderName::Unsupported),
    ("Authorization", HeaderName::Authorization),
    ("Proxy-Authorization", HeaderName::ProxyAuthorization),
    ("WWW-Authenticate", HeaderName::WwwAuthenticate),
    ("Proxy-Authenticate", HeaderName::ProxyAuthenticate),
    ("Authentication-Info", HeaderName::AuthenticationInfo),
    ("Reason", HeaderName::Reason),
    ("Path", HeaderName::Path),
    ("User-Agent", HeaderName::UserAgent),
    ("Server", HeaderName::Server),
    ("Event", HeaderName::Event),
    ("Allow-Events", HeaderName::AllowEvents),
    ("Subscription-State", HeaderName::SubscriptionState),
    ("Subject", HeaderName::Subject),
    ("Accept", HeaderName::Accept),
    ("Allow", HeaderName::Allow),
    ("Min-Expires", HeaderName::MinExpires),
    ("Timestamp", HeaderName::Timestamp),
    ("Date", HeaderName::Date),
    ("Warning", HeaderName::Warning),
    ("Retry-After", HeaderName::RetryAfter),
    ("Refer-To", HeaderName::ReferTo),
    ("Referred-By", HeaderName::ReferredBy),
    ("Session-Expires", HeaderName::SessionExpires),
    ("Min-SE", HeaderName::MinSe),
    ("RSeq", HeaderName::RSeq),
    ("RAck", HeaderName::RAck),
    ("Identity", HeaderName::Identity),
    ("P-Asserted-Identity", HeaderName::PAssertedIdentity),
    ("P-Preferred-Identity", HeaderName::PPreferredIdentity),
    ("Privacy", HeaderName::Privacy),
];

impl HeaderName {
    /// Classifies a header name, case-insensitively, compact forms included (§7.3.3:
    /// v f t i m l k s c e o r u x y b).
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        if let [c] = name {
            return match c.to_ascii_lowercase() {
                b'v' => HeaderName::Via,
                b'f' => HeaderName::From,
                b't' => HeaderName::To,
                b'i' => HeaderName::CallId,
                b'm' => HeaderName::Contact,
                b'l' => HeaderName::ContentLength,
                b'k' => HeaderName::Supported,
                b's' => HeaderName::Subject,
                b'c' => HeaderName::ContentType,
                b'e' => HeaderName::ContentEncoding,
                b'o' => HeaderName::Event,
                b'r' => HeaderName::ReferTo,
                b'u' => HeaderName::AllowEvents,
                b'x' => HeaderName::SessionExpires,
                b'y' => HeaderName::Identity,
                b'b' => HeaderName::ReferredBy,
                _ => HeaderName::Other,
            };
        }
        let first = match name.first() {
            Some(b) => b.to_ascii_lowercase(),
            None => return HeaderName::Other,
        };
        for (canon, h) in TABLE {
            let c = canon.as_bytes();
            if c.len() == name.len()
                && c[0].to_ascii_lowercase() == first
                && c.eq_ignore_ascii_case(name)
            {
                return *h;
            }
        }
        HeaderName::Other
    }

    /// Canonical spelling ("Call-ID", "CSeq", "WWW-Authenticate"); "" for `Other`.
    pub fn as_str(self) -> &'static str {
        TABLE
            .iter()
            .find(|(_, h)| *h == self)
            .map_or("", |(n, _)| n)
    }

    /// Whether the field's grammar is a comma-separated list (§7.3.1), so that several values
    /// may share one line. Credentials, challenges, dates and free text are not split.
    pub fn is_list(self) -> bool {
        !matches!(
            self,
            HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
                | HeaderName::MaxForwards
                | HeaderName::ContentLength
                | HeaderName::ContentType
                | HeaderName::Authorization
                | HeaderName::ProxyAuthorization
                | HeaderName::WwwAuthenticate
                | HeaderName::ProxyAuthenticate
                | HeaderName::AuthenticationInfo
                | HeaderName::UserAgent
                | HeaderName::Server
                | HeaderName::Subject
                | HeaderName::Timestamp
                | HeaderName::Date
                | HeaderName::RetryAfter
                | HeaderName::ReferTo
                | HeaderName::ReferredBy
                | HeaderName::SessionExpires
                | HeaderName::Identity
                | HeaderName::Other
        )
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which fields an accessor or an [`super::Edit`] operation applies to: a known name (matches
/// its compact form too) or any spelling of an unknown one, compared case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMatch<'a> {
    Known(HeaderName),
    Other(&'a str),
}

impl From<HeaderName> for HeaderMatch<'_> {
    fn from(h: HeaderName) -> Self {
        HeaderMatch::Known(h)
    }
}

impl<'a> From<&'a str> for HeaderMatch<'a> {
    fn from(s: &'a str) -> Self {
        match HeaderName::from_bytes(s.as_bytes()) {
            HeaderName::Other => HeaderMatch::Other(s),
            h => HeaderMatch::Known(h),
        }
    }
}

impl HeaderMatch<'_> {
    pub(crate) fn matches(&self, name: HeaderName, raw_name: &[u8]) -> bool {
        match self {
            HeaderMatch::Known(h) => *h == name && *h != HeaderName::Other,
            HeaderMatch::Other(s) => {
                name == HeaderName::Other && s.as_bytes().eq_ignore_ascii_case(raw_name)
            }
        }
    }

    pub(crate) fn is_list(&self) -> bool {
        match self {
            HeaderMatch::Known(h) => h.is_list(),
            HeaderMatch::Other(_) => true,
        }
    }
}

/// One header field of a parsed message, borrowed from its buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    pub name: HeaderName,
    /// The name as written (e.g. `v`, `VIA`).
    pub raw_name: &'a [u8],
    /// The value, trimmed; a folded value keeps its inner CRLF SP (§7.3.1).
    pub value: &'a [u8],
    /// Position of the field among all fields of the message (0-based); usable with the
    /// index-based [`super::Edit`] operations.
    pub index: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_compact_forms() {
        assert_eq!(HeaderName::from_bytes(b"via"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"V"), HeaderName::Via);
        assert_eq!(HeaderName::from_bytes(b"call-id"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"i"), HeaderName::CallId);
        assert_eq!(HeaderName::from_bytes(b"CSEQ"), HeaderName::CSeq);
        assert_eq!(HeaderName::from_bytes(b"l"), HeaderName::ContentLength);
        assert_eq!(
            HeaderName::from_bytes(b"www-authenticate"),
            HeaderName::WwwAuthenticate
        );
        assert_eq!(HeaderName::from_bytes(b"X-Foo"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b"q"), HeaderName::Other);
        assert_eq!(HeaderName::from_bytes(b""), HeaderName::Other);
        for (n, h) in TABLE {
            assert_eq!(HeaderName::from_bytes(n.as_bytes()), *h);
            assert_eq!(h.as_str(), *n);
        }
    }

    #[test]
    fn header_match() {
        let m: HeaderMatch = "x-foo".into();
        assert!(m.matches(HeaderName::Other, b"X-Foo"));
        assert!(!m.matches(HeaderName::Via, b"Via"));
        let m: HeaderMatch = "v".into();
        assert_eq!(m, HeaderMatch::Known(HeaderName::Via));
        let m: HeaderMatch = HeaderName::Other.into();
        assert!(!m.matches(HeaderName::Other, b"X"));
    }
}
