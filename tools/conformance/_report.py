"""The conformance report: JSON document, merging of partial runs, Markdown.

The JSON document (docs/conformance.json) is the source; the Markdown page
(docs/CONFORMANCE.md) is rendered from it alone, so either can be rebuilt
from the JSON. Layout::

    {"format": 1, "generated": DATE, "duration": SECONDS, "machine": {...},
     "interpreters": {"stock": {"path", "version"}, "mphost": {...}},
     "commands": [HARNESS COMMAND LINE, ...],
     "suites": {SUITE: {"stock": SIDE, "mphost": SIDE}},
     "comparison": {SUITE: {"regressions", "mphost_only", "skip_differences"}},
     "expected_check": {"unexpected": [...], "warnings": [...]}}

SIDE is a _runner.SideRun in JSON form: every test id with its status, time
and message, the regrtest commands that ran, problems (hangs outside tests,
leftover processes, limits reached) and notes.

A run restricted by -m patterns (``--match``, ``--rerun-failed``) updates
the results it selected in the existing document and keeps the others; an
unrestricted run of a suite replaces that suite's side.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

from _matching import matcher
from _outcomes import SKIP, Outcome, category, count, split_fixture_id
from _runner import SideRun
from _suites import SUITES

FORMAT = 1
SIDES = ("stock", "mphost")


@dataclasses.dataclass
class Comparison:
    regressions: list[tuple[str, Outcome, Outcome | None]]
    mphost_only: list[tuple[str, Outcome | None, Outcome]]
    skip_differences: list[tuple[str, str, str]]

    def to_json(self) -> dict:
        return {
            "regressions": [{"id": test_id, "stock": stock.status,
                             "mphost": other.status if other else "missing",
                             "message": other.message if other else "did not run"}
                            for test_id, stock, other in self.regressions],
            "mphost_only": [{"id": test_id, "stock": stock.status if stock else "missing",
                             "mphost": other.status}
                            for test_id, stock, other in self.mphost_only],
            "skip_differences": [{"id": test_id, "stock": a, "mphost": b}
                                 for test_id, a, b in self.skip_differences],
        }


def covered(side: SideRun):
    return matcher(side.match)


def compare_sides(stock: SideRun, mphost: SideRun) -> Comparison:
    """Differences between the two sides, over the tests both runs selected."""
    in_stock, in_mphost = covered(stock), covered(mphost)

    def selected(test_id: str) -> bool:
        return in_stock(test_id) and in_mphost(test_id)

    regressions, mphost_only, skips = [], [], []
    for test_id in sorted(set(stock.outcomes) | set(mphost.outcomes)):
        if not selected(test_id):
            continue
        a, b = stock.outcomes.get(test_id), mphost.outcomes.get(test_id)
        if a is not None and a.passed and (b is None or not b.passed):
            regressions.append((test_id, a, b))
        elif b is not None and b.passed and (a is None or not a.passed):
            mphost_only.append((test_id, a, b))
        elif (a is not None and b is not None and a.status == SKIP == b.status
              and a.message != b.message):
            skips.append((test_id, a.message, b.message))
    return Comparison(regressions, mphost_only, skips)


def relative_paths(run: SideRun, root: Path) -> SideRun:
    """run with paths under root written relative to it (the report is committed)."""
    prefix = str(root).rstrip("/") + "/"

    def rel(text: str) -> str:
        return text[len(prefix):] if text.startswith(prefix) else text
    attempts = [dataclasses.replace(attempt, command=[rel(arg) for arg in attempt.command],
                                    log=rel(attempt.log), junit=rel(attempt.junit))
                for attempt in run.attempts]
    return dataclasses.replace(run, attempts=attempts)


def merge_side(old: SideRun | None, new: SideRun) -> SideRun:
    """new folded into old: an unrestricted run replaces, a restricted one updates."""
    if old is None or not new.match:
        return new
    selected = matcher(new.match)
    outcomes = {test_id: outcome for test_id, outcome in old.outcomes.items()
                if not selected(test_id)}
    outcomes.update(new.outcomes)
    merged = dataclasses.replace(old, outcomes=outcomes)
    merged.attempts = list(old.attempts) + list(new.attempts)
    merged.problems = list(old.problems) + [f"(re-run {new.started}) {problem}"
                                            for problem in new.problems]
    merged.notes = list(old.notes) + [f"{new.started}: re-ran the tests matching "
                                      f"{' '.join(new.match)} "
                                      f"({len(new.outcomes)} results, {new.duration:.0f} s)"]
    merged.notes += [f"(re-run {new.started}) {note}" for note in new.notes]
    if new.source != "junit":
        merged.source = new.source
    return merged


def load_document(path: Path) -> dict | None:
    if not path.exists():
        return None
    document = json.loads(path.read_text())
    if document.get("format") != FORMAT:
        raise ValueError(f"{path}: unsupported report format {document.get('format')!r}")
    return document


def sides_of(document: dict | None) -> dict[str, dict[str, SideRun]]:
    """suite -> side -> SideRun of a loaded document."""
    found: dict[str, dict[str, SideRun]] = {}
    for suite, sides in (document or {}).get("suites", {}).items():
        for side, data in sides.items():
            found.setdefault(suite, {})[side] = SideRun.from_json(suite, side, data)
    return found


def build_document(runs: dict[str, dict[str, SideRun]], *, generated: str, duration: float,
                   machine: dict, interpreters: dict, commands: list[str],
                   expected_check: dict) -> dict:
    comparison = {}
    for suite, sides in runs.items():
        if "stock" in sides and "mphost" in sides:
            comparison[suite] = compare_sides(sides["stock"], sides["mphost"]).to_json()
    return {
        "format": FORMAT,
        "generated": generated,
        "duration": round(duration, 1),
        "machine": machine,
        "interpreters": interpreters,
        "commands": commands,
        "suites": {suite: {side: runs[suite][side].to_json()
                           for side in SIDES if side in runs[suite]}
                   for suite in _suite_order(runs)},
        "comparison": comparison,
        "expected_check": expected_check,
    }


def _suite_order(names) -> list[str]:
    known = [suite for suite in SUITES if suite in names]
    return known + sorted(set(names) - set(known))


# -- Markdown ---------------------------------------------------------------

def render_markdown(document: dict) -> str:
    runs = sides_of(document)
    out: list[str] = []
    write = out.append
    write("# Conformance: CPython's multiprocessing test suites under mphost\n\n")
    write("Generated by `tools/conformance/run_conformance.py` from "
          "`docs/conformance.json`; do not edit by hand.\n\n")
    machine = document.get("machine", {})
    interpreters = document.get("interpreters", {})
    write(f"- Date: {document.get('generated', '?')}\n")
    write(f"- Machine: {machine.get('host', '?')}, {machine.get('platform', '?')}, "
          f"{machine.get('cpus', '?')} CPUs ({machine.get('cpu_model', '?')}), "
          f"{machine.get('memory_gib', '?')} GiB, load average at start "
          f"{' '.join(str(v) for v in machine.get('load_average', []))}\n")
    write(f"- Duration of the last harness run: {_minutes(document.get('duration', 0))}\n")
    for side in SIDES:
        info = interpreters.get(side)
        if info:
            write(f"- {side}: `{info['path']}` — {info['version']}\n")
    stock_path = interpreters.get("stock", {}).get("path")
    if stock_path and stock_path == interpreters.get("mphost", {}).get("path"):
        write("- **Both columns ran the same interpreter: this is a stock-vs-stock baseline, "
              "not a measurement of mphost.**\n")
    write("\n## Summary\n\n")
    write(_summary_table(runs))
    write("\nA test is counted once: `pass` includes expected failures, `fail` includes "
          "unexpected successes, `error` includes hangs and crashes; failing class or "
          "module fixtures (`setUpClass (...)`) are counted as results of their own.\n")

    write("\n## By test class\n\n")
    write(_class_table(runs))

    problems = [(suite, side, problem) for suite in _suite_order(runs)
                for side in SIDES if side in runs[suite]
                for problem in runs[suite][side].problems]
    casualties = [(suite, side, outcome) for suite in _suite_order(runs)
                  for side in SIDES if side in runs[suite]
                  for outcome in runs[suite][side].outcomes.values()
                  if outcome.status in ("hang", "crash")]
    write("\n## Hangs, crashes and run problems\n\n")
    if not problems and not casualties:
        write("None.\n")
    for suite, side, outcome in casualties:
        write(f"- {suite} [{side}]: **{outcome.status}** in `{outcome.test_id}`: "
              f"{_md(outcome.message)}\n")
    for suite, side, problem in problems:
        write(f"- {suite} [{side}]: {_md(problem)}\n")

    comparison = document.get("comparison", {})
    _regressions_section(out, comparison)
    _section(out, "Pass only on mphost", comparison, "mphost_only",
             lambda e: f"`{e['id']}` (stock: {e['stock']})")
    _section(out, "Skips whose reason differs from stock", comparison, "skip_differences",
             lambda e: f"`{e['id']}`: stock '{_md(e['stock'])}', mphost '{_md(e['mphost'])}'")

    check = document.get("expected_check") or {}
    write("\n## Check against tests/conformance/expected_failures.txt\n\n")
    if not check:
        write("Not checked (no mphost run).\n")
    else:
        unexpected = check.get("unexpected", [])
        write(f"{len(unexpected)} unexpected results.\n")
        for line in unexpected:
            write(f"- {_md(line)}\n")
        for warning in check.get("warnings", []):
            write(f"- warning: {_md(warning)}\n")

    notes = [(suite, side, note) for suite in _suite_order(runs)
             for side in SIDES if side in runs[suite] for note in runs[suite][side].notes]
    if notes:
        write("\n## Notes\n\n")
        for suite, side, note in notes:
            write(f"- {suite} [{side}]: {_md(note)}\n")

    write("\n## How to reproduce\n\n")
    write("Harness command(s) that produced this report, from the repository root:\n\n```\n")
    for command in document.get("commands", []):
        write(command + "\n")
    write("```\n\nThe regrtest command of each suite run (the first attempt; a restart adds "
          "`-i TEST_ID` for each test that hung or crashed):\n\n```\n")
    for suite in _suite_order(runs):
        for side in SIDES:
            run = runs[suite].get(side)
            if run and run.attempts:
                write(shlex.join(run.attempts[0].command) + "\n")
    write("```\n")
    return "".join(out)


def _summary_table(runs: dict[str, dict[str, SideRun]]) -> str:
    columns = ("run", "pass", "fail", "error", "skip")
    head = ["suite"] + [f"stock {c}" for c in columns] + [f"mphost {c}" for c in columns] + \
        ["stock time", "mphost time"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    totals = {side: dict.fromkeys(columns, 0) for side in SIDES}
    for suite in _suite_order(runs):
        row = [suite]
        for side in SIDES:
            run = runs[suite].get(side)
            if run is None:
                row += ["—"] * len(columns)
                continue
            counts = count(run.outcomes.values())
            for column in columns:
                totals[side][column] += counts[column]
            row += [str(counts[c]) for c in columns]
        for side in SIDES:
            run = runs[suite].get(side)
            row.append(_minutes(run.duration) if run else "—")
        lines.append("| " + " | ".join(row) + " |")
    total_row = ["**total**"] + [str(totals[side][c]) for side in SIDES for c in columns] + ["", ""]
    lines.append("| " + " | ".join(total_row) + " |")
    return "\n".join(lines) + "\n"


def _test_class(test_id: str) -> str | None:
    # `test.<module>.<Class>.<method>`: the class, with the start method's
    # prefix of the generated variants kept (WithProcessesTestQueue...).
    if split_fixture_id(test_id) is not None:
        return None
    parts = test_id.split(".")
    return parts[-2] if len(parts) >= 3 else None


def _class_table(runs: dict[str, dict[str, SideRun]]) -> str:
    """pass/run per test class, the suites of every start method together."""
    tallies: dict[str, dict[str, list[int]]] = {}
    for suite in _suite_order(runs):
        for side in SIDES:
            run = runs[suite].get(side)
            if run is None:
                continue
            for outcome in run.outcomes.values():
                name = _test_class(outcome.test_id)
                if name is None:
                    continue
                tally = tallies.setdefault(name, {s: [0, 0, 0] for s in SIDES})[side]
                kind = category(outcome.status)
                tally[0] += kind == "pass"
                tally[1] += kind == "skip"
                tally[2] += 1
    lines = ["Each class summed over the suites it appears in (a class of the shared "
             "multiprocessing tests runs once per start method): passed / skipped / run.\n",
             "| test class | stock | mphost | same |", "|---|---|---|---|"]
    for name in sorted(tallies):
        cells = ["%d / %d / %d" % tuple(tallies[name][side]) for side in SIDES]
        same = "yes" if tallies[name]["stock"][:2] == tallies[name]["mphost"][:2] else "**no**"
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {same} |")
    return "\n".join(lines) + "\n"


FOLD_MISSING = 20


def _regressions_section(out, comparison) -> None:
    """Failures one per line; tests that did not run at all folded when many."""
    total = sum(len(comparison[suite].get("regressions", [])) for suite in comparison)
    out.append(f"\n## Pass on stock, not on mphost ({total})\n\n")
    if not total:
        out.append("None.\n")
        return
    for suite in _suite_order(comparison):
        entries = comparison[suite].get("regressions", [])
        if not entries:
            continue
        out.append(f"\n### {suite} ({len(entries)})\n\n")
        missing = [e for e in entries if e["mphost"] == "missing"]
        for entry in entries:
            if entry["mphost"] != "missing" or len(missing) <= FOLD_MISSING:
                out.append(f"- `{entry['id']}`: {entry['mphost']} — {_md(entry['message'])}\n")
        if len(missing) > FOLD_MISSING:
            out.append(f"- {len(missing)} tests did not run under mphost\n\n"
                       "<details><summary>tests that did not run</summary>\n\n")
            for entry in missing:
                out.append(f"- `{entry['id']}`\n")
            out.append("\n</details>\n")


def _section(out, title, comparison, key, describe) -> None:
    entries = [(suite, entry) for suite in _suite_order(comparison)
               for entry in comparison[suite].get(key, [])]
    out.append(f"\n## {title} ({len(entries)})\n\n")
    if not entries:
        out.append("None.\n")
        return
    current = None
    for suite, entry in entries:
        if suite != current:
            out.append(f"\n### {suite}\n\n")
            current = suite
        out.append(f"- {describe(entry)}\n")


def _md(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _minutes(seconds: float) -> str:
    seconds = float(seconds or 0)
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
