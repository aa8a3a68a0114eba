"""Results of a benchmark run: aggregation, the console table, the machine
description, the JSON results file and docs/PERFORMANCE.md."""

import datetime
import json
import os
import platform
import statistics
import subprocess
from pathlib import Path

import _catalog
import _cluster

STOCK, MPHOST = "stock", "mphost"


# ---- aggregation -----------------------------------------------------------

def summarize(outcomes):
    """One interpreter's runs of one row -> dict with status, values, median..."""
    values = [o.value for o in outcomes if o.status == "ok"]
    bad = next((o for o in outcomes if o.status != "ok"), None)
    summary = {
        "status": bad.status if bad else ("ok" if outcomes else "not run"),
        "message": bad.message if bad else "",
        "values": values,
        "median": statistics.median(values) if values else None,
        "min": min(values) if values else None,
        "max": max(values) if values else None,
        "outcomes": [o.to_json() for o in outcomes],
    }
    if bad and bad.status != "unsupported" and bad.stderr_tail:
        summary["stderr_tail"] = bad.stderr_tail
    summary["cpu_us_per_item"] = _cpu_summary(outcomes)
    return summary


def _cpu_summary(outcomes):
    """CPU µs (user + system of the scenario's whole process tree, measured
    section only) per message, task or round trip, over the good runs; None
    when the scenario does not report it."""
    values, totals = [], []
    for o in outcomes:
        rec = o.record or {}
        if o.status == "ok" and rec.get("cpu_items") and rec.get("cpu_s") is not None:
            values.append(rec["cpu_s"] / rec["cpu_items"] * 1e6)
            totals.append(rec["cpu_s"])
    if not values:
        return None
    return {"values": values, "median": statistics.median(values),
            "min": min(values), "max": max(values), "cpu_s_median": statistics.median(totals)}


#: Below this many CPU seconds in the section, the clock ticks (10 ms per
#: process) are too coarse for a ratio.
CPU_RESOLUTION_S = 0.05


def cpu_ratio(stock, mphost):
    """stock / mphost CPU per item (> 1: mphost uses less CPU); None if unknown."""
    s, m = stock.get("cpu_us_per_item"), mphost.get("cpu_us_per_item")
    if not s or not m or stock["status"] != "ok" or mphost["status"] != "ok":
        return None
    if min(s.get("cpu_s_median", 1), m.get("cpu_s_median", 1)) < CPU_RESOLUTION_S:
        return None
    if not m["median"]:
        return None if not s["median"] else float("inf")
    return s["median"] / m["median"]


def ratio(higher_is_better, stock, mphost):
    """How many times better mphost is (> 1: mphost better); None if unknown."""
    if not stock or not mphost:
        return None
    return mphost / stock if higher_is_better else stock / mphost


def row_result(row, stock_outcomes, mphost_outcomes, limits):
    stock, mph = summarize(stock_outcomes), summarize(mphost_outcomes)
    record = next((o.record for o in stock_outcomes + mphost_outcomes if o.record), None) or {}
    higher = record.get("higher_is_better", True)
    r = ratio(higher, stock["median"], mph["median"]) \
        if stock["status"] == "ok" and mph["status"] == "ok" else None
    target = row.target
    return {
        "id": row.id, "title": row.title, "script": row.script, "args": list(row.args),
        "unit": record.get("unit", ""), "metric": record.get("metric", ""),
        "higher_is_better": higher,
        "target": None if target is None else
        {"kind": target.kind, "value": target.value, "text": target.text},
        "limit": _catalog.describe_limit(row.limit, limits),
        STOCK: stock, MPHOST: mph, "ratio": r,
        "cpu_ratio": cpu_ratio(stock, mph),
        "cpu_met": None if cpu_ratio(stock, mph) is None else round(cpu_ratio(stock, mph), 2) >= 1,
        "target_ratio": None if target is None else target.as_ratio(stock["median"]),
        "target_met": None if target is None or mph["status"] != "ok"
        or (r is None and target.kind == "ratio") else target.met(r, mph["median"]),
    }


# ---- formatting ------------------------------------------------------------

fmt = _catalog.fmt


def fmt_ratio(r):
    if r == float("inf"):
        return "∞"
    return "-" if r is None else f"{r:.2f}×"


