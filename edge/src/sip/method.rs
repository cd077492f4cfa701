//! Request methods (RFC 3261 §7.1, §27.4; PRACK 3262, SUBSCRIBE/NOTIFY 6665, REFER 3515,
//! MESSAGE 3428, PUBLISH 3903, INFO 6086, UPDATE 3311).

use std::fmt;

use super::lex::is_token;

/// A SIP method. Method names are case-sensitive (§7.1), so `invite` is `Other("invite")`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    Publish,
    Other(Box<str>),
}

impl Method {
    /// Parses a method token; `None` if it is not a token (§25.1).
    pub fn from_bytes(b: &[u8]) -> Option<Method> {
        Some(match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"REGISTER" => Method::Register,
            b"OPTIONS" => Method::Options,
            b"INFO" => Method::Info,
            b"UPDATE" => Method::Update,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            other => {
                if !is_token(other) {
                    return None;
                }
                // A token is ASCII, so this conversion cannot fail.
                Method::Other(std::str::from_utf8(other).ok()?.into())
            }
        })
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_other_methods() {
        assert_eq!(Method::from_bytes(b"INVITE"), Some(Method::Invite));
        assert_eq!(
            Method::from_bytes(b"invite"),
            Some(Method::Other("invite".into()))
        );
        assert_eq!(Method::from_bytes(b"FOO").unwrap().as_str(), "FOO");
        assert_eq!(Method::from_bytes(b"BAD METHOD"), None);
        assert_eq!(Method::from_bytes(b""), None);
    }
}
