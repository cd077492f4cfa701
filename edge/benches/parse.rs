//! SIP parse and forward-serialise costs on a typical INVITE with SDP.

#[path = "../tests/sip_data/mod.rs"]
mod data;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use edge::sip::{parse, Edit, HeaderName, Limits};

fn benches(c: &mut Criterion) {
    let limits = Limits::default();
    let invite = Bytes::from_static(data::INVITE.as_bytes());
    let mut g = c.benchmark_group("sip");
    g.throughput(Throughput::Bytes(invite.len() as u64));

    g.bench_function("parse_invite", |b| {
        b.iter(|| parse(black_box(invite.clone()), &limits).unwrap())
    });

    g.bench_function("parse_invite_access_via_cseq_callid", |b| {
        b.iter(|| {
            let m = parse(black_box(invite.clone()), &limits).unwrap();
            let via = m.top_via().unwrap();
            let cseq = m.cseq().unwrap();
            black_box((via.branch, cseq.seq, m.call_id()));
        })
    });

    let parsed = parse(invite.clone(), &limits).unwrap();
    g.bench_function("edit_forward_invite", |b| {
        b.iter(|| {
            let m = black_box(&parsed);
            let mut e = Edit::new(m);
            e.prepend(
                HeaderName::Via,
                b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK74bf9.0a1b2c3d",
            );
            let mf = m.max_forwards().unwrap().unwrap_or(70);
            e.set_max_forwards(mf.saturating_sub(1));
            e.prepend(HeaderName::RecordRoute, b"<sip:127.0.0.1:5060;lr>");
            e.finish()
        })
    });

    g.bench_function("parse_validate_edit_forward_invite", |b| {
        b.iter(|| {
            let m = parse(black_box(invite.clone()), &limits).unwrap();
            m.validate_request().unwrap();
            let mut e = Edit::new(&m);
            e.prepend(
                HeaderName::Via,
                b"SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK74bf9.0a1b2c3d",
            );
            e.set_max_forwards(m.max_forwards().unwrap().unwrap_or(70) - 1);
            e.prepend(HeaderName::RecordRoute, b"<sip:127.0.0.1:5060;lr>");
            e.finish()
        })
    });
    g.finish();
}

criterion_group!(sip, benches);
criterion_main!(sip);
