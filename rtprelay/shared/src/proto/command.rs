//! Commands: the request half of the protocol.
//!
//! Argument layouts (rtpproxy's, as Kamailio's and OpenSIPS' `rtpproxy` modules send them):
//! ```text
//! V                                   VF <YYYYMMDD>
//! U<mods> callid[;branch] addr port from-tag[;n] [to-tag[;n] [notify-socket [notify-tag]]]
//! L<mods> callid[;branch] addr port from-tag[;n] to-tag[;n] [notify-socket [notify-tag]]
//! D[w]    callid[;branch] from-tag [to-tag]
//! Q[v]    callid[;branch] from-tag [to-tag [stat ...]]
//! I[b]    G[v] [stat ...]    X
//! R N P S C ...                       (recorder/player/copy: recognised, refused)
//! ```

use super::error::ProtoError;
use super::modifiers::{parse_stream_modifiers, simple_flags, Modifiers};
use super::scan;
use std::fmt::Write as _;
use std::net::IpAddr;

/// A SIP Call-ID, optionally followed by `;branch` (Kamailio's via-branch / extra id, used to
/// keep the media of parallel forks apart). Call-IDs cannot contain `;` (RFC 3261 §25.1 `word`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallId {
    pub id: String,
    pub branch: Option<String>,
}

impl CallId {
    pub fn new(id: impl Into<String>) -> Self {
        CallId {
            id: id.into(),
            branch: None,
        }
    }

    fn parse(s: &str) -> Result<Self, ProtoError> {
        let bad = || ProtoError::CallId(s.to_owned());
        let (id, branch) = match s.split_once(';') {
            Some((id, br)) if !br.is_empty() => (id, Some(br.to_owned())),
            Some(_) => return Err(bad()),
            None => (s, None),
        };
        if id.is_empty() {
            return Err(bad());
        }
        Ok(CallId {
            id: id.to_owned(),
            branch,
        })
    }

    fn encode(&self, out: &mut String) {
        out.push_str(&self.id);
        if let Some(b) = &self.branch {
            out.push(';');
            out.push_str(b);
        }
    }
}

/// A dialog tag (From or To tag), optionally with the media stream number `;n` (1-based,
/// the position of the m= line).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tag {
    pub tag: String,
    pub stream: Option<u32>,
}

impl Tag {
    pub fn new(tag: impl Into<String>) -> Self {
        Tag {
            tag: tag.into(),
            stream: None,
        }
    }

    pub fn with_stream(tag: impl Into<String>, stream: u32) -> Self {
        Tag {
            tag: tag.into(),
            stream: Some(stream),
        }
    }

    /// The stream number, 1 when absent (rtpproxy's default).
    pub fn stream_number(&self) -> u32 {
        self.stream.unwrap_or(1)
    }

    fn parse(s: &str) -> Result<Self, ProtoError> {
        let bad = || ProtoError::Tag(s.to_owned());
        let (tag, stream) = match s.split_once(';') {
            Some((t, n)) => (t, Some(scan::decimal(n).ok_or_else(bad)?)),
            None => (s, None),
        };
        if tag.is_empty() {
            return Err(bad());
        }
        Ok(Tag {
            tag: tag.to_owned(),
            stream,
        })
    }

    fn encode(&self, out: &mut String) {
        out.push_str(&self.tag);
        if let Some(n) = self.stream {
            let _ = write!(out, ";{n}");
        }
    }
}

/// rtpproxy 20081224 timeout notification target (accepted, not acted upon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    pub socket: String,
    pub tag: Option<String>,
}

/// Arguments of `U` (offer: create/update) and `L` (answer: look up and complete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub modifiers: Modifiers,
    pub call: CallId,
    /// The media address from the SDP of the party this command is about (U: the from-tag
    /// party; L: the to-tag party). `0.0.0.0`/`::` means hold or unknown.
    pub addr: IpAddr,
    pub port: u16,
    pub from_tag: Tag,
    /// Absent only in an initial `U` (no To tag yet).
    pub to_tag: Option<Tag>,
    /// Only encoded when `to_tag` is present (it is positional after it).
    pub notify: Option<Notify>,
}

impl Update {
    /// An offer/answer about `from_tag`'s party with no modifiers, no To tag, no notify;
    /// set the public fields for the rest.
    pub fn new(call: CallId, addr: IpAddr, port: u16, from_tag: Tag) -> Self {
        Update {
            modifiers: Modifiers::default(),
            call,
            addr,
            port,
            from_tag,
            to_tag: None,
            notify: None,
        }
    }

    /// The stream number of this command (the from-tag's `;n`, else the to-tag's, else 1).
    pub fn stream_number(&self) -> u32 {
        self.from_tag
            .stream
            .or(self.to_tag.as_ref().and_then(|t| t.stream))
            .unwrap_or(1)
    }
}