def failure_text(summary, which):
    status = summary["status"]
    msg = summary["message"]
    if status == "wrong":
        return f"WRONG RESULT: {msg}"
    if which == MPHOST and status in ("unsupported", "error", "hang"):
        kind = {"unsupported": "", "error": " (error)", "hang": " (hang)"}[status]
        return f"not supported yet{kind}: {msg}"
    return f"{status}: {msg}"


def cell(summary, which, spread=True):
    if summary["status"] != "ok":
        return failure_text(summary, which)
    text = fmt(summary["median"])
    if spread and len(summary["values"]) > 1:
        text += f" ({fmt(summary['min'])}–{fmt(summary['max'])})"
    return text


def cpu_cell(summary, spread=True):
    c = summary.get("cpu_us_per_item") if summary["status"] == "ok" else None
    if not c:
        return "-"
    text = fmt(c["median"])
    if spread and len(c["values"]) > 1:
        text += f" ({fmt(c['min'])}–{fmt(c['max'])})"
    return text


def cpu_met_text(res):
    return "-" if res.get("cpu_met") is None else ("yes" if res["cpu_met"] else "no")


def met_text(res):
    if res["target"] is None:
        return "no target"
    if res["target_met"] is None:
        return "n/a"
    return "yes" if res["target_met"] else "no"


