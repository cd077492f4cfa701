//! Logging setup shared by both daemons: the level from `log.level` (validated and normalised by
//! [`config::LogConfig::filter`]), human or JSON lines on stderr, and under systemd
//! (`$JOURNAL_STREAM` set) each line prefixed with its syslog priority `<N>` so that journald
//! files ERROR at `err` and `journalctl -p err` finds it (`sd-daemon(3)`).

use config::{LogConfig, LogFormat};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The `<N>` prefix of a level (RFC 5424 severities: err 3, warning 4, info 6, debug 7).
pub fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

struct Journal<F>(F);

impl<S, N, F> FormatEvent<S, N> for Journal<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Changes the running log filter (`log.level` syntax); what [`init`] returns.
pub type SetLevel = Box<dyn Fn(&str) -> Result<(), String>>;

/// Install the global subscriber. Errors name the key (`log.level`). The returned function
/// changes the level later (configuration reload).
pub fn init(log: &LogConfig) -> Result<SetLevel, String> {
    let filter = log.filter().map_err(|e| e.to_string())?;
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .map_err(|e| format!("invalid value for `log.level`: {e}"))?;
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = !journal && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    // journald stamps each line itself.
    macro_rules! install {
        ($b:expr) => {{
            let b = $b.with_filter_reloading();
            let handle = b.reload_handle();
            b.init();
            Box::new(move |level: &str| {
                let cfg = LogConfig {
                    level: level.to_string(),
                    ..LogConfig::default()
                };
                let f = cfg.filter().map_err(|e| e.to_string())?;
                let f = tracing_subscriber::EnvFilter::try_new(&f)
                    .map_err(|e| format!("invalid value for `log.level`: {e}"))?;
                handle.reload(f).map_err(|e| e.to_string())
            }) as SetLevel
        }};
    }
    Ok(match (log.format, journal) {
        (LogFormat::Json, false) => install!(builder.json()),
        (LogFormat::Json, true) => install!(builder.event_format(Journal(
            tracing_subscriber::fmt::format().json().without_time()
        ))),
        (LogFormat::Human, false) => install!(builder),
        (LogFormat::Human, true) => {
            install!(builder.event_format(Journal(tracing_subscriber::fmt::format().without_time())))
        }
    })
}
