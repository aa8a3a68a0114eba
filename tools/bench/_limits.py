"""This machine's limits: the C++ program's raw figures plus a few measured
with stock /usr/bin/python3 (start-up, pickling of a small object, the
memory of an idle interpreter).

The C++ program is build/bin/mphost_bench_limits (CMake target
mphost_bench_limits). When it has not been built, it is compiled directly
with the system C++ compiler into tools/bench/results/.
"""

import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "limits.cpp"


def _entry(value, unit, what):
    return {"value": value, "unit": unit, "what": what}


def find_or_build(path, results_dir, log):
    """Path of a runnable limits program, or None (with the reason logged)."""
    if path and Path(path).is_file() and os.access(path, os.X_OK):
        return Path(path)
    target = Path(results_dir) / "mphost_bench_limits"
    if target.is_file() and target.stat().st_mtime >= SOURCE.stat().st_mtime:
        return target
    compiler = shutil.which("c++") or shutil.which("g++")
    if not compiler:
        log(f"limits: {path} not built and no C++ compiler found; C++ limits skipped")
        return None
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    log(f"limits: {path} not built; compiling {SOURCE.name} with {compiler}")
    done = subprocess.run([compiler, "-std=c++20", "-O2", "-pthread", str(SOURCE), "-o", str(target)],
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        log(f"limits: compilation failed:\n{done.stderr[-2000:]}")
        return None
    return target


def run_cpp(binary, quick, log):
    args = [str(binary)] + (["--quick"] if quick else [])
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        log("limits: the C++ program did not finish in 300 s")
        return {}
    if done.returncode != 0:
        log(f"limits: the C++ program failed ({done.returncode}): {done.stderr[-500:]}")
        return {}
    return json.loads(done.stdout)


def _time_command(cmd, runs):
    times = []
    for i in range(runs + 2):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


_PICKLE_PROBE = r"""
import json, pickle, time
obj = ("ping", 12345, 1.5, b"0123456789abcdef")
blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
def best(fn, n=200000):
    out = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t0) / n * 1e6)
    return min(out)
dumps = best(lambda: pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
loads = best(lambda: pickle.loads(blob))
ints = list(range(100000))
ints_blob = pickle.dumps(ints, protocol=pickle.HIGHEST_PROTOCOL)
chunk = best(lambda: pickle.loads(pickle.dumps(ints, protocol=pickle.HIGHEST_PROTOCOL)), 20)
print(json.dumps({"dumps": dumps, "loads": loads, "int_ns": chunk / len(ints) * 1e3}))
"""

# The Queue scenario's own consumer loop over pickled (producer, seq) items,
# unpickled by a C-level get (no queue): what one consumer costs per message
# before any IPC.
_CONSUMER_PROBE = r"""
import json, pickle, sys, time
sys.path.insert(0, sys.argv[1])
import bench_queue
n = int(sys.argv[2])
blobs = [pickle.dumps((0, seq), protocol=4) for seq in range(n)] + [pickle.dumps(None)]
out = []
for _ in range(5):
    get = map(pickle.loads, blobs).__next__
    t0 = time.perf_counter()
    stats, disorder, _ = bench_queue.consume(get, None, 1)
    out.append((time.perf_counter() - t0) / n * 1e6)
    assert disorder is None and stats[0][0] == n
print(json.dumps({"consumer_us": min(out)}))
"""

_IDLE_PROBE = "import sys; sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.read()"


def _idle_pss_kib(python):
    proc = subprocess.Popen([python, "-S", "-c", _IDLE_PROBE], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    try:
        proc.stdout.readline()
        time.sleep(0.1)
        with open(f"/proc/{proc.pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    finally:
        proc.stdin.close()
        proc.wait(10)
    return None


def run_python(python, quick):
    runs = 3 if quick else 20
    out = {
        "python_S_pass_ms": _entry(_time_command([python, "-S", "-c", "pass"], runs), "ms",
                                   f"{python} -S -c pass, launch to exit (median)"),
        "python_import_mp_ms": _entry(
            _time_command([python, "-c", "import multiprocessing"], runs), "ms",
            f'{python} -c "import multiprocessing", launch to exit (median)'),
    }
    probe = _PICKLE_PROBE.replace("n=200000", "n=20000") if quick else _PICKLE_PROBE
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120,
                          check=True)
    pk = json.loads(done.stdout)
    out["pickle_dumps_small_us"] = _entry(pk["dumps"], "us",
                                          "pickle.dumps of the small benchmark tuple, in one process")
    out["pickle_loads_small_us"] = _entry(pk["loads"], "us",
                                          "pickle.loads of the small benchmark tuple, in one process")
    out["pickle_int_list_ns"] = _entry(pk["int_ns"], "ns",
                                       "pickle.dumps+loads of a list of 100000 ints, per item")
    done = subprocess.run([python, "-c", _CONSUMER_PROBE, str(HERE / "scenarios"),
                           "20000" if quick else "500000"],
                          capture_output=True, text=True, timeout=120, check=True)
    out["queue_consumer_loop_us"] = _entry(
        json.loads(done.stdout)["consumer_us"], "us",
        "the Queue scenario's consumer loop with pickle.loads, no queue, per message")
    out["python_S_idle_pss_kib"] = _entry(_idle_pss_kib(python), "KiB",
                                          f"PSS of an idle {python} -S")
    out["cores"] = _entry(os.cpu_count(), "cores", "os.cpu_count()")
    return out


def measure(binary_path, results_dir, python, quick, log):
    limits = {}
    binary = find_or_build(binary_path, results_dir, log)
    if binary:
        limits.update(run_cpp(binary, quick, log))
    try:
        limits.update(run_python(python, quick))
    except (subprocess.SubprocessError, OSError, ValueError) as exc:
        log(f"limits: python measurements failed: {exc}")
    return limits
