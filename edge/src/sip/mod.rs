//! SIP messages (RFC 3261 §7, §20, §25): a zero-copy parser, typed views of the header values
//! the edge needs, stream framing and a serializer that copies unchanged bytes verbatim.
//!
//! [`Message`] is one `Bytes` buffer plus spans for the start line, each header field and the
//! body; [`Via`], [`NameAddr`], [`Uri`] and [`CSeq`] are parsed on demand and borrow from it.
//! [`Edit`] writes a forwarded copy with a few fields changed; [`response_to`] builds a
//! response from a request. No IO, no clock.

mod cseq;
mod edit;
mod error;
mod framing;
mod header;
mod lex;
mod message;
mod method;
mod name_addr;
mod response;
mod scan;
mod transport;
mod uri;
mod validate;
mod via;

pub use cseq::CSeq;
pub use edit::Edit;
pub use error::{ParseError, ParseErrorKind};
pub use framing::frame_len;
pub use header::{HeaderMatch, HeaderName, HeaderRef};
pub use message::{parse, Limits, Message};
pub use method::Method;
pub use name_addr::NameAddr;
pub use response::response_to;
pub use transport::Transport;
pub use uri::{Host, Scheme, Uri};
pub use via::Via;
