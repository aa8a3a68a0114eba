"""The benchmark rows: which scenario program, with which arguments, against
which target (DESIGN.md section 6) and which physical limit.

Ratio convention used everywhere in the harness: ``ratio`` says how many
times better mphost does than stock python3, so > 1 means mphost is better.
For a throughput (higher is better) it is mphost / stock; for a latency, a
duration or a memory size (lower is better) it is stock / mphost. A target
such as "latency <= 1/5 of stock" is therefore written "ratio >= 5".
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """What DESIGN.md asks of a row.

    kind "ratio": the ratio (convention above) must reach ``value``.
    kind "absolute": mphost's own measured value must reach ``value``
    (the CPU-bound speedup, which is a property of mphost alone).
    kind "at_most": mphost's own measured value must not exceed ``value``
    (the CPU an idle program uses).
    """
    kind: str
    value: float
    text: str

    def met(self, ratio, mphost_value):
        """Judged on the figure as printed (two decimals), so that a ratio
        shown as 1.00× meets a 1× target."""
        if self.kind == "ratio":
            return ratio is not None and round(ratio, 2) >= self.value
        if self.kind == "at_most":
            return mphost_value is not None and round(mphost_value, 2) <= self.value
        return mphost_value is not None and round(mphost_value, 2) >= self.value

    def as_ratio(self, stock_value):
        """The target expressed on the ratio axis (for the plot)."""
        if self.kind == "ratio":
            return self.value
        if self.kind == "at_most" or not stock_value:
            return None
        return self.value / stock_value


@dataclass(frozen=True)
class Row:
    id: str
    title: str
    script: str
    args: tuple = ()
    target: Target = None
    limit: str = ""          # key of a limit-describing function below
    runs: int = None         # at most this many runs (a long row: the idle ones)
    needs: str = ""          # "mpi": mpiexec and mpi4py (see _cluster.skip_reason)


def _ratio(v, text):
    return Target("ratio", v, text)


QUEUE_10X = _ratio(10, "≥ 10×")
IDLE_1PCT = Target("at_most", 1.0, "≤ 1 % of a core")

ROWS = (
    Row("queue_1to1", "Queue, small msgs, 1→1", "bench_queue.py",
        ("--producers", "1", "--consumers", "1"), QUEUE_10X, "queue_consumer"),
    Row("queue_2to1", "Queue, small msgs, 2→1", "bench_queue.py",
        ("--producers", "2", "--consumers", "1"), QUEUE_10X, "queue_consumer"),
    Row("queue_4to2", "Queue, small msgs, 4→2", "bench_queue.py",
        ("--producers", "4", "--consumers", "2"), QUEUE_10X, "queue_consumer"),
    Row("queue_10to1", "Queue, small msgs, 10→1", "bench_queue.py",
        ("--producers", "10", "--consumers", "1"), QUEUE_10X, "queue_consumer"),
    Row("queue_16to1", "Queue, 16 producers → 1 consumer (oversubscribed)", "bench_queue.py",
        ("--producers", "16", "--consumers", "1"), _ratio(5, "≥ 5×"), "oversubscribed"),
    Row("simplequeue_1to1", "SimpleQueue, small msgs, 1→1", "bench_queue.py",
        ("--kind", "SimpleQueue"), None, "pickling"),
    Row("queue_roundtrip", "Queue round trip, small object", "bench_queue_roundtrip.py",
        (), None, "wakeup"),
    Row("queue_1mib", "Queue, 1 MiB msgs", "bench_queue_bytes.py",
        ("--size", str(1 << 20)), _ratio(5, "≥ 5×"), "memcpy"),
    Row("queue_numpy_1mib", "Queue, 1 MiB numpy arrays", "bench_queue_bytes.py",
        ("--size", str(1 << 20), "--numpy"), None, "memcpy"),
    Row("pipe_roundtrip", "Pipe round trip, small object", "bench_pipe_roundtrip.py",
        (), _ratio(5, "≤ 1/5 latency"), "wakeup"),
    Row("pipe_1mib", "Pipe send_bytes, 1 MiB", "bench_pipe_bytes.py",
        (), None, "memcpy"),
    Row("pool_map_c1", "Pool.map, chunksize=1", "bench_pool_map.py",
        ("--chunksize", "1"), _ratio(5, "≥ 5×"), "per_task"),
    Row("pool_map_c1_progress", "Pool.map, chunksize=1, mphost.Pool progress=True (stock: plain)",
        "bench_pool_map.py", ("--chunksize", "1", "--progress"), None, "per_task"),
    Row("pool_map_c10", "Pool.map, chunksize=10", "bench_pool_map.py",
        ("--chunksize", "10"), None, "per_task_chunked"),
    Row("pool_map_default", "Pool.map, default chunksize", "bench_pool_map.py",
        ("--chunksize", "default"), _ratio(1, "≥ 1×"), "per_task_chunked"),
    Row("pool_map_c1_timeout", "mphost.Pool(task_timeout=60).map, chunksize=1",
        "bench_pool_map.py", ("--chunksize", "1", "--pool", "timeout"), None, "per_task"),
    Row("pool_map_c1_counters", "mphost.Pool().map (insights counters), chunksize=1",
        "bench_pool_map.py", ("--chunksize", "1", "--pool", "counters"), None, "per_task"),
    Row("pool_imap", "Pool.imap, default chunksize", "bench_pool_imap.py",
        (), _ratio(3, "≥ 3×"), "per_task"),
    Row("pool_imap_unordered", "Pool.imap_unordered, default chunksize", "bench_pool_imap.py",
        ("--unordered",), None, "per_task"),
    Row("pool_apply_async", "Pool.apply_async, one at a time", "bench_pool_apply.py",
        (), _ratio(5, "≥ 5×"), "sync_task"),
    Row("pool_cpu_speedup", "CPU-bound Pool speedup over serial", "bench_pool_cpu.py",
        (), Target("absolute", 1.9, "speedup ≥ 1.9"), "cores"),
    Row("futures_map", "ProcessPoolExecutor.map", "bench_futures.py",
        ("--mode", "map"), None, "per_task"),
    Row("futures_submit", "ProcessPoolExecutor.submit", "bench_futures.py",
        ("--mode", "submit"), None, "per_task"),
    Row("mphost_executor_map", "mphost.ProcessPoolExecutor.map (stock: its own)", "bench_futures.py",
        ("--mode", "map", "--executor", "mphost"), None, "per_task"),
    Row("mphost_executor_submit", "mphost.ProcessPoolExecutor.submit (stock: its own)",
        "bench_futures.py", ("--mode", "submit", "--executor", "mphost"), None, "per_task"),
    Row("process_spawn", "Process start+join, spawn", "bench_process_start.py",
        ("--method", "spawn"), _ratio(5, "≤ 1/5 time"), "spawn"),
    Row("process_fork", "Process start+join, fork", "bench_process_start.py",
        ("--method", "fork"), _ratio(1, "≤ stock"), "fork"),
    Row("process_forkserver", "Process start+join, forkserver", "bench_process_start.py",
        ("--method", "forkserver"), _ratio(1, "≤ stock"), "fork"),
    Row("pool_spawn", "Pool(8) spawn workers created, one trivial map, closed and joined",
        "bench_pool_spawn.py", ("--method", "spawn"), _ratio(5, "≤ 1/5 time"), "spawn"),
    Row("lock_uncontended", "Lock acquire+release, uncontended", "bench_lock.py",
        (), _ratio(1, "≥ 1×"), "mutex"),
    Row("value_2procs", "Value += 1 under its lock, 2 processes", "bench_value.py",
        (), _ratio(2, "≥ 2×"), "mutex_2proc"),
    Row("event_roundtrip", "Event set/wait round trip, 2 processes", "bench_event_roundtrip.py",
        (), _ratio(5, "≥ 5×"), "wakeup"),
    Row("barrier2_cycles", "Barrier(2) wait cycles, 2 processes", "bench_barrier.py",
        (), _ratio(5, "≥ 5×"), "wakeup"),
    Row("manager_dict", "Manager dict set+get round trip", "bench_manager_dict.py",
        (), _ratio(5, "≥ 5×"), "manager"),
    Row("shm_numpy", "shared_memory numpy hand-off (128 MiB)", "bench_shm_numpy.py",
        (), None, "memread"),
    Row("memory_spawn", "Idle child PSS, spawn", "bench_memory.py",
        ("--method", "spawn"), _ratio(1, "≤ stock"), "memory_spawn"),
    Row("memory_fork", "Idle child PSS, fork", "bench_memory.py",
        ("--method", "fork"), _ratio(1, "≤ stock"), "memory_fork"),
    Row("memory_forkserver", "Idle child PSS, forkserver", "bench_memory.py",
        ("--method", "forkserver"), _ratio(1, "≤ stock"), "memory_spawn"),
    Row("pools_8x2", "8 pools of 2 workers on 2 cores, map chunksize=1", "bench_pools_many.py",
        ("--pools", "8", "--workers", "2"), _ratio(5, "≥ 5×"), "oversubscribed"),
    Row("idle_pool", "A Pool(2) waiting for work, 10 s", "bench_idle.py",
        ("--what", "pool"), IDLE_1PCT, "idle", runs=3),
    Row("idle_queue", "A consumer blocked on an empty Queue, 10 s", "bench_idle.py",
        ("--what", "queue"), IDLE_1PCT, "idle", runs=3),
    Row("startup_pass", "Interpreter start-up, -c pass", "bench_startup.py",
        ("--code", "pass"), None, "startup"),
    Row("startup_import", "Start-up, -c \"import multiprocessing\"", "bench_startup.py",
        ("--code", "import"), None, "startup_import"),
    # The C++ face: mphost::host_pool driven from C++ (a driver program)
    # against ProcessPoolExecutor driven from Python.
    Row("cpp_pool_roundtrip", "C++ host_pool: tiny call round trip", "bench_cpp_pool.py",
        ("--mode", "roundtrip"), _ratio(10, "≤ 1/10 time"), "sync_task"),
    Row("cpp_pool_threads4", "C++ host_pool: calls/s, 4 submitting threads", "bench_cpp_pool.py",
        ("--mode", "threads"), QUEUE_10X, "per_task"),
) + tuple(
    Row(f"cpp_pool_handoff_{mb}mb", f"C++ host_pool: {mb} MB array to numpy", "bench_cpp_pool.py",
        ("--mode", "handoff", "--mb", str(mb)), None, "memread",
        runs=3 if mb >= 1000 else None)  # stock pickles 1 GB: ~7 s a hand-off
    for mb in (1, 10, 100, 1000)
) + (
    # The MPI cluster (bench_cluster.py): the stock column is
    # mpi4py.futures.MPIPoolExecutor on the same ranks, the mphost column
    # `mpiexec ... mphost --cluster=mpi`; 3 ranks = 2 worker ranks.
    Row("cluster_map_default", "MPI cluster Pool.map, tiny tasks, default chunksize "
        "(stock: MPIPoolExecutor.map, its default chunksize 1)", "bench_cluster.py",
        ("--what", "map"), _ratio(2, "≥ 2×"), "cluster_per_task", needs="mpi"),
    Row("cluster_map_chunked", "MPI cluster Pool.map, tiny tasks, default chunksize "
        "(stock: MPIPoolExecutor.map given the same chunksize)", "bench_cluster.py",
        ("--what", "map", "--chunksize", "pool"), _ratio(2, "≥ 2×"), "cluster_chunked",
        needs="mpi"),
    Row("cluster_submit", "MPI cluster executor.submit, tiny tasks (stock: MPIPoolExecutor.submit)",
        "bench_cluster.py", ("--what", "submit"), _ratio(2, "≥ 2×"), "cluster_per_task",
        needs="mpi"),
    Row("cluster_numpy_1mib", "MPI cluster Pool.map, 1 MiB numpy in and out (stock: MPIPoolExecutor)",
        "bench_cluster.py", ("--what", "numpy"), _ratio(1, "≥ 1×"), "cluster_bytes", needs="mpi"),
    Row("cluster_map_default_tcp", "MPI cluster Pool.map, tiny tasks, default chunksize, tcp "
        "(stock: MPIPoolExecutor.map)", "bench_cluster.py",
        ("--what", "map", "--btl", "tcp"), _ratio(2, "≥ 2×"), "cluster_per_task", needs="mpi"),
    Row("cluster_submit_tcp", "MPI cluster executor.submit, tiny tasks, tcp "
        "(stock: MPIPoolExecutor.submit)", "bench_cluster.py",
        ("--what", "submit", "--btl", "tcp"), _ratio(2, "≥ 2×"), "cluster_per_task", needs="mpi"),
    Row("cluster_numpy_1mib_tcp", "MPI cluster Pool.map, 1 MiB numpy in and out, tcp "
        "(stock: MPIPoolExecutor)", "bench_cluster.py",
        ("--what", "numpy", "--btl", "tcp"), _ratio(1, "≥ 1×"), "cluster_bytes", needs="mpi"),
    Row("cluster_cpu_2ranks", "MPI cluster CPU-bound speedup, 2 worker ranks over 1 "
        "(stock: MPIPoolExecutor)", "bench_cluster.py",
        ("--what", "cpu", "--workers", "2"), None, "cores", needs="mpi"),
    Row("cluster_cpu_4ranks", "MPI cluster CPU-bound speedup, 4 worker ranks over 1, "
        "oversubscribed (stock: MPIPoolExecutor)", "bench_cluster.py",
        ("--what", "cpu", "--workers", "4"), None, "cores", needs="mpi"),
)


def _get(limits, key):
    entry = limits.get(key)
    if entry is None:
        return None
    return entry["value"] if isinstance(entry, dict) else entry


def fmt(v):
    """Three significant digits with k/M/G suffixes ("-" for None)."""
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.3g} G"
    if a >= 1e6:
        return f"{v / 1e6:.3g} M"
    if a >= 1e4:
        return f"{v / 1e3:.3g} k"
    if a >= 1e3:
        return f"{v:.0f}"
    return f"{v:.3g}"


_fmt = fmt


def describe_limit(key, limits):
    """One short sentence: the physical limit a row is bounded by, with the
    figures measured on this machine (limits as returned by the runner)."""
    g = lambda k: _get(limits, k)  # noqa: E731
    if key == "queue_consumer":
        c = g("queue_consumer_loop_us")
        bound = 1e6 / c if c else None
        return (f"the scenario's consumer loop with pickle.loads and no queue: {_fmt(c)} µs "
                f"per message → ≤ {_fmt(bound)} msgs/s per consumer, before any IPC")
    if key == "pickling":
        d, l = g("pickle_dumps_small_us"), g("pickle_loads_small_us")
        bound = 2e6 / (d + l) if d and l else None
        return (f"pickle dumps+loads of the message {_fmt(d)}+{_fmt(l)} µs "
                f"→ ≤ {_fmt(bound)} msgs/s on 2 cores")
    if key == "wakeup":
        return (f"waking a sleeping process on the other CPU {_fmt(g('futex_wake_us'))} µs one way; "
                f"raw RTT between 2 processes: futex {_fmt(g('futex_rtt_us'))} µs, "
                f"spinning {_fmt(g('futex_spin_rtt_us'))} µs, on 1 CPU "
                f"{_fmt(g('futex_rtt_same_cpu_us'))} µs; pipe {_fmt(g('pipe_rtt_us'))} µs")
    if key == "memcpy":
        return (f"one copy at memcpy speed: {_fmt(g('memcpy_1mib_hot_gbps'))} GB/s in cache, "
                f"{_fmt(g('memcpy_1mib_stream_gbps'))} GB/s from memory")
    if key == "memread":
        return (f"zero-copy: bounded by reading memory (memcpy "
                f"{_fmt(g('memcpy_1mib_stream_gbps'))} GB/s from memory) and page mapping")
    if key == "per_task":
        d, l = g("pickle_dumps_small_us"), g("pickle_loads_small_us")
        bound = 1e6 / (d + l) if d and l else None
        return (f"the parent pickles each task and unpickles its result: "
                f"~{_fmt((d or 0) + (l or 0))} µs → ≤ {_fmt(bound)} tasks/s")
    if key == "per_task_chunked":
        ns = g("pickle_int_list_ns")
        return (f"chunks are lists: pickle+unpickle {_fmt(ns)} ns per int → ≤ "
                f"{_fmt(1e9 / ns if ns else None)} tasks/s in the parent; 2 workers")
    if key == "sync_task":
        s, w = g("futex_spin_rtt_us"), g("futex_wake_us")
        return (f"one round trip per task: 2 wake-ups of a sleeper ({_fmt(w)} µs each) → ≤ "
                f"{_fmt(1e6 / (2 * w) if w else None)}/s; spinning RTT {_fmt(s)} µs → ≤ "
                f"{_fmt(1e6 / s if s else None)}/s")
    if key == "cores":
        return f"{_fmt(g('cores'))} cores → speedup ≤ {_fmt(g('cores'))}"
    if key == "spawn":
        return (f"posix_spawn of /bin/true {_fmt(_ms(g('posix_spawn_true_us')))} ms + "
                f"python3 -S -c pass {_fmt(g('python_S_pass_ms'))} ms (a warm interpreter avoids both)")
    if key == "fork":
        return (f"fork+exit+wait {_fmt(_ms(g('fork_exit_wait_us')))} ms (small process), "
                f"{_fmt(_ms(g('fork_exit_wait_64mib_us')))} ms (64 MiB resident)")
    if key == "mutex":
        return (f"process-shared pthread mutex lock+unlock: "
                f"{_fmt(g('mutex_uncontended_pairs_per_s'))} pairs/s (C++)")
    if key == "mutex_2proc":
        return (f"2 C++ processes incrementing under one shared mutex: "
                f"{_fmt(g('mutex_2proc_increments_per_s'))} increments/s")
    if key == "manager":
        w, s = g("futex_wake_us"), g("futex_spin_rtt_us")
        return (f"2 round trips to the server process: 4 wake-ups of a sleeper ({_fmt(w)} µs "
                f"each), or 2 × {_fmt(s)} µs spinning")
    if key == "memory_spawn":
        return f"a fresh idle python3 -S: {_fmt(g('python_S_idle_pss_kib'))} KiB PSS"
    if key == "memory_fork":
        return "copy-on-write: only the pages the child writes after fork are its own"
    if key == "oversubscribed":
        return (f"more processes than the {_fmt(g('cores'))} cores: a process that spins "
                "while it waits takes a core from one that has work; bounded by the "
                "pickling of each item in its one consumer or parent")
    if key == "idle":
        return ("a process blocked in the kernel (futex or poll without timeout) uses no "
                "CPU; every periodic wake-up or spin costs some")
    if key == "startup":
        return (f"python3 -S -c pass {_fmt(g('python_S_pass_ms'))} ms; "
                f"posix_spawn of /bin/true {_fmt(_ms(g('posix_spawn_true_us')))} ms")
    if key == "cluster_per_task":
        d, l = g("pickle_dumps_small_us"), g("pickle_loads_small_us")
        return (f"rank 0 dispatches every task alone: pickling task and result "
                f"~{_fmt((d or 0) + (l or 0))} µs, plus one MPI message each way and the "
                f"worker's wake-up ({_fmt(g('futex_wake_us'))} µs on this machine)")
    if key == "cluster_chunked":
        ns = g("pickle_int_list_ns")
        return (f"chunks are lists: pickle+unpickle {_fmt(ns)} ns per int on rank 0 → ≤ "
                f"{_fmt(1e9 / ns if ns else None)} tasks/s")
    if key == "cluster_bytes":
        return (f"each MiB crosses ranks once each way: memcpy "
                f"{_fmt(g('memcpy_1mib_stream_gbps'))} GB/s from memory (shared memory), "
                "the loopback's bandwidth over tcp")
    if key == "startup_import":
        return (f"python3 -c \"import multiprocessing\" "
                f"{_fmt(g('python_import_mp_ms'))} ms (stdlib modules from disk cache)")
    return ""


def _ms(us):
    return None if us is None else us / 1e3


def select(pattern):
    """Rows whose id matches the regular expression (re.search), or all."""
    import re
    if not pattern:
        return list(ROWS)
    rx = re.compile(pattern)
    return [r for r in ROWS if rx.search(r.id)]
