"""Cluster rows: mphost's MPI pool beside mpi4py.futures on the same ranks.

The harness runs this driver under both interpreters. Under stock python3 it
measures the baseline, ``mpi4py.futures.MPIPoolExecutor``:

    mpiexec --oversubscribe -n R [--mca btl self,tcp] /usr/bin/python3 -m mpi4py.futures \\
        _cluster_prog.py --side mpi4py ...

Under mphost it measures mphost's cluster backend with the same program,
ranks and transport, and beside it the single-machine mphost Pool with the
same number of workers (no MPI at all):

    mpiexec --oversubscribe -n R [--mca btl self,tcp] mphost --cluster=mpi \\
        _cluster_prog.py --side cluster ...
    mphost _cluster_prog.py --side local --workers R-1 ...

So the row's ratio is mphost cluster / mpi4py.futures (> 1: mphost better);
the single-machine figure travels in the JSON line (``local_value``). The
transport is OpenMPI's default (shared memory between ranks of one host)
unless ``--btl tcp`` forces ``--mca btl self,tcp`` (as between hosts).

``--what cpu`` measures a speedup instead: the same 40 tasks of ~50 ms of
pure-Python work with 1 worker rank (R=2) and with --workers worker ranks
(R=workers+1), speedup = time(1) / time(workers); with 4 worker ranks the 2
cores of this machine are oversubscribed. The local figure is Pool(workers)
against Pool(1).

Each launch runs in its own session (ranks keep it; OpenMPI only gives each
rank its own process group); CPU is counted over the whole session
(mpiexec, every rank, every worker process), and the session is killed when
a launch outlives its share of --timeout or leaves processes behind.
"""

import glob
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _benchlib as bl

HERE = Path(__file__).resolve().parent
PROG = HERE / "_cluster_prog.py"
STOCK_PYTHON = "/usr/bin/python3"

#: tasks per run: (full, quick)
SIZES = {"map": (20000, 300), "map_chunked": (400000, 3000), "submit": (20000, 300),
         "numpy": (200, 8), "cpu": (40, 8)}
SPIN = {False: 1_000_000, True: 100_000}   # ~50 ms / ~5 ms of pure-Python work


def under_mphost():
    try:
        import mphost  # noqa: F401  only importable under the mphost launcher
        return True
    except ImportError:
        return False


def mpi_backend_files(launcher):
    """The native MPI module next to the launcher (build tree or install)."""
    lib = Path(launcher).resolve().parent.parent / "lib" / "mphost"
    return sorted(glob.glob(str(lib / "_mphost_mpi*.so"))), lib


