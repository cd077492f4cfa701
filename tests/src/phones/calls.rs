//! The interop scenarios, written once for any path between two baresip phones (directly through
//! Kamailio, or through the edge and a relay): a call with the peer's tone decoded both ways,
//! hold/resume, blind transfer, MESSAGE. Each returns a one-line summary with the figures, or an
//! error saying which step failed (with the phones' event lists and log tails); the test adds
//! the reports of the servers in between.

use super::baresip::Baresip;
use std::time::Duration;

/// Audio each call carries after both sides are established.
pub const TALK: Duration = Duration::from_millis(3500);
/// Seconds of the peer's tone each direction must decode (of about [`TALK`]).
pub const MIN_TONE_S: f64 = 1.5;
/// Seconds of tone each way before a hold (of about 2 s).
pub const MIN_HOLD_TONE_S: f64 = 0.8;
/// Setup and teardown bound of every step.
pub const STEP: Duration = Duration::from_secs(15);

/// Tone seconds decoded in each direction of one call.
#[derive(Debug, Clone, Copy)]
pub struct TwoWay {
    /// The caller's tone decoded by the callee.
    pub forward: f64,
    /// The callee's tone decoded by the caller.
    pub backward: f64,
}

impl TwoWay {
    fn check(self, what: &str, a: &Baresip, b: &Baresip) -> Result<TwoWay, String> {
        if self.forward >= MIN_TONE_S && self.backward >= MIN_TONE_S {
            return Ok(self);
        }
        Err(format!(
            "{what}: too little audio (need {MIN_TONE_S} s each way): {} decoded {:.1} s of {}'s \
             {} Hz tone, {} decoded {:.1} s of {}'s {} Hz tone\n{}\n{}",
            b.spec.user,
            self.forward,
            a.spec.user,
            a.spec.tone_hz,
            a.spec.user,
            self.backward,
            b.spec.user,
            b.spec.tone_hz,
            phone_state(a),
            phone_state(b)
        ))
    }
}

/// Events and log tail of a phone, for an error message.
pub fn phone_state(p: &Baresip) -> String {
    format!(
        "--- {} events:\n{}\n{}",
        p.spec.aor(),
        p.events_summary(),
        p.log_tail()
    )
}

fn step<T>(what: &str, r: Result<T, String>, phones: &[&Baresip]) -> Result<T, String> {
    r.map_err(|e| {
        let states: Vec<String> = phones.iter().map(|p| phone_state(p)).collect();
        format!("{what}: {e}\n{}", states.join("\n"))
    })
}

/// `a` dials `uri` (which reaches `b`), both reach CALL_ESTABLISHED; returns once they did.
fn connect(a: &Baresip, b: &Baresip, uri: &str) -> Result<(), String> {
    let who = format!("{} calls {uri}", a.spec.user);
    step(&who, a.dial(uri), &[a, b])?;
    step(&who, a.wait_established(STEP), &[a, b])?;
    step(&who, b.wait_established(STEP), &[a, b])?;
    Ok(())
}

/// `a` hangs up; both see the call closed.
fn hang_up(a: &Baresip, b: &Baresip) -> Result<(), String> {
    let who = format!("{} hangs up", a.spec.user);
    step(&who, a.hangup(), &[a, b])?;
    step(&who, a.wait_closed(STEP), &[a, b])?;
    step(&who, b.wait_closed(STEP), &[a, b])?;
    Ok(())
}

/// A call `a` → `b` (dialled as `uri`) with [`TALK`] of audio; each side must decode the
/// other's tone for at least [`MIN_TONE_S`].
pub fn call_with_audio(label: &str, a: &Baresip, b: &Baresip, uri: &str) -> Result<TwoWay, String> {
    let (ma, mb) = (a.recv_mark(), b.recv_mark());
    connect(a, b, uri)?;
    std::thread::sleep(TALK);
    hang_up(a, b)?;
    let got = TwoWay {
        forward: b.received_tone_since(&mb, a.spec.tone_hz)?,
        backward: a.received_tone_since(&ma, b.spec.tone_hz)?,
    };
    eprintln!(
        "AUDIO {label}: {} -> {}: {:.1} s, {} -> {}: {:.1} s",
        a.spec.user, b.spec.user, got.forward, b.spec.user, a.spec.user, got.backward
    );
    got.check(label, a, b)
}

