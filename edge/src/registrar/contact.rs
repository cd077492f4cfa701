//! Reading a REGISTER (RFC 3261 §10.2, §10.3): the AoR from To, the Contact list with each
//! contact's expires (a Contact `expires` parameter wins over the Expires header, §10.2.1.1),
//! RFC 5626 `+sip.instance` / `reg-id`, and `q`.

use crate::sip::{HeaderName, Message, NameAddr, Scheme, Uri};

/// Why a REGISTER cannot be processed; answered 400 with this reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("Bad Request (invalid To)")]
    To,
    #[error("Bad Request (missing Call-ID)")]
    CallId,
    #[error("Bad Request (invalid CSeq)")]
    CSeq,
    #[error("Bad Request (invalid Contact)")]
    Contact,
    /// §10.3 step 6: `*` only alone and with `Expires: 0`.
    #[error("Bad Request (invalid wildcard Contact)")]
    Star,
}

/// One Contact of a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactSpec {
    /// The URI without `<>` and header parameters.
    pub uri: String,
    pub instance: Option<String>,
    pub reg_id: Option<u32>,
    pub q: Option<u16>,
    /// The `expires` parameter, when present.
    pub expires: Option<u32>,
}

/// The Contact header field(s) of a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contacts {
    /// No Contact: a query of the current bindings (§10.2.3).
    Query,
    /// `Contact: *` with `Expires: 0`: remove every binding (§10.2.2).
    Star,
    List(Vec<ContactSpec>),
}

/// The AoR of a REGISTER's To (§10.3 step 5): `sip:user@host` with the host lowercased and
/// every parameter, port and password dropped, so refreshes and lookups agree. `sips` maps to
/// `sip` (same resource, RFC 5630 §3); `tel` keeps its number.
pub fn aor_key(uri: &Uri<'_>) -> String {
    match uri.scheme {
        Scheme::Tel => format!("tel:{}", uri.user.unwrap_or("")),
        Scheme::Sip | Scheme::Sips => {
            let host = uri.host.to_string().to_ascii_lowercase();
            match uri.user {
                Some(u) => format!("sip:{u}@{host}"),
                None => format!("sip:{host}"),
            }
        }
    }
}

/// The domain part of an AoR key (for per-domain policy).
pub fn aor_domain(aor: &str) -> &str {
    match aor.rfind('@') {
        Some(at) => aor.get(at + 1..).unwrap_or(""),
        None => aor.strip_prefix("sip:").unwrap_or(""),
    }
}

/// The AoR of a REGISTER.
pub fn register_aor(req: &Message) -> Result<String, RegisterError> {
    let to = req.to().map_err(|_| RegisterError::To)?;
    let uri = to.uri().map_err(|_| RegisterError::To)?;
    Ok(aor_key(&uri))
}

/// The Expires header as delta-seconds (§20.19); `None` when absent or malformed (§20.19:
/// a malformed value SHOULD count as 3600; we let `default_expires` stand in for it).
pub fn expires_header(req: &Message) -> Option<u32> {
    req.header(HeaderName::Expires).and_then(parse_delta)
}

/// delta-seconds; values beyond 2**32-1 saturate (§20.19 allows any size).
fn parse_delta(v: &[u8]) -> Option<u32> {
    let v = trim(v);
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = v
        .iter()
        .take(12)
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some(u32::try_from(n).unwrap_or(u32::MAX))
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(s, |e| e + 1);
    v.get(s..e).unwrap_or(&[])
}

