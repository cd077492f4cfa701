//! Transaction keys: how a message finds its transaction (RFC 3261 §17.1.3, §17.2.3).
//!
//! The keys are built by the caller from parsed header values; this module never parses. The
//! branch is compared exactly as given (RFC 3261 branches start with the magic cookie
//! `z9hG4bK`; a branch without it is still used as the key, no RFC 2543 fallback matching).

use std::fmt;
use std::hash::{Hash, Hasher};

/// The method of a request (or the CSeq method of a response), as far as the transaction layer
/// cares. Methods are case-sensitive (RFC 3261 §7.1): `invite` is an unknown method, not INVITE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Cancel,
    /// Any other method, by name (REGISTER, OPTIONS, BYE, …): all run non-INVITE transactions.
    Other(Box<str>),
}

impl Method {
    /// The method named `name` (case-sensitive).
    pub fn from_name(name: &str) -> Method {
        match name {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "CANCEL" => Method::Cancel,
            other => Method::Other(other.into()),
        }
    }

    /// Bytes this method owns on the heap (an unknown method's name).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Method::Other(name) => name.len(),
            _ => 0,
        }
    }

    /// The method name as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Cancel => "CANCEL",
            Method::Other(name) => name,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Client transaction key (§17.1.3): the branch of the top Via the transaction put on its
/// request, plus the CSeq method. A response matches when its top Via branch and its CSeq method
/// equal these; the method is needed because a CANCEL carries the branch of the INVITE it
/// cancels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    branch: Box<str>,
    method: Method,
}

impl ClientKey {
    /// `branch`: top Via branch; `method`: CSeq method (for a request: its method).
    pub fn new(branch: &str, method: Method) -> ClientKey {
        ClientKey {
            branch: branch.into(),
            method,
        }
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Bytes this key owns on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.branch.len() + self.method.heap_bytes()
    }
}

/// Server transaction key (§17.2.3): top Via branch, top Via sent-by (`host[:port]`) and the
/// request method, where an ACK takes the method INVITE so that it finds the INVITE server
/// transaction whose non-2xx response it acknowledges. A CANCEL keeps its own method: it runs its
/// own transaction (§9.2); [`ServerKey::cancelled_invite`] gives the key of the INVITE it
/// targets.
///
/// The sent-by is compared after ASCII lowercasing (hosts are case-insensitive); the caller
/// should pass it as written in the Via (with the port if present) so that two requests from the
/// same hop compare equal.
#[derive(Debug, Clone)]
pub struct ServerKey {
    branch: Box<str>,
    sent_by: Box<str>,
    /// INVITE for both INVITE and ACK.
    method: Method,
    /// The request was an ACK. Not part of equality or hash: an ACK key equals its INVITE's key.
    ack: bool,
}

impl ServerKey {
    /// Key of a received request: top Via `branch` and `sent_by`, and the request `method`.
    pub fn new(branch: &str, sent_by: &str, method: Method) -> ServerKey {
        let ack = method == Method::Ack;
        ServerKey {
            branch: branch.into(),
            sent_by: sent_by.to_ascii_lowercase().into_boxed_str(),
            method: if ack { Method::Invite } else { method },
            ack,
        }
    }

    /// The key of the INVITE server transaction a CANCEL with this key targets (§9.2: same
    /// matching as §17.2.3 except the method). `None` if this key is not a CANCEL's.
    pub fn cancelled_invite(&self) -> Option<ServerKey> {
        (self.method == Method::Cancel).then(|| ServerKey {
            branch: self.branch.clone(),
            sent_by: self.sent_by.clone(),
            method: Method::Invite,
            ack: false,
        })
    }

    /// The request this key was built from is an ACK.
    pub fn is_ack(&self) -> bool {
        self.ack
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    pub fn sent_by(&self) -> &str {
        &self.sent_by
    }

    /// The matching method: INVITE for an ACK.
    pub fn method(&self) -> &Method {
        &self.method
    }
}

impl PartialEq for ServerKey {
    fn eq(&self, other: &Self) -> bool {
        self.branch == other.branch && self.sent_by == other.sent_by && self.method == other.method
    }
}

impl Eq for ServerKey {}

impl Hash for ServerKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.branch.hash(state);
        self.sent_by.hash(state);
        self.method.hash(state);
    }
}

impl ServerKey {
    /// Bytes this key owns on the heap.
    pub fn heap_bytes(&self) -> usize {
        self.branch.len() + self.sent_by.len() + self.method.heap_bytes()
    }
}
