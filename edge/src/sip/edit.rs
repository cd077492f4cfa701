//! Re-serialising a message with a few changes (RFC 3261 §16.6 forwarding, §16.7 response
//! forwarding): unchanged fields are copied byte for byte, changed and new ones are written as
//! `Name: value CRLF`, and Content-Length is always made to match the body (§18.3).

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::header::{HeaderMatch, HeaderName};
use super::lex::{find_top_level, parse_u32, trim};
use super::message::Message;
use super::scan::{Span, StartLine};

/// Where the bytes of a name or value come from.
#[derive(Debug, Clone, Copy)]
enum Src {
    /// A span of the original message.
    Orig(Span),
    /// A span of the edit's scratch buffer.
    New(Span),
    Static(&'static str),
}

#[derive(Debug, Clone, Copy)]
struct EField {
    name: HeaderName,
    raw_name: Src,
    value: Src,
    /// The original field bytes (name through line end), while the field is unchanged.
    verbatim: Option<Span>,
}

/// A pending re-serialisation of `msg`. Operations address fields by name (first field of
/// that name, in the edited order) or by original index ([`super::HeaderRef::index`]).
pub struct Edit<'m> {
    msg: &'m Message,
    request_uri: Option<Span>,
    fields: SmallVec<[EField; 24]>,
    /// Bytes of new names, values, URI and body.
    scratch: Vec<u8>,
    body: Option<Span>,
}

impl<'m> Edit<'m> {
    pub fn new(msg: &'m Message) -> Edit<'m> {
        let fields = msg
            .fields
            .iter()
            .map(|f| EField {
                name: f.name,
                raw_name: Src::Orig(Span {
                    start: f.start,
                    end: f.name_end,
                }),
                value: Src::Orig(f.value),
                verbatim: Some(Span {
                    start: f.start,
                    end: f.end,
                }),
            })
            .collect();
        Edit {
            msg,
            request_uri: None,
            fields,
            scratch: Vec::new(),
            body: None,
        }
    }

    fn bytes(&self, s: Src) -> &[u8] {
        match s {
            Src::Orig(sp) => sp.get(&self.msg.buf),
            Src::New(sp) => sp.get(&self.scratch),
            Src::Static(s) => s.as_bytes(),
        }
    }

    fn store(&mut self, b: &[u8]) -> Src {
        let start = self.scratch.len();
        self.scratch.extend_from_slice(b);
        Src::New(Span::new(start, self.scratch.len()))
    }

    fn position(&self, m: HeaderMatch<'_>) -> Option<usize> {
        self.fields
            .iter()
            .position(|f| m.matches(f.name, self.bytes(f.raw_name)))
    }

    /// A new field; `None` for `HeaderName::Other`, which names no header to write.
    fn new_field(&mut self, m: HeaderMatch<'_>, value: &[u8]) -> Option<EField> {
        let (name, raw_name) = match m {
            HeaderMatch::Known(HeaderName::Other) => return None,
            HeaderMatch::Known(h) => (h, Src::Static(h.as_str())),
            HeaderMatch::Other(s) => (HeaderName::Other, self.store(s.as_bytes())),
        };
        let value = self.store(trim(value));
        Some(EField {
            name,
            raw_name,
            value,
            verbatim: None,
        })
    }

    /// Replaces the Request-URI (requests only; ignored for responses).
    pub fn set_request_uri(&mut self, uri: &[u8]) {
        if self.msg.is_request() {
            let Src::New(sp) = self.store(uri) else {
                return;
            };
            self.request_uri = Some(sp);
        }
    }

    /// Adds a field above the first field of that name, or right after the start line when
    /// there is none (Via §16.6 step 8, Record-Route §16.6 step 4).
    pub fn prepend<'k>(&mut self, name: impl Into<HeaderMatch<'k>>, value: &[u8]) {
        let m = name.into();
        let at = self.position(m).unwrap_or(0);
        if let Some(f) = self.new_field(m, value) {
            self.fields.insert(at, f);
        }
    }

