//! `D` (delete a call or one dialog of it) and `X` (delete everything).
//!
//! `D callid from-tag` matches every stream of the Call-ID where from-tag names either party
//! (CANCEL, or a BYE handled without To tag); `D callid from-tag to-tag` only the dialog
//! with those two tags in either order (BYE from either side); a stream whose answerer is not
//! known yet matches any to-tag. `;n` on the from-tag restricts to that stream number and a
//! `;branch` on the Call-ID to that branch; without them all streams and branches match.
//! Weak references are described in `session.rs`. The answer is `0`, or `E50` when nothing
//! matched.

use super::proto::{Delete, ErrorCode, Reply};
use super::session::{EndReason, SessionManager};
use crate::backend::MediaBackend;
use std::time::Instant;

impl SessionManager {
    pub(super) fn delete(
        &mut self,
        d: &Delete,
        backend: &mut dyn MediaBackend,
        now: Instant,
    ) -> Reply {
        let Some(streams) = self.calls.get_mut(d.call.id.as_str()) else {
            return ErrorCode::SESSION_UNKNOWN.into();
        };
        let mut matched = false;
        let mut dead = Vec::new();
        for (idx, st) in streams.iter_mut().enumerate() {
            let Some(side) = st.matches(&d.call, &d.from_tag, d.to_tag.as_ref()) else {
                continue;
            };
            matched = true;
            if d.weak {
                st.weak[side.idx()] = false;
            } else {
                st.strong = false;
            }
            if !st.strong && !st.weak.iter().any(|w| *w) {
                dead.push(idx);
            } else {
                tracing::debug!(call_id = %d.call.id, stream = st.number, "stream kept: still referenced");
            }
        }
        // Highest index first: `swap_remove` only moves elements from the end.
        for idx in dead.into_iter().rev() {
            self.remove_stream(&d.call.id, idx, backend, EndReason::Deleted, now);
        }
        if matched {
            Reply::OK
        } else {
            ErrorCode::SESSION_UNKNOWN.into()
        }
    }

    pub(super) fn delete_all(&mut self, backend: &mut dyn MediaBackend, now: Instant) -> Reply {
        let ids: Vec<_> = self.calls.keys().cloned().collect();
        for id in ids {
            while self.calls.get(&*id).is_some_and(|s| !s.is_empty()) {
                self.remove_stream(&id, 0, backend, EndReason::DeleteAll, now);
            }
        }
        Reply::OK
    }
}
