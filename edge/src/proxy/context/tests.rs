use super::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn recv(status: u16) -> Candidate {
    Candidate::Received {
        status,
        msg: b(&format!("SIP/2.0 {status} X")),
    }
}

/// Start a parallel INVITE context over `n` targets, acknowledging every Start.
fn parallel(n: usize) -> ResponseContext {
    let targets = (0..n).map(|i| b(&format!("sip:t{i}@x"))).collect();
    let (mut ctx, acts) = ResponseContext::new(true, targets, false, 5);
    assert_eq!(acts.len(), n);
    for _ in 0..n {
        ctx.branch_started();
    }
    ctx
}

#[test]
fn busy_and_ok_gives_ok() {
    let mut ctx = parallel(2);
    assert!(ctx.on_final(0, recv(486), vec![]).is_empty());
    let acts = ctx.on_final(1, recv(200), vec![]);
    assert_eq!(acts, vec![Action::Forward(b("SIP/2.0 200 X"))]);
    assert!(ctx.is_finished());
}

#[test]
fn ok_cancels_ringing_branch_with_reason() {
    let mut ctx = parallel(2);
    let acts = ctx.on_provisional(0, 180, b("SIP/2.0 180 R"));
    assert_eq!(acts, vec![Action::Forward(b("SIP/2.0 180 R"))]);
    let acts = ctx.on_final(1, recv(200), vec![]);
    assert_eq!(acts[0], Action::Forward(b("SIP/2.0 200 X")));
    assert_eq!(acts[1], Action::Cancel(0, CancelReason::CompletedElsewhere));
    let reason = CancelReason::CompletedElsewhere.header().unwrap();
    assert_eq!(
        &reason[..],
        b"SIP;cause=200;text=\"Call completed elsewhere\""
    );
    // The cancelled branch's 487 is not forwarded: a final was sent already.
    assert!(ctx.on_final(0, recv(487), vec![]).is_empty());
    assert!(ctx.is_finished());
}

#[test]
fn decline_ends_search_and_cancels_other() {
    let mut ctx = parallel(2);
    ctx.on_provisional(1, 180, b("SIP/2.0 180 R"));
    let acts = ctx.on_final(0, recv(603), vec![]);
    assert_eq!(acts, vec![Action::Cancel(1, CancelReason::Declined(603))]);
    let acts = ctx.on_final(1, recv(487), vec![]);
    assert_eq!(acts, vec![Action::Final(recv(603))]);
}

#[test]
fn best_response_prefers_lowest_class() {
    let mut ctx = parallel(3);
    ctx.on_final(0, recv(503), vec![]);
    ctx.on_final(1, recv(404), vec![]);
    let acts = ctx.on_final(2, recv(486), vec![]);
    assert_eq!(acts, vec![Action::Final(recv(404))]);
}

#[test]
fn provisional_100_is_not_forwarded() {
    let mut ctx = parallel(1);
    assert!(ctx.on_provisional(0, 100, b("SIP/2.0 100 T")).is_empty());
}

#[test]
fn redirect_recursion_starts_contacts_once() {
    let mut ctx = parallel(1);
    let acts = ctx.on_final(
        0,
        recv(302),
        vec![b("sip:a@h"), b("sip:b@h"), b("sip:t0@x")],
    );
    assert_eq!(
        acts,
        vec![Action::Start(b("sip:a@h")), Action::Start(b("sip:b@h"))],
        "already-tried target not started again"
    );
    ctx.branch_started();
    ctx.branch_started();
    ctx.on_final(1, recv(486), vec![]);
    let acts = ctx.on_final(2, recv(480), vec![]);
    assert_eq!(acts, vec![Action::Final(recv(480))]);
}

#[test]
fn redirect_limit_makes_3xx_a_candidate() {
    let (mut ctx, _) = ResponseContext::new(true, vec![b("sip:x@y")], false, 0);
    ctx.branch_started();
    let acts = ctx.on_final(0, recv(302), vec![b("sip:a@h")]);
    assert_eq!(acts, vec![Action::Final(recv(302))]);
}