    /// Adds a field after the last field of the header section (before a Content-Length
    /// written by this edit).
    pub fn append<'k>(&mut self, name: impl Into<HeaderMatch<'k>>, value: &[u8]) {
        if let Some(f) = self.new_field(name.into(), value) {
            self.fields.push(f);
        }
    }

    /// Inserts a field before the field with original index `index` (or at the end).
    pub fn insert_before<'k>(
        &mut self,
        index: usize,
        name: impl Into<HeaderMatch<'k>>,
        value: &[u8],
    ) {
        let at = self.current_pos(index).unwrap_or(self.fields.len());
        if let Some(f) = self.new_field(name.into(), value) {
            self.fields.insert(at, f);
        }
    }

    /// Position in the edited list of the field that had original index `index`.
    fn current_pos(&self, index: usize) -> Option<usize> {
        let orig = self.msg.field_span(index)?;
        self.fields
            .iter()
            .position(|f| matches!(f.raw_name, Src::Orig(sp) if sp.start == orig.start))
    }

    /// The first value of that name as [`Message::values`] sees it: for a list header the
    /// first non-empty comma-separated part of the first field that has one (empty parts and
    /// empty fields are skipped), else the first field whole. Returns the field's position and
    /// the part's range in its value (untrimmed, without the separating comma).
    fn first_value(&self, m: HeaderMatch<'_>) -> Option<(usize, usize, usize)> {
        let list = m.is_list();
        for (pos, f) in self.fields.iter().enumerate() {
            if !m.matches(f.name, self.bytes(f.raw_name)) {
                continue;
            }
            let v = self.bytes(f.value);
            if !list {
                return Some((pos, 0, v.len()));
            }
            let mut start = 0;
            while start <= v.len() {
                let rest = v.get(start..).unwrap_or(&[]);
                let end = start + find_top_level(rest, b',');
                if !trim(v.get(start..end).unwrap_or(&[])).is_empty() {
                    return Some((pos, start, end));
                }
                start = end + 1;
            }
        }
        None
    }

    /// Drops the first comma-separated value of that name (see [`Edit::first_value`]), or the
    /// whole field when nothing but empty parts is left in it (top Via on responses §16.7
    /// step 3, top Route §16.4). Returns false when there was no such value. A field that is
    /// not a list (From, ...) is removed whole.
    pub fn remove_first_value<'k>(&mut self, name: impl Into<HeaderMatch<'k>>) -> bool {
        let m = name.into();
        let Some((pos, _, end)) = self.first_value(m) else {
            return false;
        };
        let Some(f) = self.fields.get(pos).copied() else {
            return false;
        };
        let v = self.bytes(f.value);
        let rest = trim(v.get(end + 1..).unwrap_or(&[]));
        if rest.is_empty() {
            self.fields.remove(pos);
            return true;
        }
        // `rest` is a sub-slice of the current value source: keep pointing into it.
        let offset = rest.as_ptr() as usize - v.as_ptr() as usize;
        let value = match f.value {
            Src::Orig(sp) => Src::Orig(sub(sp, offset, rest.len())),
            Src::New(sp) => Src::New(sub(sp, offset, rest.len())),
            Src::Static(s) => Src::Static(s.get(offset..offset + rest.len()).unwrap_or("")),
        };
        if let Some(f) = self.fields.get_mut(pos) {
            f.value = value;
            f.verbatim = None;
        }
        true
    }

    /// Replaces the first comma-separated value of that name (see [`Edit::first_value`]; e.g.
    /// the Contact a NAT fix rewrites); appends a field when there is none.
    pub fn replace_first_value<'k>(&mut self, name: impl Into<HeaderMatch<'k>>, value: &[u8]) {
        let m = name.into();
        let Some((pos, _, end)) = self.first_value(m) else {
            self.append(m, value);
            return;
        };
        let Some(f) = self.fields.get(pos).copied() else {
            return;
        };
        let old = self.bytes(f.value);
        let mut new = trim(value).to_vec();
        if let Some(rest) = old.get(end..).filter(|r| !r.is_empty()) {
            new.extend_from_slice(rest);
        }
        let value = self.store(&new);
        if let Some(f) = self.fields.get_mut(pos) {
            f.value = value;
            f.verbatim = None;
        }
    }

    /// Replaces the whole value of the field with original index `index`.
    pub fn replace_at(&mut self, index: usize, value: &[u8]) {
        if let Some(pos) = self.current_pos(index) {
            let value = self.store(trim(value));
            if let Some(f) = self.fields.get_mut(pos) {
                f.value = value;
                f.verbatim = None;
            }
        }
    }

    /// Removes the field with original index `index`.
    pub fn remove_at(&mut self, index: usize) {
        if let Some(pos) = self.current_pos(index) {
            self.fields.remove(pos);
        }
    }

    /// Removes every field of that name.
    pub fn remove_all<'k>(&mut self, name: impl Into<HeaderMatch<'k>>) {
        let m = name.into();
        let msg = self.msg;
        let scratch = std::mem::take(&mut self.scratch);
        self.fields.retain(|f| {
            let raw = match f.raw_name {
                Src::Orig(sp) => sp.get(&msg.buf),
                Src::New(sp) => sp.get(&scratch),
                Src::Static(s) => s.as_bytes(),
            };
            !m.matches(f.name, raw)
        });
        self.scratch = scratch;
    }

    /// Sets Max-Forwards (§16.6 step 3), adding the field when absent.
    pub fn set_max_forwards(&mut self, n: u32) {
        let mut buf = itoa_buf();
        let s = fmt_u32(&mut buf, n);
        self.replace_first_value(HeaderName::MaxForwards, s);
    }

    /// Replaces the body. `Some(ct)` sets Content-Type; `None` keeps the existing one, or
    /// removes it when the new body is empty. Content-Length follows in [`Edit::finish`].
    pub fn set_body(&mut self, content_type: Option<&[u8]>, body: &[u8]) {
        let Src::New(sp) = self.store(body) else {
            return;
        };
        self.body = Some(sp);
        match content_type {
            Some(ct) => self.replace_first_value(HeaderName::ContentType, ct),
            None if body.is_empty() => self.remove_all(HeaderName::ContentType),
            None => {}
        }
    }

    /// Writes the message into one buffer.
    pub fn finish(self) -> Bytes {
        let buf = &self.msg.buf;
        let body = match self.body {
            Some(sp) => sp.get(&self.scratch),
            None => self.msg.body(),
        };
        let mut out = BytesMut::with_capacity(buf.len() + self.scratch.len() + 32);
        // Start line.
        let line = Span {
            start: self.msg.start,
            end: self.msg.line_end,
        };
        match (&self.msg.start_line, self.request_uri) {
            (StartLine::Request { uri, .. }, Some(new_uri)) => {
                out.put_slice(
                    Span {
                        start: line.start,
                        end: uri.start,
                    }
                    .get(buf),
                );
                out.put_slice(new_uri.get(&self.scratch));
                out.put_slice(
                    Span {
                        start: uri.end,
                        end: line.end,
                    }
                    .get(buf),
                );
            }
            _ => out.put_slice(line.get(buf)),
        }
        let mut len_buf = itoa_buf();
        let body_len = fmt_u32(&mut len_buf, body.len() as u32);
        let mut wrote_length = false;
        for f in &self.fields {
            if f.name == HeaderName::ContentLength {
                if wrote_length {
                    continue;
                }
                wrote_length = true;
                if f.verbatim.is_some() && parse_u32(self.bytes(f.value)) == Some(body.len() as u32)
                {
                    out.put_slice(f.verbatim.map_or(&[][..], |sp| sp.get(buf)));
                } else {
                    out.put_slice(self.bytes(f.raw_name));
                    out.put_slice(b": ");
                    out.put_slice(body_len);
                    out.put_slice(b"\r\n");
                }
                continue;
            }
            match f.verbatim {
                Some(sp) => out.put_slice(sp.get(buf)),
                None => {
                    out.put_slice(self.bytes(f.raw_name));
                    out.put_slice(b": ");
                    out.put_slice(self.bytes(f.value));
                    out.put_slice(b"\r\n");
                }
            }
        }
        if !wrote_length {
            out.put_slice(b"Content-Length: ");
            out.put_slice(body_len);
            out.put_slice(b"\r\n");
        }
        let blank = self.msg.blank.get(buf);
        out.put_slice(if blank.is_empty() { b"\r\n" } else { blank });
        out.put_slice(body);
        out.freeze()
    }
}

