"""Tests of the benchmark harness (tools/bench), run with stock python3:

    /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/bench

They check the CPU accounting of a scenario's process tree, the targets and
the report, and that the runner's quick mode yields the CPU columns; both
"interpreters" are stock python3 here, so nothing depends on mphost.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "tools" / "bench"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH / "scenarios"))

import _catalog  # noqa: E402
import _execute  # noqa: E402
import _report  # noqa: E402

BURN = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, sys.argv[1])
    import _benchlib as bl

    def burn(seconds):
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass

    burn(0.2)                      # before the section: not counted
    bl.cpu_begin()
    pid = os.fork()
    if pid == 0:                   # child: burns, and has a grandchild that burns
        grand = os.fork()
        if grand == 0:
            burn(0.3)
            os._exit(0)
        burn(0.3)
        os.waitpid(grand, 0)
        os._exit(0)
    os.waitpid(pid, 0)             # both reaped inside the section
    bl.cpu_end()
    burn(0.2)                      # after the section: not counted
    bl.emit("x", 1, "u", True, cpu_items=2)
""")


def test_tree_cpu_counts_reaped_children_and_grandchildren_of_the_section_only(tmp_path):
    script = tmp_path / "burn.py"
    script.write_text(BURN)
    out = _execute.run(sys.executable, script, [str(BENCH / "scenarios")], timeout=60)
    assert out.status == "ok", out.message + out.stderr_tail
    cpu = out.record["cpu_s"]
    assert 0.5 <= cpu <= 0.8, cpu      # 0.3 + 0.3, not the 0.4 outside the section
    assert out.record["cpu_items"] == 2


def test_at_most_target_is_met_on_mphosts_own_value():
    t = _catalog.Target("at_most", 1.0, "≤ 1 %")
    assert t.met(None, 0.4) and t.met(None, 1.0) and not t.met(None, 1.5)
    assert t.as_ratio(0.0) is None


def _outcome(value, cpu_s, items):
    return _execute.Outcome("ok", value=value, record={
        "value": value, "unit": "msgs/s", "higher_is_better": True,
        "cpu_s": cpu_s, "cpu_items": items})


def test_cpu_ratio_is_stock_over_mphost_per_item_and_needs_resolution():
    row = _catalog.Row("x", "X", "bench_queue.py", (), _catalog.Target("ratio", 5, "≥ 5×"))
    res = _report.row_result(row, [_outcome(100, 2.0, 1000)] * 3, [_outcome(600, 0.5, 1000)] * 3, {})
    assert res["ratio"] == 6 and res["target_met"]
    assert res["cpu_ratio"] == 4 and res["cpu_met"]
    assert res["stock"]["cpu_us_per_item"]["median"] == 2000
    tiny = _report.row_result(row, [_outcome(100, 0.01, 1000)], [_outcome(600, 0.0, 1000)], {})
    assert tiny["cpu_ratio"] is None and tiny["cpu_met"] is None
    md = _report.markdown({
        "machine": {"cpu": "c", "cpu_family_model": "f", "cores": 2, "memory_gib": 1, "os": "o",
                    "kernel": "k", "stock_python": "p", "mphost": "m", "commit": "c"},
        "started": "now", "duration_s": 60, "runs": 3, "rows": [res], "limits": {},
        "command": ["run_bench.py"], "scaling": {
            "queue_producers": {"runs": 1, "unit": "msgs/s", "points": [
                {"producers": 16, "stock": res["stock"], "mphost": res["mphost"]}]},
            "start_rss": {"runs": 1, "unit": "ms", "points": [
                {"method": "fork", "mb": 2000, "stock": res["stock"], "mphost": res["mphost"]}]}}})
    assert "CPU µs/item, stock" in md
    assert "| 2000 (2000–2000) | 500 (500–500) | 4.00× | yes |" in md
    assert "| 16 |" in md and "| fork | 2,000 MB |" in md


def test_quick_run_reports_cpu_and_idle_rows(tmp_path):
    done = subprocess.run(
        [sys.executable, str(BENCH / "run_bench.py"), "--quick", "--mphost", sys.executable,
         "--only", "^(queue_16to1|pools_8x2|idle_queue)$", "--no-report"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    data = json.loads((BENCH / "results" / "latest-quick.json").read_text())
    rows = {r["id"]: r for r in data["rows"]}
    assert set(rows) == {"queue_16to1", "pools_8x2", "idle_queue"}
    for key in ("queue_16to1", "pools_8x2"):
        cpu = rows[key]["stock"]["cpu_us_per_item"]
        assert cpu and cpu["median"] > 0, rows[key]["stock"]
    idle = rows["idle_queue"]
    assert idle["unit"] == "% of a core" and idle["target_met"] is True  # stock idles at ~0 %


def test_cluster_rows_skip_in_quick_mode_without_the_mpi_module(tmp_path):
    import _cluster
    launcher = tmp_path / "bin" / "mphost"          # no lib/mphost/_mphost_mpi*.so beside it
    launcher.parent.mkdir()
    launcher.write_text("")
    why_quick = _cluster.skip_reason(str(launcher), quick=True)
    why_full = _cluster.skip_reason(str(launcher), quick=False)
    if why_full is None:                           # mpiexec and mpi4py are here
        assert why_quick and "_mphost_mpi" in why_quick
    so = tmp_path / "lib" / "mphost" / "_mphost_mpi.cpython-311-x86_64-linux-gnu.so"
    so.parent.mkdir(parents=True)
    so.write_text("")
    assert _cluster.skip_reason(str(launcher), quick=True) == why_full
    ids = [r.id for r in _catalog.select("cluster")]
    assert "cluster_submit" in ids and "cluster_numpy_1mib_tcp" in ids
    assert all(_cluster.is_cluster(r) for r in _catalog.select("cluster"))
    assert not any(_cluster.is_cluster(r) for r in _catalog.select("^pool_map_c1$"))


def _cluster_outcome(value, local, cpu_s=1.0, items=1000, mb=None):
    rec = {"value": value, "unit": "tasks/s", "higher_is_better": True, "cpu_s": cpu_s,
           "cpu_items": items, "local_value": local, "local_cpu_us_per_item": 50.0}
    if mb is not None:
        rec.update(mb_per_s=mb, local_mb_per_s=mb * 2)
    return _execute.Outcome("ok", value=value, record=rec)


def test_cluster_section_shows_mpi4py_cluster_and_one_machine():
    row = next(r for r in _catalog.ROWS if r.id == "cluster_numpy_1mib_tcp")
    res = _report.row_result(row, [_cluster_outcome(200, None, mb=400)] * 3,
                             [_cluster_outcome(500, 1000, mb=1000)] * 3, {})
    assert res["ratio"] == 2.5 and res["target_met"]
    md = _report.markdown({
        "machine": {"cpu": "c", "cpu_family_model": "f", "cores": 2, "memory_gib": 1, "os": "o",
                    "kernel": "k", "stock_python": "p", "mphost": "m", "commit": "c"},
        "started": "now", "duration_s": 60, "runs": 3, "rows": [res], "limits": {},
        "command": ["run_bench.py"], "scaling": None})
    assert "## MPI cluster: mphost beside mpi4py.futures" in md
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {row.title} | tcp"))
    assert "| 200 (200–200); 400 MB/s | 500 (500–500); 1000 MB/s | 2.50× | ≥ 1× | yes |" in line
    assert "| 1000; 2000 MB/s | 0.50× |" in line
