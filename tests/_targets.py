"""The registry of tests that ``make test`` deselects (marker ``extended``), kept honest.

``make test`` (CI) deselects the ``extended`` tests; ``make test-all`` runs them too.  A test may
be ``extended`` only when it is a long statistical test whose law a default-run test also
checks, and ``docs/design/testing.md`` says which (its table "Deselected from ``make test``":
one row per deselected test id, then the law, then the default-run tests that still check it).
:func:`problems` compares that table with a collection: every ``extended`` test is listed,
every listed test is ``extended``, and every test named as still checking the law exists and
is not itself deselected.  ``conftest.py`` refuses an unlisted ``extended`` test on every
collection (:func:`unlisted`); ``tests/test_suite_targets.py`` runs the full comparison on a
collection of the listed files, and on planted wrong tables.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "design" / "testing.md"
HEADING = "### Deselected from `make test`"
_ID = re.compile(r"`(tests/[^`]+::[^`]+)`")


def registry(text: str) -> dict[str, list[str]]:
    """The table under ``HEADING``: deselected test id -> the default-run test ids that cover it."""
    _, _, section = text.partition(HEADING)
    out: dict[str, list[str]] = {}
    for line in section.splitlines()[1:]:
        if line.startswith("#"):
            break
        cells = line.split("|")
        if len(cells) < 5 or not _ID.search(cells[1]):
            continue
        out[_ID.search(cells[1]).group(1)] = _ID.findall(cells[3])
    return out


def problems(table: dict[str, list[str]], extended: set[str], default: set[str]) -> list[str]:
    """What is wrong with ``table`` for a collection whose ``extended`` and other test ids are
    given.  Entries whose file was not collected at all are not judged (a run of a few files)."""
    files = {i.split("::")[0] for i in extended | default}
    out = [f"{i} is marked extended but not listed in {DOC.name}" for i in sorted(extended - set(table))]
    for test, covering in table.items():
        if test.split("::")[0] in files and test not in extended:
            out.append(f"{test} is listed as deselected but is not an extended test of this collection")
        if not covering:
            out.append(f"{test}: no default-run test named as still checking its law")
        for c in covering:
            if c.split("::")[0] in files and c not in default:
                out.append(f"{test}: {c} is named as still checking its law but is not in the default run")
    return out


def unlisted(items) -> list[str]:
    """The ``extended`` tests among ``items`` that the table does not list (what ``conftest.py``
    refuses on every collection; the full comparison needs whole files collected, and is
    ``tests/test_suite_targets.py``'s)."""
    table = registry(DOC.read_text(encoding="utf-8"))
    return [f"{i.nodeid} is marked extended but not listed in {DOC}" for i in items
            if i.get_closest_marker("extended") is not None and i.nodeid not in table]