/// Strips `<>` and quotes around a `+sip.instance` value (RFC 5626 §4.1: `"<urn:uuid:...>"`).
pub fn clean_instance(v: &str) -> String {
    v.trim_matches('"')
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

/// Parses the Contact fields of a REGISTER.
pub fn register_contacts(req: &Message) -> Result<Contacts, RegisterError> {
    let values: Vec<&[u8]> = req.values(HeaderName::Contact).collect();
    if values.is_empty() {
        return Ok(Contacts::Query);
    }
    if values.iter().any(|v| trim(v) == b"*") {
        if values.len() != 1 || expires_header(req) != Some(0) {
            return Err(RegisterError::Star);
        }
        return Ok(Contacts::Star);
    }
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        let na = NameAddr::parse(v).map_err(|_| RegisterError::Contact)?;
        na.uri().map_err(|_| RegisterError::Contact)?;
        let uri = std::str::from_utf8(na.uri_raw).map_err(|_| RegisterError::Contact)?;
        // A malformed parameter counts as absent, like a malformed Expires header.
        let expires = na
            .param("expires")
            .flatten()
            .and_then(|v| parse_delta(v.as_bytes()));
        let reg_id = match na.param("reg-id") {
            None => None,
            Some(v) => Some(
                v.and_then(|v| v.parse().ok())
                    .ok_or(RegisterError::Contact)?,
            ),
        };
        out.push(ContactSpec {
            uri: uri.to_string(),
            instance: na.param("+sip.instance").flatten().map(clean_instance),
            reg_id,
            q: na.param("q").flatten().and_then(parse_q),
            expires,
        });
    }
    Ok(Contacts::List(out))
}

/// qvalue (§25.1) as thousandths.
fn parse_q(v: &str) -> Option<u16> {
    let f: f32 = v.parse().ok()?;
    (0.0..=1.0)
        .contains(&f)
        .then(|| (f * 1000.0).round() as u16)
}

/// Whether a request carries credentials (a retry after a 401/407, §22.2, §22.3).
pub fn has_credentials(req: &Message) -> bool {
    req.header(HeaderName::Authorization).is_some()
        || req.header(HeaderName::ProxyAuthorization).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{parse, Limits};
    use bytes::Bytes;

    fn reg(extra: &str) -> Message {
        let s = format!(
            "REGISTER sip:d.example SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1\r\n\
             From: <sip:alice@d.example>;tag=1\r\nTo: <sip:alice@D.Example:5060;transport=udp>\r\n\
             Call-ID: c1\r\nCSeq: 1 REGISTER\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        parse(Bytes::from(s), &Limits::default()).unwrap()
    }

    #[test]
    fn aor_is_normalised() {
        assert_eq!(register_aor(&reg("")).unwrap(), "sip:alice@d.example");
        assert_eq!(aor_domain("sip:alice@d.example"), "d.example");
        assert_eq!(aor_domain("sip:d.example"), "d.example");
    }

    #[test]
    fn contacts_with_params() {
        let m = reg("Contact: <sip:a@10.0.0.2:5060>;expires=30;+sip.instance=\"<urn:uuid:1>\";reg-id=2;q=0.5, sip:b@h\r\nExpires: 99\r\n");
        let Contacts::List(c) = register_contacts(&m).unwrap() else {
            panic!("list")
        };
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].uri, "sip:a@10.0.0.2:5060");
        assert_eq!(c[0].expires, Some(30));
        assert_eq!(c[0].instance.as_deref(), Some("urn:uuid:1"));
        assert_eq!(c[0].reg_id, Some(2));
        assert_eq!(c[0].q, Some(500));
        assert_eq!(c[1].expires, None);
        assert_eq!(expires_header(&m), Some(99));
    }

    #[test]
    fn star_query_and_errors() {
        assert_eq!(register_contacts(&reg("")).unwrap(), Contacts::Query);
        assert_eq!(
            register_contacts(&reg("Contact: *\r\nExpires: 0\r\n")).unwrap(),
            Contacts::Star
        );
        assert_eq!(
            register_contacts(&reg("Contact: *\r\n")),
            Err(RegisterError::Star)
        );
        assert_eq!(
            register_contacts(&reg("Contact: *, <sip:a@b>\r\nExpires: 0\r\n")),
            Err(RegisterError::Star)
        );
        let Contacts::List(c) =
            register_contacts(&reg("Contact: <sip:a@b>;expires=x\r\n")).unwrap()
        else {
            panic!("list")
        };
        assert_eq!(c[0].expires, None, "malformed counts as absent");
        assert_eq!(
            register_contacts(&reg("Contact: <sip:a b@c>\r\n")),
            Err(RegisterError::Contact)
        );
        assert_eq!(expires_header(&reg("Expires: -1\r\n")), None);
        assert_eq!(
            expires_header(&reg("Expires: 99999999999\r\n")),
            Some(u32::MAX)
        );
        assert!(has_credentials(&reg(
            "Authorization: Digest username=\"a\"\r\n"
        )));
        assert!(!has_credentials(&reg("")));
    }
}