/// `D`: delete a call (from-tag only) or one dialog of it (with to-tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delete {
    pub weak: bool,
    pub call: CallId,
    pub from_tag: Tag,
    pub to_tag: Option<Tag>,
}

/// `Q`: per-session counters; `stats` names specific values (20080403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub verbose: bool,
    pub call: CallId,
    pub from_tag: Tag,
    pub to_tag: Option<Tag>,
    /// Only encoded when `to_tag` is present.
    pub stats: Vec<String>,
}

/// The recorder/player/copy family, which rtprelay recognises but does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaOpKind {
    /// `R`: start recording.
    Record,
    /// `N`: stop recording.
    NoRecord,
    /// `P`: play a prompt into a session.
    Play,
    /// `S`: stop playing.
    StopPlay,
    /// `C`: copy (fork) the stream.
    Copy,
}

impl MediaOpKind {
    fn letter(self) -> char {
        match self {
            MediaOpKind::Record => 'R',
            MediaOpKind::NoRecord => 'N',
            MediaOpKind::Play => 'P',
            MediaOpKind::StopPlay => 'S',
            MediaOpKind::Copy => 'C',
        }
    }
}

/// A recorder/player/copy command, kept verbatim (modifiers and arguments are not checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaOp {
    pub kind: MediaOpKind,
    pub modifiers: String,
    pub args: Vec<String>,
}

/// One control command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `V`: base protocol version.
    Version,
    /// `VF <date>`: is capability `date` supported?
    VersionFeature(u32),
    /// `U`: offer.
    Update(Update),
    /// `L`: answer (lookup).
    Lookup(Update),
    Delete(Delete),
    Query(Query),
    /// `I[b]`: instance information (`b`: brief).
    Info {
        brief: bool,
    },
    /// `G[v] [stat...]`: global statistics (all of them when no name is given).
    Stats {
        verbose: bool,
        names: Vec<String>,
    },
    /// `X`: delete every session.
    DeleteAll,
    MediaOp(MediaOp),
}

impl Command {
    /// Parse one command (without cookie; surrounding blanks and a trailing newline are
    /// ignored). The error's [`ProtoError::code`] is the `E<n>` answer.
    pub fn parse(bytes: &[u8]) -> Result<Command, ProtoError> {
        let text = scan::text(bytes)?;
        let mut words = text
            .split(|c: char| c.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        let head = words.next().ok_or(ProtoError::Empty)?;
        let args: Vec<&str> = words.collect();
        let letter = head.chars().next().ok_or(ProtoError::Empty)?;
        let mods = head.get(letter.len_utf8()..).unwrap_or("");
        let count = |range: std::ops::RangeInclusive<usize>| {
            if range.contains(&args.len()) {
                Ok(())
            } else {
                Err(ProtoError::ArgumentCount {
                    command: letter.to_ascii_uppercase(),
                    got: args.len(),
                })
            }
        };
        match letter.to_ascii_uppercase() {
            'V' => {
                let flags = simple_flags(mods, b"f")?;
                if flags.is_empty() {
                    count(0..=0)?;
                    Ok(Command::Version)
                } else {
                    count(1..=1)?;
                    let date = args.first().copied().unwrap_or("");
                    scan::decimal(date)
                        .map(Command::VersionFeature)
                        .ok_or_else(|| ProtoError::Number(date.to_owned()))
                }
            }
            'U' => {
                count(4..=7)?;
                parse_update(mods, &args).map(Command::Update)
            }
            'L' => {
                count(5..=7)?;
                parse_update(mods, &args).map(Command::Lookup)
            }
            'D' => {
                let weak = !simple_flags(mods, b"w")?.is_empty();
                count(2..=3)?;
                Ok(Command::Delete(Delete {
                    weak,
                    call: CallId::parse(arg(&args, 0))?,
                    from_tag: Tag::parse(arg(&args, 1))?,
                    to_tag: args.get(2).map(|t| Tag::parse(t)).transpose()?,
                }))
            }
            'Q' => {
                let verbose = !simple_flags(mods, b"v")?.is_empty();
                count(2..=usize::MAX)?;
                Ok(Command::Query(Query {
                    verbose,
                    call: CallId::parse(arg(&args, 0))?,
                    from_tag: Tag::parse(arg(&args, 1))?,
                    to_tag: args.get(2).map(|t| Tag::parse(t)).transpose()?,
                    stats: args.iter().skip(3).map(|s| (*s).to_owned()).collect(),
                }))
            }
            'I' => {
                let brief = !simple_flags(mods, b"b")?.is_empty();
                count(0..=0)?;
                Ok(Command::Info { brief })
            }
            'G' => {
                let verbose = !simple_flags(mods, b"v")?.is_empty();
                Ok(Command::Stats {
                    verbose,
                    names: args.iter().map(|s| (*s).to_owned()).collect(),
                })
            }
            'X' => {
                simple_flags(mods, b"")?;
                count(0..=0)?;
                Ok(Command::DeleteAll)
            }
            c @ ('R' | 'N' | 'P' | 'S' | 'C') => {
                let kind = match c {
                    'R' => MediaOpKind::Record,
                    'N' => MediaOpKind::NoRecord,
                    'P' => MediaOpKind::Play,
                    'S' => MediaOpKind::StopPlay,
                    _ => MediaOpKind::Copy,
                };
                Ok(Command::MediaOp(MediaOp {
                    kind,
                    modifiers: mods.to_owned(),
                    args: args.iter().map(|s| (*s).to_owned()).collect(),
                }))
            }
            _ => Err(ProtoError::UnknownCommand(head.to_owned())),
        }
    }

    /// Append the command text (no cookie, no newline: see [`super::framing`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut s = String::with_capacity(96);
        match self {
            Command::Version => s.push('V'),
            Command::VersionFeature(date) => {
                let _ = write!(s, "VF {date}");
            }
            Command::Update(u) => encode_update('U', u, &mut s),
            Command::Lookup(u) => encode_update('L', u, &mut s),
            Command::Delete(d) => {
                s.push_str(if d.weak { "Dw " } else { "D " });
                d.call.encode(&mut s);
                s.push(' ');
                d.from_tag.encode(&mut s);
                if let Some(t) = &d.to_tag {
                    s.push(' ');
                    t.encode(&mut s);
                }
            }
            Command::Query(q) => {
                s.push_str(if q.verbose { "Qv " } else { "Q " });
                q.call.encode(&mut s);
                s.push(' ');
                q.from_tag.encode(&mut s);
                if let Some(t) = &q.to_tag {
                    s.push(' ');
                    t.encode(&mut s);
                    for name in &q.stats {
                        s.push(' ');
                        s.push_str(name);
                    }
                }
            }
            Command::Info { brief } => s.push_str(if *brief { "Ib" } else { "I" }),
            Command::Stats { verbose, names } => {
                s.push_str(if *verbose { "Gv" } else { "G" });
                for name in names {
                    s.push(' ');
                    s.push_str(name);
                }
            }
            Command::DeleteAll => s.push('X'),
            Command::MediaOp(op) => {
                s.push(op.kind.letter());
                s.push_str(&op.modifiers);
                for a in &op.args {
                    s.push(' ');
                    s.push_str(a);
                }
            }
        }
        out.extend_from_slice(s.as_bytes());
    }

