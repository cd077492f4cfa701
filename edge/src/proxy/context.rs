//! The response context of one proxied request (RFC 3261 §16.7): its branches, the best final
//! response so far, the targets not tried yet, and whether the search has ended.
//!
//! Pure decision logic: it is told what happened to a branch and answers with [`Action`]s; the
//! proxy turns those into transactions and messages. Forking rules:
//! - 1xx (but 100) are forwarded at once; 2xx are forwarded at once, and for INVITE every other
//!   pending branch is cancelled with `Reason: SIP;cause=200;text="Call completed elsewhere"`
//!   (RFC 3326); later 2xx of INVITE are forwarded too (§16.7 step 5).
//! - A 6xx ends the search: no new branch is started and pending ones are cancelled; the 6xx is
//!   the answer once they are done (§16.7 step 5, §16.7 step 6).
//! - A 3xx may add its Contacts to the target set (recursion, §16.7 step 6 / §16.5); otherwise it
//!   is a candidate like 4xx/5xx.
//! - When every branch is complete and no target is left, the best response goes upstream: a
//!   6xx if any, else the lowest class (§16.7 step 6); a 503 is sent as 500 (§16.7 step 6).
//! - A CANCEL stops the search; a branch is CANCELled only once it has seen a provisional
//!   (§9.1), and a branch still silent then ends by its own Timer B.

use bytes::Bytes;
use std::collections::VecDeque;

/// A final response we may send upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidate {
    /// A response received on a branch (our Via already removed).
    Received { status: u16, msg: Bytes },
    /// A response the proxy generates itself (timeouts, transport errors).
    Local { status: u16, reason: &'static str },
}

