//! Branches of a proxied request: forking, core failover, CANCEL (§9.1, §16.10), and the
//! response context's actions turned into transactions and messages.

use super::*;

impl Proxy {
    /// The client transactions among `candidates` whose destination is `dest`'s address fail
    /// with a transport error (their owners learn it through the usual outputs).
    pub(super) fn fail_toward(&mut self, candidates: Vec<TxId>, dest: &Dest, now: Instant) {
        let mut outs = std::mem::take(&mut self.txout);
        for t in candidates {
            if self.txs.dest(t).is_some_and(|d| d.addr == dest.addr) {
                self.txs.on_transport_error(t, &mut outs);
            }
        }
        self.handle_tx_outputs(&mut outs, now);
        self.txout = outs;
    }

    /// Branch `b` of context `id` ends with a response the proxy makes up (timeout, no route).
    pub(super) fn branch_final_local(
        &mut self,
        id: u64,
        b: usize,
        status: u16,
        reason: &'static str,
        now: Instant,
    ) {
        let acts = match self.contexts.get_mut(&id) {
            Some(c) => {
                c.rc.on_final(b, Candidate::Local { status, reason }, Vec::new())
            }
            None => return,
        };
        self.apply(id, acts, now);
    }

    pub(super) fn apply(&mut self, id: u64, acts: Vec<Action>, now: Instant) {
        self.apply_with(id, acts, now, false);
    }

    /// `media_done`: responses in `acts` went through media anchoring already.
    pub(super) fn apply_with(
        &mut self,
        id: u64,
        acts: Vec<Action>,
        now: Instant,
        media_done: bool,
    ) {
        for act in acts {
            let act = match act {
                a @ (Action::Forward(_) | Action::Final(_)) if !media_done => {
                    match self.media_upstream(id, a, now) {
                        Some(a) => a,
                        None => continue, // parked until the relay answers
                    }
                }
                a => a,
            };
            match act {
                Action::Forward(bytes) => {
                    let Some(tx) = self.contexts.get(&id).map(|c| c.server_tx) else {
                        continue;
                    };
                    let code = status_of(&bytes);
                    self.respond(tx, code, bytes, now);
                }
                Action::Final(cand) => self.send_final(id, cand, now),
                Action::Cancel(b, reason) => self.cancel_branch(id, b, reason.header(), now),
                Action::Start(target) => self.start_branch(id, target, now),
            }
        }
        self.reap(id);
    }

    /// Media anchoring for a response going upstream. `None`: parked.
    pub(super) fn media_upstream(&mut self, id: u64, act: Action, now: Instant) -> Option<Action> {
        let ctx = self.contexts.get(&id)?;
        if !matches!(
            ctx.request.method(),
            Some(Method::Invite | Method::Update | Method::Prack)
        ) {
            return Some(act);
        }
        let bytes = match &act {
            Action::Forward(b) => b.clone(),
            Action::Final(Candidate::Received { msg, .. }) => msg.clone(),
            Action::Final(Candidate::Local { status, reason }) => {
                sip::response_to(&ctx.request, *status, reason, None, &[])
            }
            _ => return Some(act),
        };
        let Ok(resp) = sip::parse(bytes, &self.limits) else {
            return Some(act);
        };
        let initial = ctx.request.method() == Some(&Method::Invite)
            && ctx.request.to().ok().is_some_and(|t| t.tag().is_none());
        if initial && resp.status().is_some_and(|s| (200..300).contains(&s)) {
            if let Some((rid, b)) = self.responding.filter(|(rid, _)| *rid == id) {
                self.track_confirmed(rid, b, &resp);
            }
        }
        let Some(ctx) = self.contexts.get(&id) else {
            return Some(act);
        };
        let sender = self.responder.unwrap_or(Peer {
            source: ctx.src.remote.ip(),
            nated: false,
            access: false,
        });
        match anchor::step(
            &mut self.media,
            &resp,
            sender,
            false,
            now,
            &mut self.relay_out,
        ) {
            // A response cannot be refused; its streams answer an offer already limited.
            BodyAction::Unchanged | BodyAction::Refuse { .. } => Some(act),
            BodyAction::Replace(body) => Some(match act {
                Action::Forward(b) => {
                    Action::Forward(anchor::bytes_with_body(&b, &body, &self.limits))
                }
                Action::Final(Candidate::Received { status, msg }) => {
                    Action::Final(Candidate::Received {
                        status,
                        msg: anchor::bytes_with_body(&msg, &body, &self.limits),
                    })
                }
                other => other,
            }),
            BodyAction::Hold(op) => {
                self.parked.insert(op.0, Parked::Response { ctx: id, act });
                None
            }
        }
    }

