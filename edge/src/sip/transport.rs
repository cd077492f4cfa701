//! Transport tokens of Via (RFC 3261 §18, §20.42; WS/WSS RFC 7118).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Sctp,
    TlsSctp,
    Ws,
    Wss,
}

impl Transport {
    /// Case-insensitive; `None` for a transport we do not know.
    pub fn parse(s: &[u8]) -> Option<Transport> {
        const ALL: [Transport; 7] = [
            Transport::Udp,
            Transport::Tcp,
            Transport::Tls,
            Transport::Sctp,
            Transport::TlsSctp,
            Transport::Ws,
            Transport::Wss,
        ];
        ALL.into_iter()
            .find(|t| t.as_str().as_bytes().eq_ignore_ascii_case(s))
    }

    /// The Via spelling ("UDP", "TLS", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Sctp => "SCTP",
            Transport::TlsSctp => "TLS-SCTP",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }

    /// Default port when a URI or Via names none (§19.1.2, §18.2.2): 5061 over TLS.
    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls | Transport::TlsSctp => 5061,
            _ => 5060,
        }
    }

    /// Reliable transports need no retransmission (§17.1.1.2) and carry Content-Length framing.
    pub fn is_reliable(self) -> bool {
        self != Transport::Udp
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
