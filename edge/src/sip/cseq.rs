//! CSeq (RFC 3261 §8.1.1.5, §20.16): `1*DIGIT LWS Method`.

use super::error::ParseError;
use super::lex::{is_lws, parse_u32, trim};
use super::method::Method;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    /// Parses a CSeq value. The number must be below 2**31 (§8.1.1.5).
    pub fn parse(v: &[u8]) -> Result<CSeq, ParseError> {
        const BAD: &str = "Bad Request (invalid CSeq)";
        let v = trim(v);
        let sp = v
            .iter()
            .position(|&b| is_lws(b))
            .ok_or(ParseError::bad(BAD))?;
        let seq = parse_u32(&v[..sp])
            .filter(|&n| n < 1 << 31)
            .ok_or(ParseError::bad(BAD))?;
        let method = Method::from_bytes(trim(&v[sp..])).ok_or(ParseError::bad(BAD))?;
        Ok(CSeq { seq, method })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq() {
        assert_eq!(
            CSeq::parse(b" 314159  INVITE ").unwrap(),
            CSeq {
                seq: 314159,
                method: Method::Invite
            }
        );
        assert_eq!(CSeq::parse(b"1\r\n ACK").unwrap().method, Method::Ack);
        for bad in [
            &b"INVITE"[..],
            b"1",
            b"x INVITE",
            b"2147483648 BYE",
            b"1 IN VITE",
            b"",
        ] {
            assert!(CSeq::parse(bad).is_err(), "{:?}", bad);
        }
    }
}
