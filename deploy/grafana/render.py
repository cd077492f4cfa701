#!/usr/bin/env python3
"""Draw the dashboard's panels from a test run's series (Grafana is not in Debian).

    DASHBOARD_RENDER_DIR=/tmp/dash cargo test -p e2e --test prometheus_dashboard
    python3 deploy/grafana/render.py /tmp/dash/series.json deploy/grafana/edge-sbc.png

series.json (written by tests/tests/prometheus_dashboard.rs) is a list of
{"panel", "expr", "legend", "result"} where result is Prometheus' query_range matrix. One
subplot per panel, in dashboard order, each query's series labelled by its legendFormat; a
panel whose queries returned nothing says "no data" (a metric not exported yet).
"""
import json
import math
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def legend(fmt, metric):
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt)
    return text.strip() or "value"


def main(src, dst):
    with open(src) as f:
        queries = json.load(f)
    panels = {}
    for q in queries:
        panels.setdefault(q["panel"], []).append(q)
    cols = 5
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 3.6, rows * 2.2), squeeze=False)
    t0 = min(
        (float(v[0]) for q in queries for s in q["result"] for v in s["values"]),
        default=0.0,
    )
    for ax, (title, qs) in zip(axes.flat, panels.items()):
        ax.set_title(title, fontsize=7)
        ax.tick_params(labelsize=5)
        drawn = 0
        for q in qs:
            for s in q["result"][:8]:
                xs = [float(v[0]) - t0 for v in s["values"]]
                ys = [float(v[1]) for v in s["values"]]
                ax.plot(xs, ys, linewidth=0.8, label=legend(q["legend"], s["metric"])[:28])
                drawn += 1
        if drawn:
            ax.legend(fontsize=4, loc="upper left", frameon=False)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", fontsize=8,
                    color="grey", transform=ax.transAxes)
        ax.set_xlabel("s", fontsize=5, labelpad=0)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle("Edge SBC dashboard (deploy/grafana/edge-sbc.json) from the prometheus_dashboard test run",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(dst, dpi=70)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: render.py SERIES_JSON OUT_PNG")
    main(sys.argv[1], sys.argv[2])
