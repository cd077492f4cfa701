//! Message framing on stream transports (RFC 3261 §18.3): the header section ends at the
//! first empty line and the body is exactly Content-Length bytes, which is mandatory here.

use super::error::{ParseError, ParseErrorKind};
use super::message::{content_length_of, Limits};
use super::scan::scan;

/// Length of the first complete message at the start of `buf`.
///
/// `Ok(None)`: more bytes are needed. `Ok(Some(n))`: `buf[..n]` is one message (head plus
/// Content-Length body); hand it to [`super::parse`]. `Err`: the stream cannot be framed
/// (no Content-Length, bad Content-Length, message larger than the limit, bad start line);
/// the connection should be closed. `buf` must start at a start line: CRLF keep-alives
/// (RFC 5626 §3.5.1) are stripped by the caller.
pub fn frame_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, ParseError> {
    if matches!(buf.first(), Some(b'\r' | b'\n')) {
        return Err(ParseError::start_line("leading CRLF before start line"));
    }
    let max = limits.max_message_bytes.min(u32::MAX as usize);
    let window = &buf[..buf.len().min(max)];
    let too_large =
        || ParseError::new(ParseErrorKind::TooLarge, "Message Too Large").with_respondable(false);
    let Some(head) = scan(window, 0, limits.max_headers)? else {
        return if buf.len() >= max {
            Err(too_large())
        } else {
            Ok(None)
        };
    };
    let Some(blank) = head.blank else {
        return if buf.len() >= max {
            Err(too_large())
        } else {
            Ok(None)
        };
    };
    let cl = content_length_of(window, &head.fields)
        .map_err(|e| e.with_respondable(false))?
        .ok_or_else(|| {
            ParseError::new(
                ParseErrorKind::ContentLength,
                "Bad Request (missing Content-Length)",
            )
            .with_respondable(false)
        })?;
    let total = blank.end as usize + cl as usize;
    if total > max {
        return Err(too_large());
    }
    Ok((total <= buf.len()).then_some(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"MESSAGE sip:a@b SIP/2.0\r\nl: 5\r\n\r\nhello";

    #[test]
    fn frames_incrementally() {
        let l = Limits::default();
        for cut in 0..MSG.len() {
            assert_eq!(frame_len(&MSG[..cut], &l).unwrap(), None, "cut {cut}");
        }
        assert_eq!(frame_len(MSG, &l).unwrap(), Some(MSG.len()));
        let mut two = MSG.to_vec();
        two.extend_from_slice(MSG);
        assert_eq!(frame_len(&two, &l).unwrap(), Some(MSG.len()));
    }

    #[test]
    fn stream_errors() {
        let l = Limits::default();
        let e = frame_len(b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\n\r\n", &l).unwrap_err();
        assert!(e.reason.contains("missing Content-Length"));
        assert!(frame_len(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: x\r\n\r\n", &l).is_err());
        assert!(frame_len(b"\r\nOPTIONS", &l).is_err());
        let small = Limits {
            max_message_bytes: 36,
            max_headers: 8,
        };
        let e = frame_len(MSG, &small).unwrap_err();
        assert_eq!(e.status_code(), 513);
        let e = frame_len(&[b'A'; 64], &small).unwrap_err();
        assert_eq!(e.status_code(), 513);
        assert_eq!(frame_len(&[b'A'; 20], &small).unwrap(), None);
        let e = frame_len(b"OPTIONS sip:a SIP/2.0\r\nl: 1000\r\n\r\n", &small).unwrap_err();
        assert_eq!(e.status_code(), 513);
    }
}
