"""The MPI cluster rows of the harness: when they can run, and their section
of the report.

In these rows the "stock" column is ``mpi4py.futures.MPIPoolExecutor`` on the
same ranks (scenarios/bench_cluster.py run under /usr/bin/python3) and the
"mphost" column is ``mpiexec ... mphost --cluster=mpi`` (the same driver run
under the launcher); the single-machine mphost Pool with as many workers
comes in the mphost side's JSON line as ``local_value``.
"""

import glob
import os
import shutil
import subprocess
from pathlib import Path

STOCK_PYTHON = "/usr/bin/python3"
STOCK, MPHOST = "stock", "mphost"


def backend_library(launcher):
    """The _mphost_mpi*.so next to the launcher (build/lib/mphost or <prefix>/lib/mphost)."""
    lib = Path(launcher).resolve().parent.parent / "lib" / "mphost"
    found = sorted(glob.glob(str(lib / "_mphost_mpi*.so")))
    return (found[0] if found else None), lib


def skip_reason(launcher, quick):
    """Why the cluster rows cannot run here (None: they can). Quick mode
    (CI) also skips them while the native MPI module is not built; a full
    run keeps them, and the mphost column then reads "not supported yet"."""
    if shutil.which("mpiexec") is None:
        return "mpiexec not found (Debian: openmpi-bin)"
    probe = subprocess.run([STOCK_PYTHON, "-c", "import mpi4py.futures"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"{STOCK_PYTHON} cannot import mpi4py.futures (Debian: python3-mpi4py)"
    so, lib = backend_library(launcher)
    if quick and so is None:
        return f"no {os.path.join(str(lib), '_mphost_mpi*.so')}: mphost was built without MPI"
    return None


def is_cluster(row):
    return getattr(row, "needs", "") == "mpi"


# ---- report ------------------------------------------------------------------

def _rec(summary, key):
    """Median of a JSON field over one column's good runs (None if absent)."""
    vals = []
    for o in summary.get("outcomes", []):
        rec = o.get("record") or {}
        if o.get("status") == "ok" and rec.get(key) is not None:
            vals.append(rec[key])
    if not vals:
        return None
    vals.sort()
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def _transport(res):
    return "tcp (`--mca btl self,tcp`)" if "tcp" in res["args"] else "shared memory (default)"


def markdown_section(data, fmt, fmt_ratio, cell, met_text, cpu_cell):
    rows = [r for r in data["rows"] if r["id"].startswith("cluster_")]
    if not rows:
        return ""
    out = [
        "## MPI cluster: mphost beside mpi4py.futures",
        "",
        "Same run, same machine (2 cores), `mpiexec --oversubscribe -n R`; R - 1 worker ranks. "
        "*mpi4py.futures*: `mpiexec -n R /usr/bin/python3 -m mpi4py.futures _cluster_prog.py` "
        "(`MPIPoolExecutor`); *mphost cluster*: `mpiexec -n R mphost --cluster=mpi "
        "_cluster_prog.py` (plain `multiprocessing.Pool()` / `ProcessPoolExecutor()`); "
        "*mphost one machine*: the same program under `mphost` alone with as many local "
        "workers. Ratio = mphost cluster / mpi4py.futures (> 1: mphost better). CPU: every "
        "process of the launch (mpiexec, all ranks, their worker processes), µs per task. "
        "Speedup rows: the time of 40 tasks of ~50 ms of pure-Python work with 1 worker rank "
        "over the time with 2 or 4; 4 worker ranks oversubscribe the 2 cores. "
        "Details: [cluster.md](cluster.md).",
        "",
        "| scenario | transport | unit | mpi4py.futures | mphost cluster | ratio | goal | met | "
        "mphost one machine | cluster / one machine | CPU µs/task: mpi4py | cluster | one machine |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        local = _rec(r[MPHOST], "local_value") if r[MPHOST]["status"] == "ok" else None
        clus = r[MPHOST]["median"] if r[MPHOST]["status"] == "ok" else None
        local_cpu = _rec(r[MPHOST], "local_cpu_us_per_item")
        unit = r["unit"]
        mine, theirs, one = cell(r[MPHOST], MPHOST), cell(r[STOCK], STOCK), fmt(local)
        mb = (_rec(r[STOCK], "mb_per_s"), _rec(r[MPHOST], "mb_per_s"),
              _rec(r[MPHOST], "local_mb_per_s"))
        if any(v is not None for v in mb):
            theirs += f"; {fmt(mb[0])} MB/s"
            mine += f"; {fmt(mb[1])} MB/s"
            one += f"; {fmt(mb[2])} MB/s"
        out.append(
            f"| {r['title']} | {_transport(r)} | {unit} | {theirs} | {mine.replace('|', '/')} | "
            f"{fmt_ratio(r['ratio'])} | {r['target']['text'] if r['target'] else '-'} | "
            f"{met_text(r)} | {one} | "
            f"{fmt_ratio(clus / local if clus and local else None)} | {cpu_cell(r[STOCK])} | "
            f"{cpu_cell(r[MPHOST])} | {fmt(local_cpu)} |")
    out.append("")
    return "\n".join(out)
