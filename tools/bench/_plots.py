"""The two figures of docs/PERFORMANCE.md, drawn with matplotlib (Agg).

performance.png: one horizontal bar per row, its ratio (> 1: mphost better)
on a log axis, with the row's target marked.
performance_scaling.png: Pool.map time against task count, Queue 1->1
throughput against message size, Queue N->1 throughput against the number
of producers and process start time against the parent's resident size,
stock python3 and mphost.
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STOCK, MPHOST = "stock", "mphost"
COLOR_MET, COLOR_MISSED, COLOR_NONE = "#2a9d4a", "#d1495b", "#8d99ae"
COLOR_STOCK, COLOR_MPHOST = "#3d5a80", "#e07a5f"
COLOR_CPU = "#1d3557"


def ratio_chart(data, path):
    rows = data["rows"]
    n = len(rows)
    fig, ax = plt.subplots(figsize=(11, 0.36 * n + 1.8))
    ys = list(range(n))[::-1]
    values = [r["ratio"] for r in rows if r["ratio"]]
    values += [r["cpu_ratio"] for r in rows if r.get("cpu_ratio") and r["cpu_ratio"] != float("inf")]
    targets = [r["target_ratio"] for r in rows if r["target_ratio"]]
    lo = min([0.5] + values + targets) / 1.5
    hi = max([20.0] + values + targets) * 1.5
    for y, r in zip(ys, rows):
        if r["ratio"] is not None:
            color = COLOR_NONE if r["target_met"] is None else (
                COLOR_MET if r["target_met"] else COLOR_MISSED)
            ax.barh(y, r["ratio"] - lo, left=lo, height=0.6, color=color)
            ax.text(r["ratio"] * 1.05, y, f"{r['ratio']:.2f}×", va="center", fontsize=7)
        elif r[STOCK]["status"] == "ok" and r[MPHOST]["status"] == "ok":
            label = (f"stock {r[STOCK]['median']:.3g}, mphost {r[MPHOST]['median']:.3g} "
                     f"{r['unit']} (no ratio; target {'met' if r['target_met'] else 'missed'})")
        else:
            status = r[MPHOST]["status"] if r[MPHOST]["status"] != "ok" else r[STOCK]["status"]
            label = "wrong result" if status == "wrong" else "mphost: not supported yet"
        if r["ratio"] is None:
            ax.text(lo * 1.1, y, label, va="center", fontsize=7, style="italic", color="#444")
        if r["target_ratio"]:
            ax.plot([r["target_ratio"]] * 2, [y - 0.4, y + 0.4], color="black", lw=2)
        cpu = r.get("cpu_ratio")
        if cpu and cpu != float("inf"):
            ax.plot([cpu], [y], marker="D", ms=3.5, color=COLOR_CPU, ls="none")
    ax.axvline(1.0, color="#444", lw=1, ls="--")
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(-0.8, n - 0.2)
    ax.set_yticks(ys)
    ax.set_yticklabels([_short(r["title"]) for r in rows], fontsize=8)
    ax.set_xlabel("ratio, log scale (> 1: mphost better; dashed: equal to stock python3; "
                  "black tick: target)")
    title = "mphost against stock python3, median of %d runs" % data["runs"]
    if data["machine"].get("mphost_is_stock"):
        title += "\n(both columns are stock python3 here: a harness check, not mphost)"
    ax.set_title(title, fontsize=10)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in (COLOR_MET, COLOR_MISSED, COLOR_NONE)]
    handles.append(plt.Line2D([], [], marker="D", ms=3.5, color=COLOR_CPU, ls="none"))
    ax.legend(handles, ["target met", "target missed", "no target",
                        "CPU per item, stock/mphost (> 1: mphost uses less)"],
              loc="lower right", fontsize=7)
    ax.grid(axis="x", which="both", alpha=0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _short(title, width=44):
    return title if len(title) <= width else title[:width - 1] + "…"


def _series(points, which, xkey, ykey):
    xs, ys = [], []
    for pt in points:
        s = pt[which]
        if s["status"] == "ok" and s["median"]:
            xs.append(pt[xkey])
            ys.append(ykey(pt, s["median"]))
    return xs, ys


_INTERPRETERS = ((STOCK, COLOR_STOCK, "stock python3"), (MPHOST, COLOR_MPHOST, "mphost"))


def _curve_panel(ax, curve, xkey, *, variants=((None, "-", ""),), xbase=10, ticks=None,
                 rotate=0, xlabel="", ylabel="", title=""):
    """One growth curve, both interpreters; `variants` splits the points by a
    (key, value) pair drawn in its own line style. Hidden when not measured."""
    if not curve:
        ax.set_visible(False)
        return
    for variant, style, suffix in variants:
        points = [p for p in curve["points"]
                  if variant is None or p[variant[0]] == variant[1]]
        for which, color, name in _INTERPRETERS:
            xs, ys = _series(points, which, xkey, lambda p, v: v)
            if xs:
                ax.plot(xs, ys, style, marker="o", ms=3, color=color, label=name + suffix)
    ax.set_xscale("log", base=xbase)
    ax.set_yscale("log")
    if ticks:
        values = sorted({p[xkey] for p in curve["points"]})
        ax.set_xticks(values)
        ax.set_xticklabels([ticks(v) for v in values], fontsize=7, rotation=rotate)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(which="both", alpha=0.25)
    ax.legend(fontsize=7)


def scaling_chart(scaling, data, path):
    fig, axes = plt.subplots(2, 2, figsize=(12, 9.2))
    (left, right), (bottom_left, bottom_right) = axes
    _curve_panel(left, scaling.get("pool_map"), "tasks",
                 variants=((("chunksize", c), style, f", chunksize={c}")
                           for c, style in (("default", "-"), ("1", ":"))),
                 xlabel="tasks", ylabel="seconds for the whole Pool.map (lower is better)",
                 title="Pool.map(x -> 2*x) time against task count")
    _curve_panel(right, scaling.get("queue_size"), "size", xbase=2, ticks=_size, rotate=45,
                 xlabel="message size", ylabel="MB/s (higher is better)",
                 title="Queue 1→1 throughput against message size")
    _curve_panel(bottom_left, scaling.get("queue_producers"), "producers", xbase=2, ticks=str,
                 xlabel="producers (1 consumer; 2 cores)", ylabel="msgs/s (higher is better)",
                 title="Queue N→1 small messages against producers")
    _curve_panel(bottom_right, scaling.get("start_rss"), "mb",
                 variants=((("method", m), style, f", {m}")
                           for m, style in (("fork", "-"), ("forkserver", ":"))),
                 ticks=lambda mb: f"{mb} MB",
                 xlabel="parent made larger by (written memory)",
                 ylabel="ms per process start+join (lower is better)",
                 title="Process start against the parent's resident size")
    if data["machine"].get("mphost_is_stock"):
        fig.suptitle("both implementations are stock python3 here (harness check)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _size(n):
    if n >= 2**20:
        return f"{n / 2**20:g}M"
    if n >= 2**10:
        return f"{n / 2**10:g}K"
    return f"{n}"

