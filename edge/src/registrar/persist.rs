//! Persistence of the location table across restarts: an append-only log of [`Change`]s, one
//! line each, compacted by rewriting the live bindings into a new file and renaming it over the
//! old one (rename is atomic on POSIX, so a crash leaves either file whole).
//!
//! Format (UTF-8, one record per line, fields separated by TAB, `%`, TAB, CR, LF and 0x1E
//! percent-escaped):
//! ```text
//! edge-location 1
//! U <aor> <contact> <udp|tcp> <source> <local> <instance> <reg-id> <q> <expires-ms> <call-id>
//!   <cseq> <path (0x1E-separated)> <user-agent> <core-contact> <core-expires-ms> <token>
//!   <gruu-params> <nated 0|1> <challenged 0|1>
//! D <aor> <contact>
//! ```
//! Times are wall-clock milliseconds since the Unix epoch, because an `Instant` means nothing
//! after a restart; [`Clock`] converts at the boundary. Empty optional fields are `None`. On
//! load, a line that does not parse (the last one, cut by a crash) is skipped and counted, and
//! expired bindings are dropped. TCP flow ids are not stored: a flow does not survive a restart.

use super::location::Binding;
use super::mode::Change;
use crate::sip::Uri;
use crate::transport::Transport;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const HEADER: &str = "edge-location 1";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("location store {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("location store {path}: not a location log (first line {found:?})")]
    Format { path: String, found: String },
}

/// The same moment on both clocks, to convert between `Instant` and wall time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: Instant,
    pub wall: SystemTime,
}

impl Clock {
    pub fn system() -> Self {
        Clock {
            now: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    fn wall_ms(&self) -> u64 {
        self.wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// Milliseconds since the epoch of `at`.
    pub fn wall_ms_of(&self, at: Instant) -> u64 {
        let base = self.wall_ms();
        if at >= self.now {
            base.saturating_add(at.duration_since(self.now).as_millis() as u64)
        } else {
            base.saturating_sub(self.now.duration_since(at).as_millis() as u64)
        }
    }

    /// The `Instant` of a wall time; `None` when it is already past.
    pub fn instant_of(&self, ms: u64) -> Option<Instant> {
        let base = self.wall_ms();
        (ms > base).then(|| self.now + Duration::from_millis(ms - base))
    }
}

/// What [`Store::load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Live bindings (expired ones dropped).
    pub bindings: Vec<Binding>,
    /// Lines that did not parse (normally 0, or 1 after a crash mid-write).
    pub skipped: usize,
    /// Records read (for the compaction decision).
    pub records: usize,
}

/// The append-only log, open for writing.
pub struct Store {
    path: PathBuf,
    out: BufWriter<File>,
    /// Records in the file (for [`Store::should_compact`]).
    records: usize,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Store {
    /// Reads the log at `path` (a missing file is an empty table).
    pub fn load(path: &Path, clock: Clock) -> Result<Loaded, StoreError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Loaded::default()),
            Err(e) => return Err(io_err(path)(e)),
        };
        load_reader(BufReader::new(file), path, clock)
    }