    pub(super) fn send_final(&mut self, id: u64, cand: Candidate, now: Instant) {
        let Some(ctx) = self.contexts.get(&id) else {
            return;
        };
        let tx = ctx.server_tx;
        match cand {
            Candidate::Received { status: 503, msg } => {
                // §16.7 step 6: a 503 from downstream is not passed on as 503 (it would make
                // the previous hop think *we* are overloaded).
                let bytes = replace_status(&msg, 500, "Server Internal Error");
                self.respond(tx, 500, bytes, now);
            }
            Candidate::Received { status, msg } => self.respond(tx, status, msg, now),
            Candidate::Local { status, reason } => {
                let req = ctx.request.clone();
                self.respond_local(tx, &req, status, reason, now);
            }
        }
    }

    pub(super) fn start_branch(&mut self, id: u64, target: Bytes, now: Instant) {
        let reg_hop = self.reg_hop(id, &target);
        let Some(ctx) = self.contexts.get_mut(&id) else {
            return;
        };
        let b = ctx.rc.branch_started();
        // A registered binding goes over its flow; the first target to the hop chosen by
        // routing; recursion targets to their URI.
        let (hop, core) = match reg_hop {
            Some(h) => (Some(h), false),
            None => match ctx.first_hop.take() {
                Some(h) => (Some(h), ctx.first_hop_core),
                None => (Uri::parse(&target).ok().and_then(|u| dest_for(&u)), false),
            },
        };
        let result = match hop {
            Some(hop) => self.send_branch(id, b, target.clone(), hop, core, false, now),
            None => Err((404, "Not Found (unresolvable target)")),
        };
        let Err((code, reason)) = result else {
            return;
        };
        tracing::info!(
            call_id = %self.contexts.get(&id).map(|c| String::from_utf8_lossy(c.request.call_id().unwrap_or_default()).into_owned()).unwrap_or_default(),
            target = %String::from_utf8_lossy(&target),
            code,
            reason,
            "branch not sent"
        );
        let Some(c) = self.contexts.get_mut(&id) else {
            return;
        };
        // Keep `branches` indexed like the response context's branches (CANCEL, failover).
        if c.branches.len() == b {
            c.branches.push(BranchInfo {
                request: Bytes::new(),
                dest: Dest {
                    transport: Transport::Udp,
                    addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                    flow: None,
                },
                tx: None,
                target,
                core: false,
                tried: Vec::new(),
                relayed_1xx: false,
            });
        }
        let cand = Candidate::Local {
            status: code,
            reason,
        };
        let acts = c.rc.on_final(b, cand, Vec::new());
        self.apply(id, acts, now);
    }

