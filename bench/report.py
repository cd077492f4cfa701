#!/usr/bin/env python3
"""Result lines and report for bench/compare.sh.

  report.py sipp  --stat STAT.csv --rtt RTT.csv --workload W --system S --offered R
                  --ops-per-call K --duration D --cpu NAME=TICKS... --rss NAME=KB...
      one JSON line for one SIPp step (SIPp's -trace_stat CSV and -trace_rtt CSV)
  report.py rtp   --line JSON --workload W --system S --offered R --duration D
      one JSON line from one bench/relay_compare.sh line (rtpload --json inside)
  report.py render --jsonl RUNS.jsonl --header HEADER.md --out DIR
      DIR/report.md (a table per workload) and DIR/<workload>-cpu.png, -p99.png

A report can be re-made from the raw JSON lines alone (render). Failure rule used for stepping:
failed > 1 % of attempted, or retransmissions > 1 % of attempted messages' calls (SIPp's
Retransmissions counter ÷ attempted calls), or for RTP loss > 1 % or backlog > 1 % of sent.
"""
import argparse
import json
import os
import sys

CLK_TCK = os.sysconf("SC_CLK_TCK")
LIMIT = 0.01


def stat_last(path):
    """The last row of a SIPp statistics CSV as a dict (header → value)."""
    with open(path, encoding="latin-1") as f:
        rows = [line.rstrip("\n").split(";") for line in f if line.strip()]
    if len(rows) < 2:
        return {}
    head = rows[0]
    return dict(zip(head, rows[-1]))


def num(d, key):
    try:
        return float(d.get(key, "nan"))
    except ValueError:
        return float("nan")


def percentile(sorted_vals, q):
    if not sorted_vals:
        return None
    i = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[i]


def read_rtt(path):
    """(dates_ms, response_ms) from SIPp's -trace_rtt file (Date_ms;response_time_ms;rtd_no)."""
    dates, rts = [], []
    if not path or not os.path.exists(path):
        return dates, rts
    with open(path, encoding="latin-1") as f:
        for line in f:
            parts = line.strip().split(";")
            if len(parts) < 2:
                continue
            try:
                dates.append(float(parts[0]))
                rts.append(float(parts[1]))
            except ValueError:
                continue
    return dates, rts


def kv(pairs):
    out = {}
    for p in pairs or []:
        k, _, v = p.partition("=")
        try:
            out[k] = float(v)
        except ValueError:
            out[k] = None
    return out


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def cmd_sipp(a):
    st = stat_last(a.stat)
    calls_ok = num(st, "SuccessfulCall(C)")
    calls_failed = num(st, "FailedCall(C)")
    created = num(st, "OutgoingCall(C)")
    retrans = num(st, "Retransmissions(C)")
    dates, rts = read_rtt(a.rtt)
    rts.sort()
    ops = calls_ok * a.ops_per_call if calls_ok == calls_ok else 0
    # Held rate: operations answered ÷ the span over which answers arrived (SIPp's rtt dates);
    # a system that falls behind spreads the same answers over a longer time.
    held = None
    if len(dates) > 1 and max(dates) > min(dates):
        span = (max(dates) - min(dates)) / 1000.0
        held = len(dates) / span * (a.ops_per_call / a.rtd_per_call)
    elif a.duration:
        held = ops / a.duration
    cpu_ticks = kv(a.cpu)
    cpu_s = {k: (v / CLK_TCK if v is not None else None) for k, v in cpu_ticks.items()}
    total_s = sum(v for v in cpu_s.values() if v is not None)
    attempted = created if created == created and created > 0 else float(a.attempted or 0)
    fail_frac = (calls_failed / attempted) if attempted else 1.0
    retr_frac = (retrans / attempted) if attempted else 1.0
    line = {
        "workload": a.workload,
        "system": a.system,
        "offered": a.offered,
        "unit": a.unit,
        "duration_s": a.duration,
        "attempted_calls": attempted,
        "ops_per_call": a.ops_per_call,
        "ok_ops": ops,
        "held": round(held, 1) if held is not None else None,
        "failed": calls_failed,
        "retransmissions": retrans,
        "p50_ms": percentile(rts, 0.50),
        "p99_ms": percentile(rts, 0.99),
        "rtt_samples": len(rts),
        "cpu_s": cpu_s,
        "cpu_us_per_op": round(total_s * 1e6 / ops, 1) if ops else None,
        "cpu_us_per_op_by_process": {
            k: (round(v * 1e6 / ops, 1) if ops and v is not None else None) for k, v in cpu_s.items()
        },
        "rss_kb": kv(a.rss),
        "pass": bool(attempted and fail_frac <= LIMIT and retr_frac <= LIMIT and calls_ok == calls_ok),
        "loadavg_after": loadavg(),
        "note": (a.note or "").strip(),
    }
    if a.relay_packets:
        line["relay_packets"] = int(a.relay_packets)
    print(json.dumps(line))


