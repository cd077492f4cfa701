//! Calls the edge ends by itself: a confirmed call whose relay lost its media (the streams
//! timed out, or the relay restarted) gets a BYE to each party ([`crate::proxy::calls`]); its relay
//! state was already freed by the media dialogs ([`crate::media::liveness`]).

use super::*;
use crate::proxy::calls::Toward;

/// RFC 3326 Reason of the edge's own BYE: Q.850 cause 41 "temporary failure" (the media path
/// failed, not either party), as SBCs send on RTP timeout.
pub(super) const MEDIA_LOST_REASON: &str = "Q.850;cause=41;text=\"media timeout\"";

impl Proxy {
    /// A 2xx to initial INVITE `id`, answered by branch `b`, goes upstream: track the dialog
    /// if its media is anchored, so the edge can end it.
    pub(super) fn track_confirmed(&mut self, id: u64, b: usize, ok: &Message) {
        let Some(ctx) = self.contexts.get(&id) else {
            return;
        };
        let Some(branch) = ctx.branches.get(b) else {
            return;
        };
        let (Some(call_id), Some(tag)) = (
            ctx.request
                .call_id()
                .and_then(|c| std::str::from_utf8(c).ok()),
            ctx.request.from().ok().and_then(|f| f.tag()),
        ) else {
            return;
        };
        if !self.media.has_call(call_id, tag) {
            return;
        }
        let locals = &self.locals;
        self.calls.confirmed(
            &ctx.request,
            ok,
            Dest::back_to(&ctx.src),
            branch.dest,
            |u| locals.is_us_uri(u),
        );
    }

    /// The relay lost call (`call_id`, `caller_tag`): BYE to both parties.
    pub(super) fn end_lost_call(&mut self, call_id: &str, caller_tag: &str, now: Instant) {
        let calls = self.calls.take(call_id, caller_tag);
        if calls.is_empty() {
            self.media.count_lost("untracked");
            return;
        }
        for call in calls {
            for to in [Toward::Callee, Toward::Caller] {
                self.send_own(call.dest(to), "BYE", now, |via| {
                    call.bye(to, via, MEDIA_LOST_REASON)
                });
            }
            tracing::info!(
                call_id,
                "call ended by the edge: BYE to both parties (media lost)"
            );
            self.media.count_lost("bye");
        }
    }
}