def mpi_env():
    env = dict(os.environ)
    if os.geteuid() == 0:           # OpenMPI refuses root without both
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    env["BENCH_CPU_SESSION"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _session_members(sid):
    return [pid for pid, _ppid, s, _t in bl._proc_stats() if s == sid and pid != os.getpid()]


def _kill_session(sid):
    for pid in _session_members(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Launcher:
    def __init__(self, args):
        self.args = args
        self.deadline = time.monotonic() + 0.9 * args.timeout
        self.notes = []
        self.commands = []

    def run(self, cmd):
        """Run one launch; return the program's JSON record (raise on failure)."""
        self.commands.append(" ".join(str(c) for c in cmd))
        left = self.deadline - time.monotonic()
        if left <= 1:
            raise bl.ScenarioError(f"hang: out of time before `{self.commands[-1]}`")
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, env=mpi_env(),
                                    start_new_session=True, cwd=str(HERE))
            try:
                proc.wait(left)
                hung = False
            except subprocess.TimeoutExpired:
                hung = True
                _kill_session(proc.pid)
                proc.wait()
            end = time.monotonic() + 3.0
            while _session_members(proc.pid) and time.monotonic() < end:
                time.sleep(0.05)
            if _session_members(proc.pid):
                self.notes.append(f"processes left after `{self.commands[-1]}`; killed")
                _kill_session(proc.pid)
            out.seek(0)
            err.seek(0)
            stdout = out.read().decode("utf-8", "replace")
            stderr = err.read().decode("utf-8", "replace")
        if hung:
            sys.stderr.write(stderr[-3000:])
            raise bl.ScenarioError(f"hang: `{self.commands[-1]}` killed after {left:.0f} s")
        if proc.returncode != 0:
            sys.stderr.write(stderr[-3000:])
            for mark, exc in ((bl.WRONG_MARK, bl.WrongResult), (bl.UNSUPPORTED_MARK, bl.Unsupported),
                              (bl.ERROR_MARK, bl.ScenarioError)):
                line = next((ln for ln in stderr.splitlines() if ln.startswith(mark)), None)
                if line is not None:
                    raise exc(line[len(mark):].strip())
            last = [ln for ln in stderr.splitlines() if ln.strip()]
            raise bl.ScenarioError(f"exit code {proc.returncode}: "
                                   f"{last[-1][:200] if last else 'no output'}")
        for line in reversed(stdout.splitlines()):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "metric" in record:
                return record
        raise bl.ScenarioError(f"no result line from `{self.commands[-1]}`")


def mpiexec_prefix(args, ranks):
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        raise bl.Unsupported("mpiexec not found (Debian: apt-get install openmpi-bin)")
    cmd = [mpiexec, "--oversubscribe", "-n", str(ranks)]
    if args.btl == "tcp":
        cmd += ["--mca", "btl", "self,tcp"]
    return cmd


def program_args(args, what, tasks, workers):
    out = ["--what", what, "--tasks", str(tasks), "--workers", str(workers),
           "--timeout", str(args.timeout)]
    if what == "map":
        out += ["--chunksize", args.chunksize]
    if what == "cpu":
        out += ["--spin", str(SPIN[args.quick])]
    return out


def launch(run, args, side, what, tasks, workers):
    """One measurement on one side with `workers` workers."""
    prog = program_args(args, what, tasks, workers)
    if side == "mpi4py":
        cmd = mpiexec_prefix(args, workers + 1) + [STOCK_PYTHON, "-m", "mpi4py.futures", PROG,
                                                   "--side", "mpi4py"] + prog
    elif side == "cluster":
        cmd = mpiexec_prefix(args, workers + 1) + [sys.executable, "--cluster=mpi", PROG,
                                                   "--side", "cluster"] + prog
    else:
        cmd = [sys.executable, PROG, "--side", "local"] + prog
    return run(cmd)


def measure(run, args, side, what, tasks):
    """The row's figure on one side: (value, record) where value is tasks/s,
    or for cpu the speedup of --workers worker ranks over one."""
    if what != "cpu":
        rec = launch(run, args, side, what, tasks, args.workers)
        return rec["value"], rec
    one = launch(run, args, side, what, tasks, 1)
    many = launch(run, args, side, what, tasks, args.workers)
    many["seconds_1_worker"] = one["seconds"]
    many["speedup"] = one["seconds"] / many["seconds"]
    return many["speedup"], many


def main():
    p = bl.parser(__doc__.splitlines()[0])
    p.add_argument("--what", choices=("map", "submit", "numpy", "cpu"), required=True)
    p.add_argument("--chunksize", default="default",
                   help="map: 'default' (Pool.map's own; mpi4py's own is 1) or 'pool' "
                        "(mpi4py given the chunksize Pool.map picks)")
    p.add_argument("--btl", choices=("default", "tcp"), default="default",
                   help="tcp: --mca btl self,tcp (as between hosts); default: shared memory")
    p.add_argument("--workers", type=int, default=2, help="worker ranks (R = workers + 1)")
    p.add_argument("--tasks", type=int, default=None)
    p.add_argument("--side", choices=("auto", "mpi4py", "cluster"), default="auto",
                   help="auto: mpi4py under stock python3, cluster under mphost")
    p.add_argument("--no-local", action="store_true", help="skip the single-machine mphost figure")
    args = p.parse_args()
    side = args.side
    if side == "auto":
        side = "cluster" if under_mphost() else "mpi4py"
    size_key = "map_chunked" if args.what == "map" and args.chunksize == "pool" else args.what
    tasks = args.tasks or SIZES[size_key][1 if args.quick else 0]
    if side == "cluster":
        found, lib = mpi_backend_files(sys.executable)
        if not found:
            raise bl.Unsupported(f"the MPI backend is not built (no _mphost_mpi*.so in {lib}; "
                                 "CMake found no MPI or MPHOST_WITH_MPI is OFF)")
    else:
        check = subprocess.run([STOCK_PYTHON, "-c", "import mpi4py.futures"],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise bl.Unsupported("mpi4py is not installed for /usr/bin/python3 "
                                 "(Debian: apt-get install python3-mpi4py)")
    # mpi4py's own default map chunksize is 1; 'pool' hands it Pool.map's choice
    launcher = Launcher(args)
    value, rec = measure(launcher.run, args, side, args.what, tasks)
    extra = {"side": side, "what": args.what, "btl": args.btl, "workers": args.workers,
             "ranks": args.workers + 1, "tasks": tasks, "chunksize": rec.get("chunksize"),
             "record": rec}
    if "mb_per_s" in rec:
        extra["mb_per_s"] = rec["mb_per_s"]
    if side == "cluster" and not args.no_local:
        lvalue, lrec = measure(launcher.run, args, "local", args.what, tasks)
        extra["local_value"] = lvalue
        extra["local_record"] = lrec
        if "mb_per_s" in lrec:
            extra["local_mb_per_s"] = lrec["mb_per_s"]
        if lrec.get("cpu_s") is not None and args.what != "cpu":
            extra["local_cpu_us_per_item"] = lrec["cpu_s"] / lrec["cpu_items"] * 1e6
    extra["commands"] = launcher.commands
    if launcher.notes:
        extra["notes"] = launcher.notes
    if args.what == "cpu":
        bl.emit("speedup", value, "x", True, **extra)
    else:
        bl.emit("tasks_per_s", value, "tasks/s", True, cpu_items=rec["cpu_items"],
                cpu_s=rec["cpu_s"], cpu_wall_s=rec["cpu_wall_s"],
                cpu_processes=rec["cpu_processes"], **extra)


if __name__ == "__main__":
    bl.run(main)