    /// Opens the log for appending, creating it (and its directory) when missing. A last line
    /// cut by a crash is terminated so the next record starts on a line of its own.
    pub fn open(path: &Path, records: usize) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(io_err(path))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .map_err(io_err(path))?;
        let len = file.metadata().map_err(io_err(path))?.len();
        if len == 0 {
            file.write_all(format!("{HEADER}\n").as_bytes())
                .map_err(io_err(path))?;
        } else {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::End(-1)).map_err(io_err(path))?;
            file.read_exact(&mut last).map_err(io_err(path))?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(io_err(path))?;
            }
        }
        Ok(Store {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
            records,
        })
    }

    /// Appends changes and flushes them to the OS. Call [`Store::sync`] to reach the disk.
    pub fn append(&mut self, changes: &[Change], clock: Clock) -> Result<(), StoreError> {
        for c in changes {
            let line = match c {
                Change::Upsert(b) => encode_binding(b, &clock),
                Change::Remove { aor, contact } => format!("D\t{}\t{}\n", esc(aor), esc(contact)),
            };
            self.out
                .write_all(line.as_bytes())
                .map_err(io_err(&self.path))?;
            self.records += 1;
        }
        self.out.flush().map_err(io_err(&self.path))
    }

    /// fsync (e.g. once a second from the shell, and at shutdown).
    pub fn sync(&mut self) -> Result<(), StoreError> {
        self.out.flush().map_err(io_err(&self.path))?;
        self.out.get_ref().sync_data().map_err(io_err(&self.path))
    }

    /// Worth compacting: the log holds far more records than live bindings.
    pub fn should_compact(&self, live: usize) -> bool {
        self.records > 2 * live + 1024
    }

    /// Compacts from the log itself: flush, read it back (the last record of each binding
    /// wins, expired ones are dropped) and rewrite it. For the writer thread, which owns the
    /// log: nobody has to hand it a copy of the location table.
    pub fn compact_from_log(&mut self, clock: Clock) -> Result<(), StoreError> {
        self.out.flush().map_err(io_err(&self.path))?;
        let loaded = Store::load(&self.path, clock)?;
        self.compact(&loaded.bindings, clock)
    }

    /// Replaces the log by one upsert per live binding (write, fsync, rename).
    pub fn compact(&mut self, live: &[Binding], clock: Clock) -> Result<(), StoreError> {
        let tmp = self.path.with_extension("compact");
        {
            let f = File::create(&tmp).map_err(io_err(&tmp))?;
            let mut w = BufWriter::new(f);
            w.write_all(format!("{HEADER}\n").as_bytes())
                .map_err(io_err(&tmp))?;
            for b in live {
                w.write_all(encode_binding(b, &clock).as_bytes())
                    .map_err(io_err(&tmp))?;
            }
            w.flush().map_err(io_err(&tmp))?;
            w.get_ref().sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, &self.path).map_err(io_err(&self.path))?;
        *self = Store::open(&self.path, live.len())?;
        Ok(())
    }
}

/// Reads a log held in memory (see [`Store::load`]); the fuzzing entry point.
pub fn load_bytes(bytes: &[u8], clock: Clock) -> Result<Loaded, StoreError> {
    load_reader(bytes, Path::new("<memory>"), clock)
}

/// Reads a log from `reader`; `path` names it in errors.
fn load_reader(reader: impl BufRead, path: &Path, clock: Clock) -> Result<Loaded, StoreError> {
    let mut lines = reader.split(b'\n');
    let mut live: HashMap<(String, String), Binding> = HashMap::new();
    let mut out = Loaded::default();
    match lines.next() {
        None => return Ok(out),
        Some(first) => {
            let first = first.map_err(io_err(path))?;
            if first != HEADER.as_bytes() {
                return Err(StoreError::Format {
                    path: path.display().to_string(),
                    found: String::from_utf8_lossy(&first).chars().take(40).collect(),
                });
            }
        }
    }
    for line in lines {
        let line = line.map_err(io_err(path))?;
        if line.is_empty() {
            continue;
        }
        match std::str::from_utf8(&line)
            .ok()
            .and_then(|l| decode(l, &clock))
        {
            Some(Record::Upsert(b)) => {
                out.records += 1;
                live.insert((b.aor.clone(), b.contact.clone()), *b);
            }
            Some(Record::Delete(k)) => {
                out.records += 1;
                live.remove(&k);
            }
            Some(Record::Expired(k)) => {
                out.records += 1;
                live.remove(&k);
            }
            None => out.skipped += 1,
        }
    }
    out.bindings = live.into_values().collect();
    Ok(out)
}

/// A whole log holding `live`, as [`Store::compact`] writes it.
pub fn encode_all(live: &[Binding], clock: &Clock) -> Vec<u8> {
    let mut out = format!("{HEADER}\n");
    for b in live {
        out.push_str(&encode_binding(b, clock));
    }
    out.into_bytes()
}

enum Record {
    Upsert(Box<Binding>),
    Delete((String, String)),
    /// An upsert whose binding has expired: it removes an older live copy.
    Expired((String, String)),
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' => o.push_str("%25"),
            '\t' => o.push_str("%09"),
            '\n' => o.push_str("%0A"),
            '\r' => o.push_str("%0D"),
            '\u{1e}' => o.push_str("%1E"),
            c => o.push(c),
        }
    }
    o
}