#[test]
fn sequential_tries_one_at_a_time() {
    let targets = vec![b("sip:1@x"), b("sip:2@x")];
    let (mut ctx, acts) = ResponseContext::new(true, targets, true, 5);
    assert_eq!(acts, vec![Action::Start(b("sip:1@x"))]);
    ctx.branch_started();
    let acts = ctx.on_final(0, recv(486), vec![]);
    assert_eq!(acts, vec![Action::Start(b("sip:2@x"))]);
    ctx.branch_started();
    let acts = ctx.on_final(1, recv(200), vec![]);
    assert_eq!(acts, vec![Action::Forward(b("SIP/2.0 200 X"))]);
}

#[test]
fn sequential_stops_after_6xx() {
    let (mut ctx, _) = ResponseContext::new(true, vec![b("sip:1@x"), b("sip:2@x")], true, 5);
    ctx.branch_started();
    let acts = ctx.on_final(0, recv(600), vec![]);
    assert_eq!(acts, vec![Action::Final(recv(600))]);
}

#[test]
fn cancel_waits_for_provisional_then_487_wins() {
    let mut ctx = parallel(2);
    ctx.on_provisional(0, 180, b("SIP/2.0 180 R"));
    let acts = ctx.on_cancel(Some(b("SIP;cause=487")));
    assert_eq!(
        acts,
        vec![Action::Cancel(
            0,
            CancelReason::Upstream(Some(b("SIP;cause=487")))
        )]
    );
    // Branch 1 was silent: its CANCEL goes out with its first provisional (§9.1).
    let acts = ctx.on_provisional(1, 100, b("SIP/2.0 100 T"));
    assert_eq!(
        acts,
        vec![Action::Cancel(
            1,
            CancelReason::Upstream(Some(b("SIP;cause=487")))
        )]
    );
    ctx.on_final(0, recv(487), vec![]);
    let acts = ctx.on_final(1, recv(487), vec![]);
    assert_eq!(acts, vec![Action::Final(recv(487))]);
}

#[test]
fn cancelled_and_timed_out_gives_487() {
    let mut ctx = parallel(1);
    ctx.on_cancel(None);
    let acts = ctx.on_final(
        0,
        Candidate::Local {
            status: 408,
            reason: "Request Timeout",
        },
        vec![],
    );
    assert_eq!(
        acts,
        vec![Action::Final(Candidate::Local {
            status: 487,
            reason: "Request Terminated"
        })]
    );
}

#[test]
fn timer_c_cancels_ringing_or_times_out_silent() {
    let mut ctx = parallel(2);
    ctx.on_provisional(0, 180, b("SIP/2.0 180 R"));
    assert_eq!(
        ctx.on_timer_c(0),
        vec![Action::Cancel(0, CancelReason::Timeout)]
    );
    assert!(ctx.on_timer_c(1).is_empty(), "branch 0 still pending");
    // Both branches ran out of time: the caller learns it was a timeout, not a cancel.
    let acts = ctx.on_final(0, recv(487), vec![]);
    assert_eq!(
        acts,
        vec![Action::Final(Candidate::Local {
            status: 408,
            reason: "Request Timeout"
        })]
    );
}

#[test]
fn non_invite_first_2xx_only() {
    let (mut ctx, _) = ResponseContext::new(false, vec![b("sip:a@b"), b("sip:c@d")], false, 5);
    ctx.branch_started();
    ctx.branch_started();
    assert_eq!(ctx.on_final(0, recv(200), vec![]).len(), 1);
    assert!(ctx.on_final(1, recv(200), vec![]).is_empty());
}

#[test]
fn invite_second_2xx_is_forwarded() {
    let mut ctx = parallel(2);
    ctx.on_final(0, recv(200), vec![]);
    let acts = ctx.on_final(1, recv(200), vec![]);
    assert_eq!(acts, vec![Action::Forward(b("SIP/2.0 200 X"))]);
}