def console_table(results):
    head = ("scenario", "unit", "stock", "mphost", "ratio", "target", "met",
            "cpu µs/item stock", "mphost", "cpu ratio")
    rows = []
    for res in results:
        rows.append((res["id"], res["unit"], cell(res[STOCK], STOCK, False),
                     cell(res[MPHOST], MPHOST, False), fmt_ratio(res["ratio"]),
                     res["target"]["text"] if res["target"] else "-", met_text(res),
                     cpu_cell(res[STOCK], False), cpu_cell(res[MPHOST], False),
                     fmt_ratio(res.get("cpu_ratio"))))
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    widths[3] = min(widths[3], 60)
    lines = []
    for r in [head] + rows:
        parts = []
        for i, v in enumerate(r):
            v = str(v)
            if len(v) > widths[i]:
                v = v[:widths[i] - 1] + "…"
            parts.append(v.ljust(widths[i]))
        lines.append("  ".join(parts).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("ratio > 1 means mphost is better (mphost/stock for throughputs, "
                 "stock/mphost for times and sizes); cpu ratio = stock/mphost CPU per item")
    return "\n".join(lines)


# ---- machine ---------------------------------------------------------------

def _read(path):
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine(repo, stock, mphost):
    cpuinfo = _read("/proc/cpuinfo")
    fields = {}
    for line in cpuinfo.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields.setdefault(k.strip(), v.strip())
    mem_kib = next((int(ln.split()[1]) for ln in _read("/proc/meminfo").splitlines()
                    if ln.startswith("MemTotal:")), 0)
    os_name = next((ln.split("=", 1)[1].strip('"') for ln in _read("/etc/os-release").splitlines()
                    if ln.startswith("PRETTY_NAME=")), platform.system())
    try:
        version = subprocess.run([stock, "--version"], capture_output=True, text=True,
                                 timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        version = "?"
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    flags = fields.get("flags", "").split()
    return {
        "cpu": fields.get("model name", platform.processor() or "?"),
        "cpu_family_model": f"family {fields.get('cpu family', '?')} model {fields.get('model', '?')}",
        "virtualized": "hypervisor" in flags,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "os": os_name,
        "stock_python": f"{stock} ({version})",
        "mphost": str(mphost),
        "mphost_is_stock": _same_file(stock, mphost),
        "commit": commit or "(no commit yet)",
        "loadavg_start": os.getloadavg(),
    }


def _same_file(a, b):
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except OSError:
        return False


def now_iso():
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


# ---- files -----------------------------------------------------------------

def write_json(data, results_dir):
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = results_dir / f"bench-{data['mode']}-{stamp}.json"
    text = json.dumps(data, indent=1, sort_keys=True, default=str)
    path.write_text(text)
    (results_dir / f"latest-{data['mode']}.json").write_text(text)
    return path


def _md_escape(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def _limits_table(limits):
    lines = ["| measurement | value | what |", "|---|---|---|"]
    for key, entry in limits.items():
        if not isinstance(entry, dict):
            continue
        lines.append(f"| `{key}` | {fmt(entry['value'])} {entry['unit']} | "
                     f"{_md_escape(entry['what'])} |")
    return "\n".join(lines)


def _scaling_section(scaling):
    if not scaling:
        return ("Not measured in this run (`--no-scaling`, `--only` or `--quick`).\n")
    out = ["![how the cost grows](performance_scaling.png)", ""]
    pm = scaling.get("pool_map")
    if pm:
        out += ["Pool.map of `x -> 2*x`: seconds for the whole call (median of "
                f"{pm['runs']} runs).", "",
                "| tasks | chunksize | stock python3 | mphost |", "|---|---|---|---|"]
        for pt in pm["points"]:
            out.append(f"| {pt['tasks']:,} | {pt['chunksize']} | "
                       f"{_scaling_cell(pt[STOCK], 's')} | {_scaling_cell(pt[MPHOST], 's')} |")
        out.append("")
    qs = scaling.get("queue_size")
    if qs:
        out += ["Queue 1→1 throughput against message size, MB/s (median of "
                f"{qs['runs']} runs).", "",
                "| message size | messages | stock python3 | mphost |", "|---|---|---|---|"]
        for pt in qs["points"]:
            out.append(f"| {_size(pt['size'])} | {pt['messages']:,} | "
                       f"{_scaling_cell(pt[STOCK], 'MB/s')} | {_scaling_cell(pt[MPHOST], 'MB/s')} |")
        out.append("")
    qp = scaling.get("queue_producers")
    if qp:
        out += ["Queue N→1 throughput of small messages against the number of producers "
                f"(96,000 messages in all, 1 consumer; median of {qp['runs']} runs), with the CPU "
                "of all processes per message.", "",
                "| producers | stock python3 | mphost | ratio | CPU µs/msg, stock | mphost |",
                "|---|---|---|---|---|---|"]
        for pt in qp["points"]:
            out.append(f"| {pt['producers']} | {_scaling_cell(pt[STOCK], 'msgs/s')} | "
                       f"{_scaling_cell(pt[MPHOST], 'msgs/s')} | "
                       f"{fmt_ratio(ratio(True, pt[STOCK]['median'], pt[MPHOST]['median']))} | "
                       f"{cpu_cell(pt[STOCK], False)} | {cpu_cell(pt[MPHOST], False)} |")
        out.append("")
    sr = scaling.get("start_rss")
    if sr:
        out += ["Process start+join (10 processes one after another) against the parent's "
                "resident size: the parent first writes that many MB of its own memory "
                f"(median of {sr['runs']} runs; ms per process).", "",
                "| start method | parent made larger by | stock python3 | mphost | ratio |",
                "|---|---|---|---|---|"]
        for pt in sr["points"]:
            out.append(f"| {pt['method']} | {pt['mb']:,} MB | {_scaling_cell(pt[STOCK], 'ms')} | "
                       f"{_scaling_cell(pt[MPHOST], 'ms')} | "
                       f"{fmt_ratio(ratio(False, pt[STOCK]['median'], pt[MPHOST]['median']))} |")
        out.append("")
    return "\n".join(out)


def _scaling_cell(summary, unit):
    if summary["status"] != "ok":
        return _md_escape(failure_text(summary, MPHOST))
    return f"{fmt(summary['median'])} {unit}"


def _size(n):
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:g} {unit}"
    return f"{n} B"


def markdown(data):
    m = data["machine"]
    results = data["rows"]
    met = [r for r in results if r["target_met"]]
    missed = [r for r in results if r["target_met"] is False]
    pending = [r for r in results if r[MPHOST]["status"] != "ok"]
    lines = [
        "# mphost performance",
        "",
        "Every row runs the same plain `multiprocessing` program (`tools/bench/scenarios/`) "
        "under stock `/usr/bin/python3` and under `mphost`, in one invocation of "
        "`tools/bench/run_bench.py`. This file is generated by that script; do not edit it by hand.",
        "",
    ]
    if m.get("mphost_is_stock"):
        lines += [
            "> **Both columns are stock python3 in this report.** It was produced with "
            f"`--mphost {m['mphost']}` to check the harness and record the stock figures; "
            "the ratios only show the run-to-run noise of this machine"
            f"{_noise_span(results)}. It will be regenerated with the real launcher.",
            "",
        ]
    lines += [
        "## Machine",
        "",
        f"- CPU: {m['cpu']} ({m['cpu_family_model']}), {m['cores']} cores"
        f"{', virtual machine' if m.get('virtualized') else ''}",
        f"- memory: {m['memory_gib']} GiB; OS: {m['os']}; kernel {m['kernel']}",
        f"- stock interpreter: {m['stock_python']}",
        f"- mphost: `{m['mphost']}`",
        f"- repository commit: {m['commit']}",
        f"- date: {data['started']} (run took {data['duration_s'] / 60:.1f} min)",
        f"- load average (1, 5, 15 min) at start {_load(m.get('loadavg_start'))}, "
        f"at end {_load(m.get('loadavg_end'))}: the machine is shared, so expect some noise",
        "",
        "## Method",
        "",
        f"- Each scenario runs {data['runs']} times under each interpreter, interleaved: for every "
        "run the two interpreters run the same scenario back to back (A B, then B A on the next "
        "run, so neither always goes first). The table shows the median and, in brackets, the "
        "min–max over the runs.",
        "- Time is measured inside the scenario with `time.perf_counter` around the measured "
        "section only, after a warm-up (pools, queues and children are created first); "
        "interpreter start-up is measured separately by its own rows.",
        "- Every scenario checks its own result (all messages received in order, sums, final "
        "counter value...) and a wrong result is reported as such, never as a figure.",
        "- **Ratio convention: ratio > 1 means mphost is better.** For throughputs (msgs/s, MB/s, "
        "tasks/s, ops/s, speedup) ratio = mphost / stock; for latencies, durations and memory "
        "(µs, ms, KiB) ratio = stock / mphost. Targets from DESIGN.md §6 are written the same way "
        "(\"latency ≤ 1/5 of stock\" is ratio ≥ 5). The CPU-bound speedup target is absolute: "
        "mphost's own speedup must reach 1.9.",
        "- *Bounded by* gives the physical limit of the row with the figure measured on this "
        "machine (raw C++ measurements of `mphost_bench_limits` and stock-python probes, below).",
        "- A scenario that mphost cannot run yet is shown as *not supported yet* with the first "
        "line of its error.",
        "- **CPU per item** (µs of CPU per message, task, round trip or process started): the "
        "user + system time of *every* process of the scenario (parent, children, grandchildren, "
        "pool workers, manager servers, resource trackers, forkservers, helper threads) over the "
        "measured section only, divided by the items of that section. The runner starts each "
        "scenario in its own session; the scenario reads `/proc/PID/stat` of every process of "
        "that session just before its clock starts and again as soon as it knows the section "
        "ended, and adds up utime + stime + cutime + cstime of each live or zombie process, so "
        "a process that exited and was reaped during the section is still counted, in its "
        "reaper's cutime/cstime (`tools/bench/scenarios/_benchlib.py`, `tree_cpu`). The "
        "resolution is one clock tick (10 ms) per process per reading, so the sections are "
        "long enough for that to stay small; no CPU ratio is given when either side spent "
        "less than 50 ms in the section. CPU ratio = stock / mphost (> 1: mphost spends "
        "less CPU per item); the target is ≥ 1 on every row. A parent waiting for the end of "
        "the section is part of the scenario: if it spins, that CPU is counted. Rows without "
        "a CPU column: memory (no section), the CPU-bound speedup (a ratio of two times) and "
        "the C++ host_pool rows (under mphost a separate C++ driver program runs the section).",
        "- **Idle rows**: CPU of every process of the scenario during a wait of 10 s (1 s in "
        "`--quick`), as a percentage of one core; target ≤ 1 %, on mphost's own figure.",
        "- *Queue, 16 producers → 1 consumer* (18 processes) and *8 pools of 2 workers* (25 "
        "processes) run more processes than the machine has cores: there, a process that spins "
        "while it waits takes the CPU from one that has work.",
        "",
        "## Results",
        "",
        f"Targets met: {len(met)}; missed: {len(missed)}; mphost not running yet: {len(pending)}; "
        f"rows without a target: {sum(1 for r in results if r['target'] is None)}. "
        f"CPU per item at or below stock's: {sum(1 for r in results if r.get('cpu_met'))} of "
        f"{sum(1 for r in results if r.get('cpu_met') is not None)} rows that report it.",
        "",
        "| scenario | unit | stock python3 | mphost | ratio (>1: mphost better) | target | met | "
        "CPU µs/item, stock | CPU µs/item, mphost | CPU ratio (>1: mphost uses less) | "
        "CPU ≤ stock | bounded by (this machine) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {_md_escape(r['title'])} | {r['unit']} | {_md_escape(cell(r[STOCK], STOCK))} | "
            f"{_md_escape(cell(r[MPHOST], MPHOST))} | {fmt_ratio(r['ratio'])} | "
            f"{r['target']['text'] if r['target'] else '-'} | {met_text(r)} | "
            f"{cpu_cell(r[STOCK])} | {cpu_cell(r[MPHOST])} | {fmt_ratio(r.get('cpu_ratio'))} | "
            f"{cpu_met_text(r)} | {_md_escape(r['limit'])} |")
    lines += ["", _futex_distance(data), ""] if _futex_distance(data) else []
    cluster = _cluster.markdown_section(data, fmt, fmt_ratio, cell, met_text, cpu_cell)
    lines += ["", cluster] if cluster else []
    lines += [
        "",
        "![ratio per scenario against its target](performance.png)",
        "",
        "## How the cost grows",
        "",
        _scaling_section(data.get("scaling")),
        "## Limits of this machine",
        "",
        _limits_table(data.get("limits", {})),
        "",
        "## Scenarios",
        "",
        "| row | program and arguments |",
        "|---|---|",
    ]
    for r in results:
        command = " ".join([r["script"]] + r["args"])
        lines.append(f"| {r['id']} | `{command}` |")
    lines += [
        "",
        "What each scenario measures and checks is described in `tools/bench/README.md` "
        "and at the top of each program.",
        "",
        "## Reproduce",
        "",
        "```sh",
        "cmake -S . -B build && cmake --build build -j2      # build/bin/mphost, build/bin/mphost_bench_limits",
        f"/usr/bin/python3 tools/bench/run_bench.py           # full run ({data['duration_s'] / 60:.0f} min here), rewrites this file",
        "/usr/bin/python3 tools/bench/run_bench.py --quick   # every scenario once, tiny sizes (CI)",
        "/usr/bin/python3 tools/bench/run_bench.py --only 'queue|pipe' --runs 3 --no-report",
        "```",
        "",
        f"This report: `{' '.join(data['command'])}`. Raw results: "
        "`tools/bench/results/latest-full.json` (not committed).",
        "",
    ]
    return "\n".join(lines)


def _noise_span(results):
    ratios = [r["ratio"] for r in results if r["ratio"]]
    if not ratios:
        return ""
    return f" (here from {min(ratios):.2f}× to {max(ratios):.2f}×)"


def _futex_distance(data):
    """DESIGN asks the Pipe round trip to be reported against a raw futex
    ping-pong between two processes."""
    row = next((r for r in data["rows"] if r["id"] == "pipe_roundtrip"), None)
    limits = data.get("limits", {})
    wake = (limits.get("futex_wake_us") or {}).get("value")
    spinning = (limits.get("futex_spin_rtt_us") or {}).get("value")
    same_cpu = (limits.get("futex_rtt_same_cpu_us") or {}).get("value")
    if row is None or not wake or not spinning:
        return ""
    parts = []
    for which, name in ((STOCK, "stock python3"), (MPHOST, "mphost")):
        med = row[which]["median"]
        if row[which]["status"] == "ok" and med:
            parts.append(f"{name} {fmt(med)} µs = {med / (2 * wake):.1f}× a raw futex ping-pong "
                         f"between two processes on 2 CPUs that sleep (2 × {fmt(wake)} µs) and "
                         f"{med / spinning:.0f}× one that spins ({fmt(spinning)} µs)")
    if not parts:
        return ""
    text = "Distance of the Pipe round trip to the hardware: " + "; ".join(parts) + "."
    if same_cpu:
        text += (f" (Two processes that share one CPU ping-pong in {fmt(same_cpu)} µs through a "
                 "futex: a Python figure below the cross-CPU one means its processes often ran "
                 "on the same CPU.)")
    return text


def _load(avg):
    if not avg:
        return "?"
    return "/".join(f"{x:.2f}" for x in avg)