fn unesc(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let mut o = String::with_capacity(s.len());
    let mut it = s.split('%');
    o.push_str(it.next()?);
    for part in it {
        let code = part.get(..2)?;
        let c = match code {
            "25" => '%',
            "09" => '\t',
            "0A" => '\n',
            "0D" => '\r',
            "1E" => '\u{1e}',
            _ => return None,
        };
        o.push(c);
        o.push_str(part.get(2..)?);
    }
    Some(o)
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(|v| esc(&v.to_string())).unwrap_or_default()
}

fn encode_binding(b: &Binding, clock: &Clock) -> String {
    let transport = match b.transport {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
    };
    let path = b
        .path
        .iter()
        .map(|p| esc(p))
        .collect::<Vec<_>>()
        .join("\u{1e}");
    let fields: [String; 20] = [
        "U".into(),
        esc(&b.aor),
        esc(&b.contact),
        transport.into(),
        b.source.to_string(),
        b.local.to_string(),
        opt(&b.instance),
        opt(&b.reg_id),
        opt(&b.q),
        clock.wall_ms_of(b.expires).to_string(),
        esc(&b.call_id),
        b.cseq.to_string(),
        path,
        opt(&b.user_agent),
        esc(&b.core_contact),
        clock.wall_ms_of(b.core_expires).to_string(),
        esc(&b.token),
        esc(&b.gruu_params),
        u8::from(b.nated).to_string(),
        u8::from(b.challenged).to_string(),
    ];
    let mut line = fields.join("\t");
    line.push('\n');
    line
}

/// A field as the registrar could have stored it: unescaped, and with line breaks only as
/// header folding (CRLF + SP/HT). Every string of a binding came from a header of a parsed
/// message and some go back into messages (Route from Path, Contact, Request-URI), where a
/// bare CR or LF would split a header line.
fn field(s: &str) -> Option<String> {
    let v = unesc(s)?;
    let b = v.as_bytes();
    let folded = |i: usize| {
        b.get(i) == Some(&b'\r')
            && b.get(i + 1) == Some(&b'\n')
            && matches!(b.get(i + 2), Some(b' ' | b'\t'))
    };
    let ok = b.iter().enumerate().all(|(i, c)| match c {
        b'\r' => folded(i),
        b'\n' => i > 0 && folded(i - 1),
        _ => true,
    });
    ok.then_some(v)
}