impl Candidate {
    pub fn status(&self) -> u16 {
        match self {
            Candidate::Received { status, .. } | Candidate::Local { status, .. } => *status,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchState {
    /// Request sent, nothing heard.
    Trying,
    /// A provisional response was received.
    Proceeding,
    /// A final response was received (or the branch timed out / failed).
    Completed(u16),
}

/// Why a branch is cancelled; becomes the Reason header (RFC 3326).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReason {
    /// Another branch answered 200.
    CompletedElsewhere,
    /// A 6xx ended the search.
    Declined(u16),
    /// The caller sent CANCEL; its Reason header (if any) is copied.
    Upstream(Option<Bytes>),
    /// Timer C fired (§16.8).
    Timeout,
}

impl CancelReason {
    /// The Reason header value, if any.
    pub fn header(&self) -> Option<Bytes> {
        match self {
            CancelReason::CompletedElsewhere => Some(Bytes::from_static(
                b"SIP;cause=200;text=\"Call completed elsewhere\"",
            )),
            CancelReason::Declined(code) => {
                Some(Bytes::from(format!("SIP;cause={code};text=\"Declined\"")))
            }
            CancelReason::Upstream(r) => r.clone(),
            CancelReason::Timeout => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this response upstream now (provisional or 2xx).
    Forward(Bytes),
    /// Send this final response upstream; the context is finished with the search.
    Final(Candidate),
    /// CANCEL branch `n`.
    Cancel(usize, CancelReason),
    /// Start a new branch toward this Request-URI.
    Start(Bytes),
}

#[derive(Debug)]
pub struct ResponseContext {
    pub invite: bool,
    pub branches: Vec<BranchState>,
    cancel_pending: Vec<Option<CancelReason>>,
    best: Option<Candidate>,
    pub final_sent: bool,
    /// Search over: CANCEL received, 2xx, or 6xx.
    pub stopped: bool,
    sequential: bool,
    pending: VecDeque<Bytes>,
    tried: Vec<Bytes>,
    redirects_left: u32,
    upstream_cancel: Option<Option<Bytes>>,
}

impl ResponseContext {
    /// `targets` is the initial target set; with `sequential` they are tried one at a time.
    /// Returns the context and the branches to start.
    pub fn new(
        invite: bool,
        targets: Vec<Bytes>,
        sequential: bool,
        max_redirects: u32,
    ) -> (Self, Vec<Action>) {
        let mut ctx = ResponseContext {
            invite,
            branches: Vec::new(),
            cancel_pending: Vec::new(),
            best: None,
            final_sent: false,
            stopped: false,
            sequential,
            pending: VecDeque::new(),
            tried: Vec::new(),
            redirects_left: max_redirects,
            upstream_cancel: None,
        };
        let mut out = Vec::new();
        ctx.add_targets(targets, &mut out);
        (ctx, out)
    }

    /// The proxy started a branch for an `Action::Start`; returns its index.
    pub fn branch_started(&mut self) -> usize {
        self.branches.push(BranchState::Trying);
        self.cancel_pending.push(None);
        self.branches.len() - 1
    }

    fn add_targets(&mut self, targets: Vec<Bytes>, out: &mut Vec<Action>) {
        for t in targets {
            if !self.tried.iter().any(|x| x.eq_ignore_ascii_case(&t)) {
                self.tried.push(t.clone());
                self.pending.push_back(t);
            }
        }
        self.start_next(out);
    }

    fn start_next(&mut self, out: &mut Vec<Action>) {
        if self.stopped {
            self.pending.clear();
            return;
        }
        if self.sequential {
            let busy = self
                .branches
                .iter()
                .any(|b| !matches!(b, BranchState::Completed(_)))
                || out.iter().any(|a| matches!(a, Action::Start(_)));
            if !busy {
                if let Some(t) = self.pending.pop_front() {
                    out.push(Action::Start(t));
                }
            }
        } else {
            out.extend(self.pending.drain(..).map(Action::Start));
        }
    }

    pub fn on_provisional(&mut self, b: usize, status: u16, msg: Bytes) -> Vec<Action> {
        let mut out = Vec::new();
        if let Some(state @ BranchState::Trying) = self.branches.get_mut(b) {
            *state = BranchState::Proceeding;
            // A CANCEL that had to wait for this branch's first provisional (§9.1).
            if let Some(reason) = self.cancel_pending.get_mut(b).and_then(Option::take) {
                out.push(Action::Cancel(b, reason));
            }
        }
        if status > 100 && !self.final_sent {
            out.push(Action::Forward(msg));
        }
        out
    }

    /// A final response on branch `b`. `contacts` are the 3xx Contacts (ignored otherwise).
    pub fn on_final(&mut self, b: usize, cand: Candidate, contacts: Vec<Bytes>) -> Vec<Action> {
        let mut out = Vec::new();
        let status = cand.status();
        if let Some(state) = self.branches.get_mut(b) {
            if matches!(state, BranchState::Completed(_)) && !(200..300).contains(&status) {
                return out; // a late duplicate
            }
            *state = BranchState::Completed(status);
        }
        match status {
            200..=299 => {
                if self.invite || !self.final_sent {
                    if let Candidate::Received { msg, .. } = &cand {
                        out.push(Action::Forward(msg.clone()));
                    }
                }
                self.final_sent = true;
                if self.invite {
                    self.stop(CancelReason::CompletedElsewhere, &mut out);
                } else {
                    self.stopped = true;
                }
                return out;
            }
            600..=699 => {
                self.stop(CancelReason::Declined(status), &mut out);
                self.best = Some(cand);
            }
            300..=399 if self.redirects_left > 0 && !contacts.is_empty() && !self.stopped => {
                self.redirects_left -= 1;
                let before = out.len();
                self.add_targets(contacts, &mut out);
                if out.len() == before {
                    self.consider(cand); // every Contact was tried already
                }
            }
            _ => self.consider(cand),
        }
        self.start_next(&mut out);
        self.finish_if_done(&mut out);
        out
    }

    /// The caller CANCELled (§16.10). `reason` is the CANCEL's Reason header.
    pub fn on_cancel(&mut self, reason: Option<Bytes>) -> Vec<Action> {
        let mut out = Vec::new();
        self.upstream_cancel = Some(reason.clone());
        self.stop(CancelReason::Upstream(reason), &mut out);
        self.finish_if_done(&mut out);
        out
    }

    /// Timer C fired on branch `b` (§16.8): cancel it if it rang, else it ends as 408.
    pub fn on_timer_c(&mut self, b: usize) -> Vec<Action> {
        match self.branches.get(b) {
            Some(BranchState::Proceeding) => vec![Action::Cancel(b, CancelReason::Timeout)],
            Some(BranchState::Trying) => self.on_final(
                b,
                Candidate::Local {
                    status: 408,
                    reason: "Request Timeout",
                },
                Vec::new(),
            ),
            _ => Vec::new(),
        }
    }

    fn stop(&mut self, reason: CancelReason, out: &mut Vec<Action>) {
        self.stopped = true;
        self.pending.clear();
        if !self.invite {
            return;
        }
        for (i, state) in self.branches.iter().enumerate() {
            match state {
                BranchState::Proceeding => out.push(Action::Cancel(i, reason.clone())),
                BranchState::Trying => self.cancel_pending[i] = Some(reason.clone()),
                BranchState::Completed(_) => {}
            }
        }
    }

    /// §16.7 step 6: keep the best candidate.
    fn consider(&mut self, cand: Candidate) {
        let better = match &self.best {
            None => true,
            Some(best) => rank(cand.status()) < rank(best.status()),
        };
        if better {
            self.best = Some(cand);
        }
    }

    fn finish_if_done(&mut self, out: &mut Vec<Action>) {
        let busy = self
            .branches
            .iter()
            .any(|b| !matches!(b, BranchState::Completed(_)))
            || !self.pending.is_empty()
            || out.iter().any(|a| matches!(a, Action::Start(_)));
        if busy || self.final_sent {
            return;
        }
        self.final_sent = true;
        let mut best = self.best.take().unwrap_or(Candidate::Local {
            status: 408,
            reason: "Request Timeout",
        });
        // A cancelled INVITE whose branches all timed out still owes the caller a 487.
        if self.upstream_cancel.is_some() && matches!(best, Candidate::Local { status: 408, .. }) {
            best = Candidate::Local {
                status: 487,
                reason: "Request Terminated",
            };
        }
        out.push(Action::Final(best));
    }

    /// All branches done and the final response sent.
    pub fn is_finished(&self) -> bool {
        self.final_sent
            && self
                .branches
                .iter()
                .all(|b| matches!(b, BranchState::Completed(_)))
    }
}

/// Lower is better: 6xx first, then by class (3xx < 4xx < 5xx), then by code.
fn rank(status: u16) -> u32 {
    if status >= 600 {
        status as u32 - 600
    } else {
        1000 + status as u32
    }
}

#[cfg(test)]
mod tests;
