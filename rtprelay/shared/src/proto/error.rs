//! Error numbers (`E<n>` replies) and the codec's parse error.

use std::fmt;

/// An rtpproxy error number, answered as `E<n>`.
///
/// The numbering follows rtpproxy's ranges: 0 unknown command, 1 argument count, 2 modifiers,
/// 5..=19 parse errors, 31..=37 invalid argument, 50 session unknown, 60..=69 command failures,
/// 81..=89 resources exhausted, 98 overload. rtpengine answers `E8` for everything, so a client
/// must treat any `E` reply as failure and use the number only for diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    pub const UNKNOWN_COMMAND: ErrorCode = ErrorCode(0);
    pub const ARGUMENT_COUNT: ErrorCode = ErrorCode(1);
    pub const MODIFIERS: ErrorCode = ErrorCode(2);
    /// A port argument that is not a decimal number.
    pub const PARSE_PORT: ErrorCode = ErrorCode(5);
    /// An address argument that is not a numeric IPv4/IPv6 address.
    pub const PARSE_ADDRESS: ErrorCode = ErrorCode(6);
    /// A tag whose `;n` stream number is not a number, or an empty tag.
    pub const PARSE_TAG: ErrorCode = ErrorCode(7);
    /// A numeric argument (e.g. the `VF` date) that is not a number.
    pub const PARSE_NUMBER: ErrorCode = ErrorCode(9);
    /// Bytes that are not printable ASCII/UTF-8 text.
    pub const PARSE_ENCODING: ErrorCode = ErrorCode(10);
    /// An empty Call-ID or branch.
    pub const PARSE_CALL_ID: ErrorCode = ErrorCode(11);
    /// Port number above 65535.
    pub const INVALID_PORT: ErrorCode = ErrorCode(31);
    /// The `6` modifier with an IPv4 address, or a local address of the wrong family.
    pub const INVALID_ADDRESS_FAMILY: ErrorCode = ErrorCode(32);
    /// `l<addr>`/`e`/`i` name an address the relay does not have.
    pub const INVALID_LOCAL_ADDRESS: ErrorCode = ErrorCode(33);
    /// An unknown statistic name in `Q` or `G`.
    pub const INVALID_STAT: ErrorCode = ErrorCode(34);
    /// `U`/`L` whose address is one of the relay's own media sockets (a call anchored twice
    /// on the same relay): refused, as the leg would loop media back into the relay.
    pub const MEDIA_LOOP: ErrorCode = ErrorCode(35);
    pub const SESSION_UNKNOWN: ErrorCode = ErrorCode(50);
    /// `P`/`S` (play, stop play): not supported by rtprelay.
    pub const PLAYER_FAILED: ErrorCode = ErrorCode(60);
    /// The media plane could not report a session's counters.
    pub const QUERY_FAILED: ErrorCode = ErrorCode(62);
    /// `R`/`N`/`C` (record, stop record, copy): not supported by rtprelay.
    pub const RECORD_FAILED: ErrorCode = ErrorCode(65);
    /// Global statistics unavailable.
    pub const STATS_FAILED: ErrorCode = ErrorCode(68);
    /// No free media port pair.
    pub const NO_PORTS: ErrorCode = ErrorCode(81);
    /// A media socket could not be bound.
    pub const BIND_FAILED: ErrorCode = ErrorCode(82);
    /// The call already holds `control.max_streams_per_call` streams.
    pub const STREAM_QUOTA: ErrorCode = ErrorCode(83);
    /// The client already holds `control.max_sessions_per_client` calls.
    pub const CLIENT_QUOTA: ErrorCode = ErrorCode(84);
    /// Session limit reached or media plane not answering.
    pub const OVERLOAD: ErrorCode = ErrorCode(98);
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E{}", self.0)
    }
}

/// Why a command (or reply) could not be parsed. [`ProtoError::code`] is what to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtoError {
    #[error("empty command")]
    Empty,
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    #[error("wrong number of arguments for {command}: {got}")]
    ArgumentCount { command: char, got: usize },
    #[error("bad modifiers {0:?}")]
    Modifiers(String),
    #[error("bad port {0:?}")]
    Port(String),
    #[error("port {0} out of range")]
    PortRange(u32),
    #[error("bad address {0:?}")]
    Address(String),
    #[error("address family does not match the `6` modifier: {0}")]
    AddressFamily(String),
    #[error("bad tag {0:?}")]
    Tag(String),
    #[error("bad Call-ID {0:?}")]
    CallId(String),
    #[error("bad number {0:?}")]
    Number(String),
    #[error("not ASCII text")]
    Encoding,
    #[error("no cookie before the command")]
    NoCookie,
    #[error("bad reply {0:?}")]
    Reply(String),
}

impl ProtoError {
    /// The `E<n>` number the server answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtoError::Empty | ProtoError::UnknownCommand(_) => ErrorCode::UNKNOWN_COMMAND,
            ProtoError::ArgumentCount { .. } | ProtoError::NoCookie => ErrorCode::ARGUMENT_COUNT,
            ProtoError::Modifiers(_) => ErrorCode::MODIFIERS,
            ProtoError::Port(_) => ErrorCode::PARSE_PORT,
            ProtoError::PortRange(_) => ErrorCode::INVALID_PORT,
            ProtoError::Address(_) => ErrorCode::PARSE_ADDRESS,
            ProtoError::AddressFamily(_) => ErrorCode::INVALID_ADDRESS_FAMILY,
            ProtoError::Tag(_) => ErrorCode::PARSE_TAG,
            ProtoError::CallId(_) => ErrorCode::PARSE_CALL_ID,
            ProtoError::Number(_) | ProtoError::Reply(_) => ErrorCode::PARSE_NUMBER,
            ProtoError::Encoding => ErrorCode::PARSE_ENCODING,
        }
    }
}
