"""The registry of tests that ``make test`` deselects (``tests/_targets.py``): the table in
docs/design/testing.md agrees with the ``extended`` marks, and names default-run tests that
exist; planted wrong tables and marks are caught."""

from __future__ import annotations

import os
import subprocess
import sys

from _targets import DOC, ROOT, problems, registry

PLUGIN = '''
def pytest_collection_finish(session):
    with open({out!r}, "w") as f:
        for item in session.items:
            f.write(f"{{int(item.get_closest_marker('extended') is not None)}} {{item.nodeid}}\\n")
'''


def _collect(tmp_path, files):
    """(extended ids, other ids) of a collection of ``files`` from the checkout (a subprocess)."""
    (tmp_path / "collect_plugin.py").write_text(PLUGIN.format(out=str(tmp_path / "collected.txt")))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:randomly", "-p", "collect_plugin", *files],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [line.split(" ", 1) for line in (tmp_path / "collected.txt").read_text().splitlines()]
    return {i for e, i in rows if e == "1"}, {i for e, i in rows if e == "0"}


def test_the_table_lists_exactly_the_extended_tests_and_default_tests_that_cover_them(tmp_path):
    table = registry(DOC.read_text(encoding="utf-8"))
    assert table, f"no table under the registry's heading in {DOC}"
    files = sorted({i.split("::")[0] for test, cov in table.items() for i in [test, *cov]})
    extended, default = _collect(tmp_path, files)
    assert extended, "none of the listed files holds an extended test"
    assert problems(table, extended, default) == []


def test_planted_wrong_tables_and_marks_are_caught():
    table = {"tests/a.py::t[x]": ["tests/b.py::u[x]"], "tests/a.py::t[y]": ["tests/b.py::u[y]"]}
    ext, dflt = {"tests/a.py::t[x]", "tests/a.py::t[y]"}, {"tests/b.py::u[x]", "tests/b.py::u[y]", "tests/a.py::t[z]"}
    assert problems(table, ext, dflt) == []
    assert problems({"tests/a.py::t[x]": table["tests/a.py::t[x]"]}, ext, dflt)  # a row missing
    assert problems(table, ext | {"tests/b.py::u[x]"}, dflt - {"tests/b.py::u[x]"})  # a covering test deselected too
    assert problems(table, ext - {"tests/a.py::t[y]"}, dflt | {"tests/a.py::t[y]"})  # listed but not extended
    assert problems(table, ext, dflt - {"tests/b.py::u[y]"})  # a covering test that does not exist
    assert problems({**table, "tests/a.py::t[x]": []}, ext, dflt)  # no covering test named
    text = f"intro\n\n{DOC.read_text(encoding='utf-8').split('### Deselected')[0]}"
    assert registry(text) == {}