fn decode(line: &str, clock: &Clock) -> Option<Record> {
    let f: Vec<&str> = line.split('\t').collect();
    let some = |s: &str| -> Option<Option<String>> {
        if s.is_empty() {
            Some(None)
        } else {
            field(s).map(Some)
        }
    };
    match f.first().copied()? {
        "D" if f.len() == 3 => Some(Record::Delete((field(f[1])?, field(f[2])?))),
        "U" if f.len() == 20 => {
            let aor = field(f[1])?;
            let contact = field(f[2])?;
            // The registrar only binds contacts that parse; anything else is a corrupt record
            // (it would become the Request-URI of requests toward the device).
            Uri::parse(contact.as_bytes()).ok()?;
            let transport = match f[3] {
                "udp" => Transport::Udp,
                "tcp" => Transport::Tcp,
                _ => return None,
            };
            let num = |s: &str| -> Option<Option<u64>> {
                if s.is_empty() {
                    Some(None)
                } else {
                    s.parse().ok().map(Some)
                }
            };
            let expires_ms: u64 = f[9].parse().ok()?;
            let core_ms: u64 = f[15].parse().ok()?;
            let flag = |s: &str| match s {
                "0" => Some(false),
                "1" => Some(true),
                _ => None,
            };
            let Some(expires) = clock.instant_of(expires_ms) else {
                return Some(Record::Expired((aor, contact)));
            };
            let path = if f[12].is_empty() {
                Vec::new()
            } else {
                f[12]
                    .split('\u{1e}')
                    .map(field)
                    .collect::<Option<Vec<_>>>()?
            };
            Some(Record::Upsert(Box::new(Binding {
                transport,
                source: f[4].parse().ok()?,
                local: f[5].parse().ok()?,
                flow: None,
                instance: some(f[6])?,
                reg_id: num(f[7])?.map(u32::try_from).transpose().ok()?,
                q: num(f[8])?.map(u16::try_from).transpose().ok()?,
                expires,
                call_id: field(f[10])?,
                cseq: f[11].parse().ok()?,
                path,
                user_agent: some(f[13])?,
                core_contact: field(f[14])?,
                // A core binding already over is "now": the next REGISTER goes to the core.
                core_expires: clock.instant_of(core_ms).unwrap_or(clock.now),
                token: field(f[16])?,
                gruu_params: field(f[17])?,
                nated: flag(f[18])?,
                challenged: flag(f[19])?,
                aor,
                contact,
            })))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::location::tests::binding;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "edge-registrar-{}-{name}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let _ = fs::remove_dir_all(&d);
        d.join("sub").join("location.log")
    }

    fn rich(now: Instant) -> Binding {
        let mut b = binding("sip:a@d", "sip:a@10.0.0.1:5060;transport=tcp", now, 600);
        b.transport = Transport::Tcp;
        b.flow = Some(9);
        b.instance = Some("urn:uuid:1".into());
        b.reg_id = Some(2);
        b.q = Some(500);
        b.path = vec!["<sip:p1;lr>".into(), "<sip:p2\t%;lr>".into()];
        b.user_agent = Some("Phone\r\n 1.0".into());
        b.gruu_params = ";pub-gruu=\"sip:a@d;gr=x\"".into();
        b.nated = true;
        b
    }

    #[test]
    fn round_trip_across_restart() {
        let path = tmp("rt");
        let c1 = Clock::system();
        let mut s = Store::open(&path, 0).unwrap();
        let b = rich(c1.now);
        let other = binding("sip:b@d", "sip:b@10.0.0.1", c1.now, 60);
        s.append(
            &[
                Change::Upsert(Box::new(b.clone())),
                Change::Upsert(Box::new(other.clone())),
                Change::Remove {
                    aor: other.aor.clone(),
                    contact: other.contact.clone(),
                },
            ],
            c1,
        )
        .unwrap();
        s.sync().unwrap();
        drop(s);
        // "Restart": a new Instant base, 100 s later in wall time.
        let c2 = Clock {
            now: Instant::now() + Duration::from_secs(5000),
            wall: c1.wall + Duration::from_secs(100),
        };
        let l = Store::load(&path, c2).unwrap();
        assert_eq!((l.skipped, l.records), (0, 3));
        assert_eq!(l.bindings.len(), 1);
        let got = &l.bindings[0];
        assert_eq!(got.flow, None, "flows do not survive a restart");
        let mut want = b.clone();
        want.flow = None;
        want.expires = got.expires;
        want.core_expires = got.core_expires;
        assert_eq!(got, &want);
        let left = got.expires.duration_since(c2.now).as_secs();
        assert!((498..=500).contains(&left), "{left}");
    }

    #[test]
    fn load_drops_expired_and_tolerates_truncated_last_line() {
        let path = tmp("trunc");
        let c = Clock::system();
        let mut s = Store::open(&path, 0).unwrap();
        s.append(
            &[
                Change::Upsert(Box::new(binding("sip:a@d", "sip:a@10.0.0.1", c.now, 30))),
                Change::Upsert(Box::new(binding("sip:a@d", "sip:a@10.0.0.2", c.now, 300))),
            ],
            c,
        )
        .unwrap();
        drop(s);
        // A crash in the middle of a record.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"U\tsip:a@d\tsip:a@3\tud").unwrap();
        drop(f);
        let later = Clock {
            now: c.now + Duration::from_secs(60),
            wall: c.wall + Duration::from_secs(60),
        };
        let l = Store::load(&path, later).unwrap();
        assert_eq!(l.skipped, 1);
        assert_eq!(l.bindings.len(), 1);
        assert_eq!(l.bindings[0].contact, "sip:a@10.0.0.2");
        // Appending after the crash starts a fresh line; the torn one stays skipped.
        let mut s = Store::open(&path, l.records).unwrap();
        s.append(
            &[Change::Upsert(Box::new(binding(
                "sip:a@d",
                "sip:a@10.0.0.4",
                later.now,
                300,
            )))],
            later,
        )
        .unwrap();
        drop(s);
        let l = Store::load(&path, later).unwrap();
        assert_eq!((l.skipped, l.bindings.len()), (1, 2));
    }

    #[test]
    fn compaction_keeps_only_live_bindings() {
        let path = tmp("compact");
        let c = Clock::system();
        let mut s = Store::open(&path, 0).unwrap();
        let b = binding("sip:a@d", "sip:a@10.0.0.1", c.now, 300);
        for i in 0..1500 {
            let mut x = b.clone();
            x.cseq = i;
            s.append(&[Change::Upsert(Box::new(x))], c).unwrap();
        }
        assert!(s.should_compact(1));
        let mut last = b.clone();
        last.cseq = 1499;
        s.compact(std::slice::from_ref(&last), c).unwrap();
        assert!(!s.should_compact(1));
        s.append(
            &[Change::Upsert(Box::new(binding(
                "sip:z@d",
                "sip:z@10.0.0.1",
                c.now,
                300,
            )))],
            c,
        )
        .unwrap();
        drop(s);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        let l = Store::load(&path, c).unwrap();
        assert_eq!(l.bindings.len(), 2);
        assert!(l.bindings.iter().any(|x| x.cseq == 1499));
        assert!(!path.with_extension("compact").exists());
    }

    #[test]
    fn missing_file_is_empty_and_foreign_file_refused() {
        let path = tmp("foreign");
        assert!(Store::load(&path, Clock::system())
            .unwrap()
            .bindings
            .is_empty());
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "something else\n").unwrap();
        assert!(matches!(
            Store::load(&path, Clock::system()),
            Err(StoreError::Format { .. })
        ));
    }

    /// Fuzz finding (location_log): a record whose contact is not a URI was loaded, and
    /// requests from the core went out with it as their Request-URI (unparsable SIP).
    #[test]
    fn fuzz_record_with_unparsable_contact_is_skipped() {
        let c = Clock::system();
        let b = binding("sip:bob@d", "sip:bob@10.1.1.2", c.now, 60);
        let good = encode_binding(&b, &c);
        let bad = good.replace("sip:bob@10.1.1.2\t", "sip:bob@10.1.\u{11}.2\t");
        assert_ne!(good, bad);
        let log = format!("{HEADER}\n{good}{bad}");
        let l = load_bytes(log.as_bytes(), c).unwrap();
        assert_eq!((l.records, l.skipped, l.bindings.len()), (1, 1, 1));
    }

    /// Fuzz finding (location_log): a Path value with a bare LF was loaded and went out as a
    /// Route header split in two (unparsable SIP toward the device).
    #[test]
    fn fuzz_record_with_line_break_in_a_field_is_skipped() {
        let c = Clock::system();
        let mut b = binding("sip:bob@d", "sip:bob@10.1.1.2", c.now, 60);
        b.path = vec!["<sip:p1;lr>".into(), "<sip:p2\n;lr>".into()];
        let mut folded = binding("sip:bob@d", "sip:bob@10.1.1.3", c.now, 60);
        folded.user_agent = Some("Phone\r\n 1.0".into());
        let mut ua = binding("sip:bob@d", "sip:bob@10.1.1.4", c.now, 60);
        ua.user_agent = Some("Phone\r1.0".into());
        let log = format!(
            "{HEADER}\n{}{}{}",
            encode_binding(&b, &c),
            encode_binding(&folded, &c),
            encode_binding(&ua, &c)
        );
        let l = load_bytes(log.as_bytes(), c).unwrap();
        assert_eq!((l.records, l.skipped), (1, 2));
        assert_eq!(l.bindings[0].contact, "sip:bob@10.1.1.3");
    }

    #[test]
    fn escaping_round_trips_and_rejects_garbage() {
        for s in ["", "plain", "a%b\tc\nd\re\u{1e}f%", "%%%"] {
            assert_eq!(unesc(&esc(s)).as_deref(), Some(s));
        }
        assert_eq!(unesc("%zz"), None);
        assert_eq!(unesc("%2"), None);
        let c = Clock::system();
        for line in ["", "X\ta", "U\tshort", "D\tonly-two", "U\t%"] {
            assert!(decode(line, &c).is_none(), "{line}");
        }
    }
}