fn sub(sp: Span, offset: usize, len: usize) -> Span {
    let start = sp.start as usize + offset;
    Span::new(start, start + len)
}

fn itoa_buf() -> [u8; 10] {
    [0; 10]
}

/// Formats `n` in decimal into `buf` without allocating.
fn fmt_u32(buf: &mut [u8; 10], mut n: u32) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> Message {
        crate::sip::parse(Bytes::from(s.replace('\n', "\r\n")), &Default::default())
            .expect("parses")
    }

    fn reparse(b: Bytes) -> Message {
        crate::sip::parse(b, &Default::default()).expect("output parses")
    }

    fn vias(m: &Message) -> Vec<String> {
        m.values(HeaderName::Via)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// Fuzz finding (sip_message): `Via: ,<ours>` — an empty list element before the top Via.
    /// The response edit removed the empty element instead of the top Via, so a response went
    /// upstream with the edge's own Via still on top.
    #[test]
    fn fuzz_remove_first_value_skips_empty_list_elements() {
        let m = msg(
            "SIP/2.0 180 Ringing\nVia: ,SIP/2.0/UDP edge;branch=z9hG4bK1\n\
Via: , ,\nVia: SIP/2.0/UDP phone;branch=z9hG4bK2, SIP/2.0/UDP p2;branch=z9hG4bK3\n\
From: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\nCall-ID: x\nCSeq: 1 INVITE\n\n",
        );
        let mut e = Edit::new(&m);
        assert!(e.remove_first_value(HeaderName::Via));
        let out = reparse(e.finish());
        assert_eq!(
            vias(&out),
            [
                "SIP/2.0/UDP phone;branch=z9hG4bK2",
                "SIP/2.0/UDP p2;branch=z9hG4bK3"
            ]
        );
        // An empty field before the first value is skipped the same way.
        let m = msg(
            "SIP/2.0 180 Ringing\nVia: ,\nVia: SIP/2.0/UDP edge, SIP/2.0/UDP phone\n\
From: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\nCall-ID: x\nCSeq: 1 INVITE\n\n",
        );
        let mut e = Edit::new(&m);
        assert!(e.remove_first_value(HeaderName::Via));
        let out = reparse(e.finish());
        assert_eq!(vias(&out), ["SIP/2.0/UDP phone"]);
    }

    /// The same for the received/rport stamp on a request's top Via: the stamped value used
    /// to be inserted before the empty element, duplicating the top Via.
    #[test]
    fn fuzz_replace_first_value_skips_empty_list_elements() {
        let m = msg(
            "OPTIONS sip:a@b SIP/2.0\nVia: , SIP/2.0/UDP phone;rport, SIP/2.0/UDP p2\n\
From: <sip:a@b>;tag=1\nTo: <sip:c@d>\nCall-ID: x\nCSeq: 1 OPTIONS\n\n",
        );
        let mut e = Edit::new(&m);
        e.replace_first_value(
            HeaderName::Via,
            b"SIP/2.0/UDP phone;rport=5;received=1.2.3.4",
        );
        let out = reparse(e.finish());
        assert_eq!(
            vias(&out),
            [
                "SIP/2.0/UDP phone;rport=5;received=1.2.3.4",
                "SIP/2.0/UDP p2"
            ]
        );
    }

    #[test]
    fn formats_numbers() {
        let mut b = itoa_buf();
        assert_eq!(fmt_u32(&mut b, 0), b"0");
        let mut b = itoa_buf();
        assert_eq!(fmt_u32(&mut b, 4294967295), b"4294967295");
    }
}