    /// Sends branch `b` of context `id` toward `hop` on a new client transaction. With
    /// `failover` the branch already exists (its previous core failed) and is replaced: the
    /// response context never sees the failed attempt.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_branch(
        &mut self,
        id: u64,
        b: usize,
        target: Bytes,
        hop: Dest,
        core: bool,
        failover: bool,
        now: Instant,
    ) -> Result<(), (u16, &'static str)> {
        const CANNOT: (u16, &str) = (500, "Server Internal Error (cannot forward)");
        let ctx = self.contexts.get(&id).ok_or(CANNOT)?;
        let record_route = self.cfg.record_route
            && ctx.request.to().ok().is_some_and(|t| t.tag().is_none())
            && is_dialog_forming(ctx.request.method());
        let br = self.branches.next(ctx.loop_hash);
        let mut hop = hop;
        let mut bytes = self
            .forwarded(&ctx.request, &ctx.src, &target, hop, &br, record_route)
            .ok_or(CANNOT)?;
        if hop.transport == Transport::Udp && bytes.len() > self.cfg.max_udp_request_bytes {
            // RFC 3261 §18.1.1: too large for UDP — a congestion-controlled transport, with the
            // Via saying so, or 513 when the edge has none.
            if !self.locals.has(Transport::Tcp) {
                return Err((513, "Message Too Large (for UDP; no TCP listener)"));
            }
            hop = Dest {
                transport: Transport::Tcp,
                addr: hop.addr,
                flow: None,
            };
            bytes = self
                .forwarded(&ctx.request, &ctx.src, &target, hop, &br, record_route)
                .ok_or(CANNOT)?;
        }
        let bytes = self.reg_route(id, &target, bytes);
        let method = ctx.request.method().cloned().unwrap_or(Method::Invite);
        let key = ClientKey::new(&br, tx_method(&method));
        let mut outs = std::mem::take(&mut self.txout);
        let bytes_sent = bytes.clone();
        let created = self
            .txs
            .create_client(key, bytes, hop, hop.is_reliable(), now, &mut outs);
        if let Ok(tx) = created {
            self.timing
                .start(tx, crate::metrics::method_label(method.as_str()), now);
        }
        let ctx = self.contexts.get_mut(&id).ok_or(CANNOT)?;
        let mut info = BranchInfo {
            request: bytes_sent,
            dest: hop,
            tx: created.as_ref().ok().copied(),
            target,
            core,
            tried: vec![hop],
            relayed_1xx: false,
        };
        match ctx.branches.get_mut(b) {
            Some(old) if failover => {
                info.tried = std::mem::take(&mut old.tried);
                info.tried.push(hop);
                let old_tx = std::mem::replace(old, info).tx;
                if let Some(t) = old_tx {
                    self.client_ctx.remove(&t);
                }
            }
            _ => ctx.branches.push(info),
        }
        if let Ok(t) = created {
            self.client_ctx.insert(t, (id, b));
            self.metrics.request(method.as_str(), "out");
            if !failover {
                self.reg_sent(id);
            }
            // Timer C runs per branch (§16.8): a failover does not restart it.
            if method == Method::Invite && !failover {
                self.timer_c_heap.push(Reverse((now + self.timer_c, id, b)));
            }
        }
        self.handle_tx_outputs(&mut outs, now);
        self.txout = outs;
        Ok(())
    }

    /// Serial failover (RFC 3263 §4.3): branch `b` went to a core entry that answered 503 or
    /// could not be reached; re-send it to the next healthy core entry it has not tried, unless
    /// the caller already has a final answer, cancelled, or saw a provisional from the failed
    /// core. Returns whether the branch was re-sent (its failure is then not reported).
    pub(super) fn core_failover(&mut self, id: u64, b: usize, now: Instant) -> bool {
        let Some(ctx) = self.contexts.get(&id) else {
            return false;
        };
        let Some(info) = ctx.branches.get(b) else {
            return false;
        };
        if !info.core
            || info.relayed_1xx
            || ctx.rc.final_sent
            || ctx.rc.stopped
            || self.txs.server_state(ctx.server_tx).is_none()
        {
            return false;
        }
        let Some(next) = self.policy.next_core(now, &info.tried) else {
            return false;
        };
        tracing::info!(from = %info.dest.addr, to = %next.addr, "core failover");
        let target = info.target.clone();
        self.metrics.core_failovers.inc();
        self.send_branch(id, b, target, next, true, true, now)
            .is_ok()
    }

    pub(super) fn cancel_branch(&mut self, id: u64, b: usize, reason: Option<Bytes>, now: Instant) {
        let Some(info) = self.contexts.get(&id).and_then(|c| c.branches.get(b)) else {
            return;
        };
        let Ok(sent) = sip::parse(info.request.clone(), &self.limits) else {
            return;
        };
        let Some(bytes) = build::cancel(&sent, reason.as_deref()) else {
            return;
        };
        let dest = info.dest;
        let Some(br) = sent
            .top_via()
            .ok()
            .and_then(|v| v.branch)
            .map(str::to_owned)
        else {
            return;
        };
        let mut outs = std::mem::take(&mut self.txout);
        let key = ClientKey::new(&br, tx::Method::Cancel);
        if self
            .txs
            .create_client(key, bytes, dest, dest.is_reliable(), now, &mut outs)
            .is_ok()
        {
            self.metrics.request("CANCEL", "out");
        }
        self.handle_tx_outputs(&mut outs, now);
        self.txout = outs;
    }

    /// Drop a context once its search is over and its server transaction is gone; until
    /// then, drop what it can no longer use.
    pub(super) fn reap(&mut self, id: u64) {
        let Some(ctx) = self.contexts.get_mut(&id) else {
            return;
        };
        if ctx.rc.final_sent {
            // A branch with its final response never needs its request again: its CANCEL
            // (§9.1) and failover happen before that response, its ACK for a non-2xx is kept
            // by its client transaction. An answered INVITE's context lives 32 s more (a late
            // 2xx from another fork must still go upstream): it keeps no copies meanwhile.
            for (info, state) in ctx.branches.iter_mut().zip(&ctx.rc.branches) {
                if matches!(state, crate::proxy::context::BranchState::Completed(_)) {
                    info.request = Bytes::new();
                    info.target = Bytes::new();
                }
            }
        }
        let Some(ctx) = self.contexts.get(&id) else {
            return;
        };
        let server_alive = self.txs.server_state(ctx.server_tx).is_some();
        // A non-INVITE whose final response went out and whose branches all ended needs its
        // context no more: the server transaction answers retransmissions by itself
        // (§17.2.2) and a late response to a non-INVITE is never forwarded (§16.7 step 5
        // forwards only an INVITE's 2xx). Dropping it now instead of after Timer J (32 s)
        // keeps the request, the branches and the registrar's state out of memory.
        let lean = !ctx.rc.invite && ctx.rc.is_finished();
        if lean || (!server_alive && (ctx.rc.final_sent || ctx.rc.is_finished())) {
            let ctx = self.contexts.remove(&id).expect("present");
            self.reg_forget(id);
            self.server_ctx.remove(&ctx.server_tx);
            for b in ctx.branches {
                if let Some(t) = b.tx {
                    self.client_ctx.remove(&t);
                }
            }
        }
    }

    pub(super) fn branch_failed(
        &mut self,
        tx: TxId,
        code: u16,
        reason: &'static str,
        now: Instant,
        _outs: &mut Vec<Output<Dest>>,
    ) {
        let Some((id, b)) = self.client_ctx.get(&tx).copied() else {
            if let Some(d) = self.health.failed(tx) {
                // A transport error was handled (and counted) by `on_transport_error`.
                if code != 503 {
                    self.core_dead(d, now);
                }
                return;
            }
            return;
        };
        if let Some(d) = self
            .contexts
            .get(&id)
            .and_then(|c| c.branches.get(b))
            .map(|i| i.dest)
        {
            if self.policy.mark_down(&d, now) && code == 408 {
                self.metrics.core_down("timeout");
            }
        }
        // A transport error is immediate: fail over. A timeout is not (Timer B/F = 64·T1, the
        // caller has given up by then; re-sending would ring a call nobody waits for).
        if code == 503 && self.core_failover(id, b, now) {
            return;
        }
        self.reg_branch_failed(id);
        self.branch_final_local(id, b, code, reason, now);
    }
}