    /// Short stable name for metrics labels and logs (`"U"`, `"L"`, `"VF"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Version => "V",
            Command::VersionFeature(_) => "VF",
            Command::Update(_) => "U",
            Command::Lookup(_) => "L",
            Command::Delete(_) => "D",
            Command::Query(_) => "Q",
            Command::Info { .. } => "I",
            Command::Stats { .. } => "G",
            Command::DeleteAll => "X",
            Command::MediaOp(op) => match op.kind {
                MediaOpKind::Record => "R",
                MediaOpKind::NoRecord => "N",
                MediaOpKind::Play => "P",
                MediaOpKind::StopPlay => "S",
                MediaOpKind::Copy => "C",
            },
        }
    }
}

/// The `i`-th argument; the caller has checked the count, so absence only yields "" (which
/// the element parsers reject) rather than a panic.
fn arg<'a>(args: &[&'a str], i: usize) -> &'a str {
    args.get(i).copied().unwrap_or("")
}

fn parse_update(mods: &str, args: &[&str]) -> Result<Update, ProtoError> {
    let (modifiers, ipv6) = parse_stream_modifiers(mods)?;
    let call = CallId::parse(arg(args, 0))?;
    let addr = scan::address(arg(args, 1))?;
    if ipv6 && addr.is_ipv4() {
        return Err(ProtoError::AddressFamily(addr.to_string()));
    }
    let port = scan::port(arg(args, 2))?;
    let from_tag = Tag::parse(arg(args, 3))?;
    let to_tag = args.get(4).map(|t| Tag::parse(t)).transpose()?;
    let notify = args.get(5).map(|sock| Notify {
        socket: (*sock).to_owned(),
        tag: args.get(6).map(|t| (*t).to_owned()),
    });
    Ok(Update {
        modifiers,
        call,
        addr,
        port,
        from_tag,
        to_tag,
        notify,
    })
}

fn encode_update(letter: char, u: &Update, s: &mut String) {
    s.push(letter);
    u.modifiers.encode(u.addr.is_ipv6(), s);
    s.push(' ');
    u.call.encode(s);
    let _ = write!(s, " {} {} ", u.addr, u.port);
    u.from_tag.encode(s);
    if let Some(t) = &u.to_tag {
        s.push(' ');
        t.encode(s);
        if let Some(n) = &u.notify {
            s.push(' ');
            s.push_str(&n.socket);
            if let Some(tag) = &n.tag {
                s.push(' ');
                s.push_str(tag);
            }
        }
    }
}
