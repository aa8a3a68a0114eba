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


def scaling_chart(scaling, data, path):
    fig, axes = plt.subplots(2, 2, figsize=(12, 9.2))
    (left, right), (bottom_left, bottom_right) = axes
    pm = scaling.get("pool_map")
    if pm:
        for chunksize, style in (("default", "-"), ("1", ":")):
            pts = [p for p in pm["points"] if p["chunksize"] == chunksize]
            for which, color, name in ((STOCK, COLOR_STOCK, "stock python3"),
                                       (MPHOST, COLOR_MPHOST, "mphost")):
                xs, ys = _series(pts, which, "tasks", lambda p, v: v)
                if xs:
                    left.plot(xs, ys, style, marker="o", ms=3, color=color,
                              label=f"{name}, chunksize={chunksize}")
        left.set_xscale("log")
        left.set_yscale("log")
        left.set_xlabel("tasks")
        left.set_ylabel("seconds for the whole Pool.map (lower is better)")
        left.set_title("Pool.map(x -> 2*x) time against task count", fontsize=10)
        left.grid(which="both", alpha=0.25)
        left.legend(fontsize=7)
    qs = scaling.get("queue_size")
    if qs:
        for which, color, name in ((STOCK, COLOR_STOCK, "stock python3"),
                                   (MPHOST, COLOR_MPHOST, "mphost")):
            xs, ys = _series(qs["points"], which, "size", lambda p, v: v)
            if xs:
                right.plot(xs, ys, marker="o", ms=3, color=color, label=name)
        right.set_xscale("log", base=2)
        right.set_yscale("log")
        ticks = [p["size"] for p in qs["points"]]
        right.set_xticks(ticks)
        right.set_xticklabels([_size(t) for t in ticks], fontsize=7, rotation=45)
        right.set_xlabel("message size")
        right.set_ylabel("MB/s (higher is better)")
        right.set_title("Queue 1→1 throughput against message size", fontsize=10)
        right.grid(which="both", alpha=0.25)
        right.legend(fontsize=7)
    qp = scaling.get("queue_producers")
    if qp:
        for which, color, name in ((STOCK, COLOR_STOCK, "stock python3"),
                                   (MPHOST, COLOR_MPHOST, "mphost")):
            xs, ys = _series(qp["points"], which, "producers", lambda p, v: v)
            if xs:
                bottom_left.plot(xs, ys, marker="o", ms=3, color=color, label=name)
        bottom_left.set_xscale("log", base=2)
        bottom_left.set_yscale("log")
        ticks = [p["producers"] for p in qp["points"]]
        bottom_left.set_xticks(ticks)
        bottom_left.set_xticklabels([str(t) for t in ticks], fontsize=7)
        bottom_left.set_xlabel("producers (1 consumer; 2 cores)")
        bottom_left.set_ylabel("msgs/s (higher is better)")
        bottom_left.set_title("Queue N→1 small messages against producers", fontsize=10)
        bottom_left.grid(which="both", alpha=0.25)
        bottom_left.legend(fontsize=7)
    else:
        bottom_left.set_visible(False)
    sr = scaling.get("start_rss")
    if sr:
        for method, style in (("fork", "-"), ("forkserver", ":")):
            pts = [p for p in sr["points"] if p["method"] == method]
            for which, color, name in ((STOCK, COLOR_STOCK, "stock python3"),
                                       (MPHOST, COLOR_MPHOST, "mphost")):
                xs, ys = _series(pts, which, "mb", lambda p, v: v)
                if xs:
                    bottom_right.plot(xs, ys, style, marker="o", ms=3, color=color,
                                      label=f"{name}, {method}")
        bottom_right.set_xscale("log")
        bottom_right.set_yscale("log")
        ticks = sorted({p["mb"] for p in sr["points"]})
        bottom_right.set_xticks(ticks)
        bottom_right.set_xticklabels([f"{t} MB" for t in ticks], fontsize=7)
        bottom_right.set_xlabel("parent made larger by (written memory)")
        bottom_right.set_ylabel("ms per process start+join (lower is better)")
        bottom_right.set_title("Process start against the parent's resident size", fontsize=10)
        bottom_right.grid(which="both", alpha=0.25)
        bottom_right.legend(fontsize=7)
    else:
        bottom_right.set_visible(False)
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

