"""Description of the machine and interpreters a report was produced on."""

from __future__ import annotations

import os
import platform
import subprocess

_VERSION_CODE = "import sys; print(sys.version.replace(chr(10), ' '))"


def machine() -> dict:
    info = {
        "host": platform.node(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }
    return info


def interpreter_version(path: str) -> str:
    """``sys.version`` as the interpreter reports it, or why it could not."""
    try:
        done = subprocess.run([path, "-c", _VERSION_CODE], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [""])[-1]
        return f"unavailable (exit status {done.returncode}: {last})"
    return done.stdout.strip()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None
