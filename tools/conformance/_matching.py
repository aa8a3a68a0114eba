"""regrtest's test selection (-m/--match, -i/--ignore), for reading results.

The harness passes patterns to regrtest, which selects the tests; it never
filters tests itself. It needs the same rule to know which recorded results
a run covered (to merge a partial run into the report, to select the part
of the stock reference a CI run is compared with). The rule is 3.11's
``test.support.set_match_tests``:

* a pattern with a dot and no glob character (``* ? [ ]``) is a full test
  id and matches only that id;
* otherwise a pattern is an fnmatch glob, case-sensitive, that matches when it
  matches the whole id or any one dot-separated part of it
  (``*TestPool`` matches ``test.test_x.WithProcessesTestPool.test_map``);
* a test runs when it matches some accept pattern (or none are given) and
  no ignore pattern.

Fixture records (``setUpClass (test.test_x.C)``) are matched through the
class or module they belong to; a module record (``<module> (test.test_x)``)
is covered by every run of its suite.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Callable, Iterable

from _outcomes import MODULE_RECORD, split_fixture_id

_GLOB = re.compile(r"[?*\[\]]")


def is_full_test_id(pattern: str) -> bool:
    return "." in pattern and not _GLOB.search(pattern)


def _compile(patterns: tuple[str, ...]) -> Callable[[str], bool] | None:
    if not patterns:
        return None
    if all(map(is_full_test_id, patterns)):
        return frozenset(patterns).__contains__
    regex = re.compile("|".join(map(fnmatch.translate, patterns))).match

    def matches(test_id: str) -> bool:
        return bool(regex(test_id)) or any(map(regex, test_id.split(".")))
    return matches


def matcher(accept: Iterable[str] = (), ignore: Iterable[str] = ()) -> Callable[[str], bool]:
    """Predicate on result ids: would regrtest run this test with these patterns?"""
    accept = tuple(accept)
    accept_test = _compile(accept)
    ignore_test = _compile(tuple(ignore))

    def selected(test_id: str) -> bool:
        fixture = split_fixture_id(test_id)
        if fixture is not None and fixture[0] == MODULE_RECORD:
            return True     # any run of a suite imports its module
        if fixture is not None:
            owner = fixture[1]
            # a class fixture runs when some test of the class is selected;
            # only glob patterns can tell that from the class name alone
            accept_ok = accept_test is None or accept_test(owner) or _prefix_of_any(owner, accept)
            return accept_ok and not (ignore_test is not None and ignore_test(owner))
        if accept_test is not None and not accept_test(test_id):
            return False
        return not (ignore_test is not None and ignore_test(test_id))
    return selected


def _prefix_of_any(owner: str, patterns: Iterable[str]) -> bool:
    return any(pattern.startswith(owner + ".") for pattern in patterns)