def cmd_rtp(a):
    src = json.loads(a.line)
    r = src["result"]
    proc = r.get("relay_process") or {}
    sent = r.get("sent") or 0
    loss = r.get("loss_percent")
    backlog = r.get("backlog") or 0
    ok = sent > 0 and loss is not None and loss <= LIMIT * 100 and backlog <= LIMIT * sent
    line = {
        "workload": a.workload,
        "system": a.system,
        "offered": a.offered,
        "unit": "packets/s",
        "duration_s": a.duration,
        "attempted_calls": r.get("streams"),
        "ops_per_call": None,
        "ok_ops": r.get("received"),
        "held": r.get("forwarded_pps"),
        "failed": r.get("lost"),
        "retransmissions": None,
        "backlog": backlog,
        "loss_percent": loss,
        "p50_ms": (r.get("latency_p50_us") or 0) / 1000.0,
        "p99_ms": (r.get("latency_p99_us") or 0) / 1000.0,
        "cpu_s": {a.system: proc.get("cpu_s")},
        "cpu_us_per_op": proc.get("cpu_us_per_packet"),
        "cpu_us_per_op_by_process": {a.system: proc.get("cpu_us_per_packet")},
        "rss_kb": {a.system: round((proc.get("rss_end_bytes") or 0) / 1024)},
        "pass": bool(ok),
        "loadavg_after": src.get("loadavg"),
        "note": a.note or "",
        "raw": src,
    }
    print(json.dumps(line))


TITLES = {
    "register_forwarded": "1. REGISTER forwarded to the core",
    "register_absorbed": "2. REGISTER absorbed (refreshes answered by the edge / Kamailio)",
    "calls": "3. Calls (INVITE/200/ACK/BYE with SDP, no media anchoring)",
    "media_calls": "4. Calls with media anchoring and real RTP (5 s G.711 each way)",
    "rtp": "5. RTP load through the relay (rtpload, 2,000 streams)",
}