/// `a` calls `b`, puts the call on hold (re-INVITE `a=sendonly`, answered `recvonly`), resumes
/// it (`sendrecv`) and talks for [`TALK`] more; the call must survive both re-INVITEs.
///
/// Audio: before the hold each side must decode at least [`MIN_HOLD_TONE_S`] of the other's
/// tone. After the resume baresip 1.0's `sndfile` dump records nothing (it restarts its player
/// on the hold re-INVITE; the same without the edge), so the decoded figures after the resume
/// are printed, not asserted. What is asserted after the resume, when `relayed` is given (a
/// counter of packets the relay forwarded, e.g. `rtprelay_packets_forwarded_total`, with no
/// other call up): that the relay forwarded more than one direction's worth of packets in
/// [`TALK`] (each phone sends 50 packets/s), i.e. media flows both ways again.
pub fn hold_resume(
    label: &str,
    a: &Baresip,
    b: &Baresip,
    uri: &str,
    relayed: Option<&dyn Fn() -> f64>,
) -> Result<TwoWay, String> {
    let (ma, mb) = (a.recv_mark(), b.recv_mark());
    connect(a, b, uri)?;
    std::thread::sleep(Duration::from_millis(2000));
    let before = TwoWay {
        forward: b.received_tone_since(&mb, a.spec.tone_hz)?,
        backward: a.received_tone_since(&ma, b.spec.tone_hz)?,
    };
    step(&format!("{} holds", a.spec.user), a.hold(), &[a, b])?;
    std::thread::sleep(Duration::from_secs(1));
    step(&format!("{} resumes", a.spec.user), a.resume(), &[a, b])?;
    let (ra, rb) = (a.recv_mark(), b.recv_mark());
    // The resume's re-INVITE is answered; give the phones a moment to start sending again.
    std::thread::sleep(Duration::from_millis(500));
    let before_talk = relayed.map(|f| f());
    std::thread::sleep(TALK);
    let relayed_after = relayed.zip(before_talk).map(|(f, b0)| f() - b0);
    hang_up(a, b)?;
    let after = TwoWay {
        forward: b.received_tone_since(&rb, a.spec.tone_hz)?,
        backward: a.received_tone_since(&ra, b.spec.tone_hz)?,
    };
    eprintln!(
        "AUDIO {label}: before hold {} -> {}: {:.1} s, {} -> {}: {:.1} s; after resume \
         (baresip dump, not asserted) {:.1} s / {:.1} s",
        a.spec.user,
        b.spec.user,
        before.forward,
        b.spec.user,
        a.spec.user,
        before.backward,
        after.forward,
        after.backward
    );
    if let Some(n) = relayed_after {
        let one_way = 50.0 * TALK.as_secs_f64();
        eprintln!(
            "AUDIO {label}: after resume the relay forwarded {n:.0} packets in {:.1} s (one direction ≈ {one_way:.0}, both ≈ {:.0})",
            TALK.as_secs_f64(),
            2.0 * one_way
        );
        if n < 1.5 * one_way {
            return Err(format!(
                "{label}: after the resume the relay forwarded {n:.0} packets in {:?}: media                  does not flow both ways (one direction ≈ {one_way:.0})\n{}\n{}",
                TALK,
                phone_state(a),
                phone_state(b)
            ));
        }
    }
    if before.forward < MIN_HOLD_TONE_S || before.backward < MIN_HOLD_TONE_S {
        return Err(format!(
            "{label}: too little audio before the hold (need {MIN_HOLD_TONE_S} s each way): \
             {before:?}\n{}\n{}",
            phone_state(a),
            phone_state(b)
        ));
    }
    Ok(after)
}

/// Blind transfer: `a` calls `b` (`b_uri`), `b` transfers `a` to `c_uri` (REFER); `a` must end
/// up in a call with `c`, both decoding the other's tone, and `b`'s call must end.
pub fn blind_transfer(
    label: &str,
    a: &Baresip,
    b: &Baresip,
    c: &Baresip,
    b_uri: &str,
    c_uri: &str,
) -> Result<TwoWay, String> {
    connect(a, b, b_uri)?;
    std::thread::sleep(Duration::from_secs(1));
    let (ma, mc) = (a.recv_mark(), c.recv_mark());
    let who = format!("{} transfers {} to {c_uri}", b.spec.user, a.spec.user);
    step(&who, b.transfer(c_uri), &[a, b, c])?;
    step(
        &who,
        a.wait_established_with(c_uri, STEP)
            .map_err(|e| format!("the transferee did not reach the target: {e}")),
        &[a, b, c],
    )?;
    step(&who, c.wait_established(STEP), &[a, b, c])?;
    step(
        &who,
        b.wait_closed(STEP)
            .map_err(|e| format!("the transferor's call did not end: {e}")),
        &[a, b, c],
    )?;
    // The transferee's first call (with b) ends too.
    step(&who, a.wait_closed(STEP), &[a, b, c])?;
    std::thread::sleep(TALK);
    hang_up(a, c)?;
    let got = TwoWay {
        forward: c.received_tone_since(&mc, a.spec.tone_hz)?,
        backward: a.received_tone_since(&ma, c.spec.tone_hz)?,
    };
    eprintln!(
        "AUDIO {label} (after transfer): {} -> {}: {:.1} s, {} -> {}: {:.1} s",
        a.spec.user, c.spec.user, got.forward, c.spec.user, a.spec.user, got.backward
    );
    got.check(&format!("{label} after transfer"), a, c)
}

/// `a` sends a MESSAGE to `uri` (its configured contact), `b` must print it.
pub fn message(label: &str, a: &Baresip, b: &Baresip, uri: &str) -> Result<(), String> {
    let text = format!("hello-{}-{}", b.spec.user, std::process::id());
    let who = format!("{label}: {} sends MESSAGE to {uri}", a.spec.user);
    step(&who, a.message(uri, &text), &[a, b])?;
    let line = step(&who, b.wait_message_received(&text, STEP), &[a, b])?;
    eprintln!("MESSAGE {label}: {} received {line}", b.spec.user);
    Ok(())
}
