//! Per-test scratch directory for child logs (SIPp error logs, screens, the edge's output).
//! Removed when the test passes, kept (and its path printed) when the test panics, so a CI
//! failure can be read afterwards.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Creates `$TMPDIR/e2e-<pid>-<n>-<label>`.
    pub fn new(label: &str) -> WorkDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("e2e-{}-{n}-{label}", std::process::id()));
        if let Err(e) = std::fs::create_dir_all(&path) {
            panic!("cannot create work dir {}: {e}", path.display());
        }
        WorkDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("E2E_KEEP").is_some() {
            eprintln!("e2e: logs kept in {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The last `max` bytes of a file as text (lossy), or a note that it could not be read.
pub fn tail(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            let cut = if start > 0 { "[...]\n" } else { "" };
            format!(
                "{cut}{}",
                String::from_utf8_lossy(bytes.get(start..).unwrap_or(&[]))
            )
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
