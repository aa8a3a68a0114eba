"""JSON text for files kept in the repository: one record per line.

``json.dumps(indent=...)`` spreads every small record over several lines,
which makes the committed report and reference long and their diffs hard to
read. Here an object or array whose members are all scalars (a test result,
a command line) is written on one line, and only the containers above them
are indented, so a changed test result is a one-line diff.
"""

from __future__ import annotations

import json


def dumps(value) -> str:
    return _dump(value, 0) + "\n"


def _is_flat(value) -> bool:
    members = value.values() if isinstance(value, dict) else value
    return all(not isinstance(member, (dict, list)) or not member for member in members)


def _dump(value, depth: int) -> str:
    if not isinstance(value, (dict, list)) or _is_flat(value):
        return json.dumps(value, ensure_ascii=False)
    pad = " " * (depth + 1)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(str(key), ensure_ascii=False)}: {_dump(item, depth + 1)}"
                 for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * depth + "}"
    items = [pad + _dump(item, depth + 1) for item in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * depth + "]"