def fmt(v, nd=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        if v != v:
            return "–"
        if nd == 0 or abs(v) >= 100:
            return f"{v:.0f}"
        return f"{v:.{nd}f}"
    return str(v)


def pkts(l):
    """Packets the relay forwarded per successful call (media: ≈ 500 = 250 each way)."""
    n, ops = l.get("relay_packets"), l.get("ok_ops")
    return f" {n / ops:.0f} |" if n is not None and ops else " – |"


def ours(system):
    return system.startswith("edge") or system.startswith("rtprelay")


# The RTP baseline (bench/src/bin/mmsgfwd.rs): neither ours nor theirs; every RTP row is also
# shown as CPU/packet ÷ its CPU/packet at the same offered rate (issue 12: io_uring ≤ 1.1).
BASELINE = "mmsgfwd"


def render(a):
    lines = []
    with open(a.jsonl) as f:
        for raw in f:
            raw = raw.strip()
            if raw.startswith("{"):
                lines.append(json.loads(raw))
    os.makedirs(a.out, exist_ok=True)
    out = []
    if a.header and os.path.exists(a.header):
        out.append(open(a.header).read().rstrip() + "\n")
    out.append(
        "Columns: *offered* = rate asked of SIPp/rtpload; *held* = answered operations ÷ the "
        "span over which the answers arrived (RTP: packets forwarded within the window ÷ s); "
        "*failed* = failed SIPp calls (RTP: lost packets); *retr.* = SIPp retransmissions "
        "(calls' messages resent); p50/p99 = SIPp response time of each measured request "
        "(1 ms resolution: 0 means < 1 ms; RTP: relay latency); *CPU µs/op* = utime+stime of the "
        "processes under test ÷ successful operations (per process in parentheses); "
        "*ours÷theirs* = our CPU/op ÷ the other system's at the same offered rate; *÷mmsgfwd* "
        "(RTP) = CPU/packet ÷ that of mmsgfwd, the plain recvmmsg/sendmmsg forwarder, at the "
        "same rate (issue 12's goal for io_uring: ≤ 1.10); *relay "
        "pkts/call* = packets the relay forwarded in the step ÷ successful calls (5 s of 20 ms "
        "packets each way ≈ 500; proof that media flowed); *RSS* = peak "
        "resident set (VmHWM; Kamailio: summed over its processes, shared memory counted once "
        "per process). A step fails (✗) when failed or retransmissions exceed 1 % of attempts "
        "(RTP: loss or backlog > 1 %); a system's stepping stops at its first failure.\n"
    )
    workloads = []
    for l in lines:
        if l["workload"] not in workloads:
            workloads.append(l["workload"])
    for w in workloads:
        rows = [l for l in lines if l["workload"] == w]
        if w == "keepalives":
            out.extend(keepalive_table(rows))
            continue
        if w == "soak":
            out.extend(soak_table(rows))
            continue
        systems = []
        for l in rows:
            if l["system"] not in systems:
                systems.append(l["system"])
        unit = rows[0].get("unit", "")
        out.append(f"## {TITLES.get(w, w)}\n")
        out.append(f"Unit: {unit}. Plots: `{w}-cpu.png`, `{w}-p99.png`.\n")
        pk = any("relay_packets" in l for l in rows)
        base = {
            l["offered"]: l["cpu_us_per_op"]
            for l in rows
            if l["system"] == BASELINE and l.get("cpu_us_per_op")
        }
        bl = bool(base)
        out.append(
            "| system | offered | held | failed | retr. | p50 ms | p99 ms | CPU µs/op (by process) "
            "| ours÷theirs |" + (f" ÷{BASELINE} |" if bl else "") + " RSS MiB |"
            + (" relay pkts/call |" if pk else "") + " ok |"
        )
        out.append(
            "|---|---|---|---|---|---|---|---|---|" + ("---|" if bl else "") + "---|"
            + ("---|" if pk else "") + "---|"
        )
        # Reference CPU per op of "theirs" at each offered rate (the baseline is not theirs).
        theirs = {}
        for l in rows:
            if (
                not ours(l["system"])
                and l["system"] != BASELINE
                and l.get("cpu_us_per_op") is not None
            ):
                theirs.setdefault(l["offered"], l["cpu_us_per_op"])
        for l in sorted(rows, key=lambda l: (systems.index(l["system"]), l["offered"])):
            by = l.get("cpu_us_per_op_by_process") or {}
            by_s = ", ".join(f"{k} {fmt(v)}" for k, v in by.items()) if len(by) > 1 else ""
            cpu = fmt(l.get("cpu_us_per_op")) + (f" ({by_s})" if by_s else "")
            ratio = "–"
            if ours(l["system"]) and l.get("cpu_us_per_op") and theirs.get(l["offered"]):
                ratio = f"{l['cpu_us_per_op'] / theirs[l['offered']]:.2f}"
            vs_base = ""
            if bl:
                b = base.get(l["offered"])
                vs_base = (
                    f" {l['cpu_us_per_op'] / b:.2f} |" if b and l.get("cpu_us_per_op") else " – |"
                )
            rss = l.get("rss_kb") or {}
            rss_s = ", ".join(
                f"{k} {v / 1024:.0f}" if v else f"{k} –" for k, v in rss.items()
            )
            out.append(
                f"| {l['system']} | {fmt(l['offered'], 0)} | {fmt(l.get('held'), 0)} | "
                f"{fmt(l.get('failed'), 0)} | {fmt(l.get('retransmissions'), 0)} | "
                f"{fmt(l.get('p50_ms'), 2)} | {fmt(l.get('p99_ms'), 2)} | {cpu} | {ratio} |{vs_base} "
                f"{rss_s} |{pkts(l) if pk else ''} {'✓' if l.get('pass') else '✗'} |"
            )
        notes = sorted({l.get("note") for l in rows if l.get("note")})
        if notes:
            out.append("")
            for n in notes:
                out.append(f"- {n}")
        out.append("")
        plot(w, rows, systems, a.out, unit)
    with open(os.path.join(a.out, "report.md"), "w") as f:
        f.write("\n".join(out) + "\n")
    print(os.path.join(a.out, "report.md"))


def soak_table(rows):
    """Sustained calls (edge only): the transaction table must not reach its limit."""
    t = [
        "## Soak: sustained calls through the edge (lean transactions)\n",
        "SIPp's built-in uac/uas (INVITE…BYE, no SDP) at a fixed rate. Transactions sampled "
        "every 10 s from /metrics (*live* = all, *in progress* = before their final response, "
        "what `limits.max_transactions` bounds). *B/call held* = (peak RSS − RSS at start) ÷ "
        "(rate × 32 s), the calls whose RFC 3261/6026 wait timers run at once.\n",
        "| rate | s | calls | ok | failed | retr. | CPU µs/call | RSS start→peak MiB "
        "| B/call held | max live tx | max in progress | limit | 5xx sent | ok |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for l in rows:
        t.append(
            f"| {l.get('rate')} | {l.get('duration_s')} | {l.get('calls')} | {l.get('ok')} | "
            f"{l.get('failed')} | {l.get('retransmissions')} | {fmt(l.get('cpu_us_per_call'))} | "
            f"{(l.get('rss_start_kb') or 0) / 1024:.0f}→{(l.get('rss_peak_kb') or 0) / 1024:.0f} | "
            f"{l.get('bytes_per_call_held')} | {l.get('max_transactions_active')} | "
            f"{l.get('max_transactions_in_progress')} | {l.get('transactions_limit')} | "
            f"{l.get('responses_5xx')} | {'✓' if l.get('pass') else '✗'} |"
        )
    t.append("")
    return t


def keepalive_table(rows):
    """NAT keepalives (edge only): the goal is under 25 % of one core for 100,000 bindings
    pinged every 30 s, with the pings answered."""
    t = [
        "## NAT keepalives (edge, stateless OPTIONS)\n",
        "Bindings registered through SIPp from one NATed-looking source, pinged by the edge "
        "every *interval*; a SIPp with `-aa` answers from the phones' address. CPU = edge "
        "utime+stime over the measured window ÷ window. Goal: < 25 % of one core.\n",
        "| bindings | registered | interval s | window s | pings sent | unanswered | edge % of one core "
        "| µs/ping | RSS MiB | ok |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for l in rows:
        t.append(
            f"| {l.get('bindings')} | {l.get('registered')} | {l.get('interval_s')} | "
            f"{l.get('window_s')} | {l.get('pings_sent')} | {l.get('pings_failed')} | "
            f"{fmt(l.get('edge_core_pct'))} | {fmt(l.get('us_per_ping'))} | "
            f"{(l.get('edge_rss_kb') or 0) / 1024:.0f} | {'✓' if l.get('pass') else '✗'} |"
        )
    t.append("")
    return t


def plot(w, rows, systems, out_dir, unit):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plots", file=sys.stderr)
        return
    for key, label, name in (
        ("cpu_us_per_op", "CPU µs per operation", "cpu"),
        ("p99_ms", "p99 response time (ms)", "p99"),
    ):
        fig, ax = plt.subplots(figsize=(6, 4))
        for s in systems:
            pts = sorted((l["offered"], l.get(key)) for l in rows if l["system"] == s and l.get(key) is not None)
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=s)
            for l in rows:
                if l["system"] == s and not l.get("pass") and l.get(key) is not None:
                    ax.plot([l["offered"]], [l[key]], marker="x", color="red", markersize=10)
        ax.set_xlabel(f"offered ({unit})")
        ax.set_ylabel(label)
        ax.set_title(f"{TITLES.get(w, w)}"[:70], fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, f"{w}-{name}.png"), dpi=100)
        plt.close(fig)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sipp")
    s.add_argument("--stat", required=True)
    s.add_argument("--rtt")
    s.add_argument("--workload", required=True)
    s.add_argument("--system", required=True)
    s.add_argument("--offered", type=float, required=True)
    s.add_argument("--unit", default="/s")
    s.add_argument("--ops-per-call", type=int, default=1)
    s.add_argument("--rtd-per-call", type=int, default=1)
    s.add_argument("--attempted", type=float)
    s.add_argument("--duration", type=float)
    s.add_argument("--cpu", nargs="*")
    s.add_argument("--rss", nargs="*")
    s.add_argument("--relay-packets")
    s.add_argument("--note")
    s.set_defaults(fn=cmd_sipp)
    r = sub.add_parser("rtp")
    r.add_argument("--line", required=True)
    r.add_argument("--workload", default="rtp")
    r.add_argument("--system", required=True)
    r.add_argument("--offered", type=float, required=True)
    r.add_argument("--duration", type=float)
    r.add_argument("--note")
    r.set_defaults(fn=cmd_rtp)
    d = sub.add_parser("render")
    d.add_argument("--jsonl", required=True)
    d.add_argument("--header")
    d.add_argument("--out", required=True)
    d.set_defaults(fn=render)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
