#!/usr/bin/env python3
"""Summarise JMeter .jtl results per scenario and per run, and chart them.

Reads CSV .jtl files named <scenario>-run<N>.jtl (what jmeter/run.sh
writes; any other name counts as its own scenario, run 1) and prints one row
per run and one per scenario (its runs pooled): samples, errors, throughput,
response time mean/p50/p90/p99/max in ms, and the most users active at once.
throughput_per_s is samples over the span from the first sample's start to
the last one's end, ramp-up included, as JMeter's own summariser counts it;
full_load_per_s counts only the samples started while all users were active,
over that time. Percentiles are nearest-rank over every sample.

Writes summary.md and summary.csv beside the first .jtl (or to --out), and
with --chart a PNG: response-time distribution by scenario and run (box:
p25-p75, line: median, diamond: mean, whiskers: p1-p99) and full-load
throughput by scenario and run. The summary needs only the standard library; the chart
needs matplotlib.
"""

import argparse
import csv
import math
import re
import sys
from pathlib import Path

FLOOR_MS = 0.1  # JMeter counts whole ms; a log axis cannot show its 0 ms samples
NAME = re.compile(r"^(?P<scenario>.+)-run(?P<run>\d+)$")
COLUMNS = ["scenario", "run", "users", "samples", "errors", "error_%", "throughput_per_s",
           "full_load_per_s", "mean_ms", "p50_ms", "p90_ms", "p99_ms", "max_ms"]


def scenario_order(name):
    """seed-1 < seed-50 < seed-500 < seed-1000, then anything else by name."""
    numbers = re.findall(r"\d+", name)
    return (re.sub(r"\d+", "", name), int(numbers[-1]) if numbers else 0, name)


def percentile(sorted_values, p):
    return sorted_values[max(0, math.ceil(p / 100 * len(sorted_values)) - 1)]


class Run:
    """One .jtl: every sample's response time, plus what throughput needs."""

    def __init__(self, path):
        samples = []  # (start ms, elapsed ms, threads active)
        self.errors = 0
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                samples.append((int(row["timeStamp"]), int(row["elapsed"]), int(row.get("allThreads") or 0)))
                self.errors += row["success"] != "true"
        self.elapsed = [ms for _, ms, _ in samples]
        self.users = max((n for _, _, n in samples), default=0)
        self.span = 0.0
        self.full_load = (0, 0.0)  # samples started while all users were active, and that span in s
        if samples:
            self.span = (max(ts + ms for ts, ms, _ in samples) - min(ts for ts, _, _ in samples)) / 1000
            full = [ts for ts, _, n in samples if n == self.users]
            self.full_load = (len(full), (max(full) - min(full)) / 1000)


def rate(count, span):
    return round(count / span, 1) if span > 0 else 0.0


def stats(scenario, run, runs):
    """One summary row over the samples of runs (one run, or a scenario's runs pooled)."""
    values = sorted(ms for r in runs for ms in r.elapsed)
    n = len(values)
    users = max(r.users for r in runs)
    if n == 0:
        return dict(scenario=scenario, run=run, users=users, samples=0, errors=0)
    errors = sum(r.errors for r in runs)
    return {
        "scenario": scenario, "run": run, "users": users, "samples": n, "errors": errors,
        "error_%": round(100 * errors / n, 2),
        "throughput_per_s": rate(n, sum(r.span for r in runs)),
        "full_load_per_s": rate(sum(r.full_load[0] for r in runs), sum(r.full_load[1] for r in runs)),
        "mean_ms": round(sum(values) / n, 1),
        "p50_ms": percentile(values, 50), "p90_ms": percentile(values, 90),
        "p99_ms": percentile(values, 99), "max_ms": values[-1],
    }


def collect(jtls):
    """{scenario: {run number: Run}}, scenarios in seed order."""
    runs = {}
    for path in jtls:
        m = NAME.match(path.stem)
        scenario, number = (m["scenario"], int(m["run"])) if m else (path.stem, 1)
        runs.setdefault(scenario, {})[number] = Run(path)
    return {s: dict(sorted(runs[s].items())) for s in sorted(runs, key=scenario_order)}


def summarise(runs):
    rows = []
    for scenario, by_run in runs.items():
        for number, run in by_run.items():
            rows.append(stats(scenario, str(number), [run]))
        if len(by_run) > 1:
            rows.append(stats(scenario, "all", list(by_run.values())))
    return rows


def markdown(rows):
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def chart(runs, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    positions, data, means, labels, ticks, colours = [], [], [], [], [], []
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    x = 0
    for scenario, by_run in runs.items():
        first = x
        for number, run in by_run.items():
            positions.append(x)
            data.append([max(ms, FLOOR_MS) for ms in run.elapsed] or [FLOOR_MS])
            means.append(sum(run.elapsed) / len(run.elapsed) if run.elapsed else FLOOR_MS)
            colours.append(palette[(number - 1) % len(palette)])
            x += 1
        ticks.append((first + x - 1) / 2)
        labels.append(scenario)
        x += 1
    boxes = left.boxplot(data, positions=positions, whis=(1, 99), showfliers=False, patch_artist=True,
                         widths=0.7, medianprops={"color": "black"})
    left.scatter(positions, means, marker="D", color="black", s=14, zorder=3)
    for patch, colour in zip(boxes["boxes"], colours):
        patch.set_facecolor(colour)
        patch.set_alpha(0.75)
    left.set_yscale("log")
    left.set_xticks(ticks, labels)
    left.set_ylabel("response time (ms, log)")
    left.set_title("response time by scenario and run: box p25-p75, line median,\n"
                   f"diamond mean, whiskers p1-p99 (0 ms, i.e. under 1 ms, drawn at {FLOOR_MS})")
    left.grid(axis="y", which="both", alpha=0.3)

    max_runs = max(max(by_run) for by_run in runs.values())
    width = 0.8 / max_runs
    for number in range(1, max_runs + 1):
        xs, ys = [], []
        for i, by_run in enumerate(runs.values()):
            if number in by_run:
                xs.append(i + (number - 1) * width)
                ys.append(rate(*by_run[number].full_load))
        right.bar(xs, ys, width, label=f"run {number}", color=palette[(number - 1) % len(palette)], alpha=0.75)
    right.set_xticks([i + width * (max_runs - 1) / 2 for i in range(len(runs))], list(runs))
    right.set_ylabel("samples/s")
    right.set_title("throughput by scenario and run\n(while all users were active)")
    right.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help=".jtl files or directories holding them")
    parser.add_argument("--out", help="directory for summary.md, summary.csv (default: the first .jtl's)")
    parser.add_argument("--chart", action="store_true", help="also draw chart.png (needs matplotlib)")
    parser.add_argument("--title", default="clickstream-gateway POST /import, JMeter")
    args = parser.parse_args()

    jtls = []
    for p in map(Path, args.paths):
        jtls += sorted(p.glob("*.jtl")) if p.is_dir() else [p]
    if not jtls:
        sys.exit("no .jtl files")
    out = Path(args.out) if args.out else jtls[0].parent
    out.mkdir(parents=True, exist_ok=True)

    runs = collect(jtls)
    rows = summarise(runs)
    table = markdown(rows)
    (out / "summary.md").write_text(table)
    with open(out / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(table, end="")
    print(f"wrote {out / 'summary.md'} and {out / 'summary.csv'}")
    if args.chart:
        chart(runs, out / "chart.png", args.title)
        print(f"wrote {out / 'chart.png'}")


if __name__ == "__main__":
    main()
