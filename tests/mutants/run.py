"""Mutation testing: plant each bug of the catalogue in a scratch copy and run the tests that
should catch it.  ``make mutants`` (on demand, never in CI).

A mutant is *killed* when its tests fail (or time out); it *survives* when they pass.  The
score is killed / (mutants − declared equivalents).  Every survivor must be killed by a new test
or explained as equivalent in its catalogue entry (``equivalent="why"``).

Usage:
    python tests/mutants/run.py                   # every mutant, 2 at a time
    python tests/mutants/run.py --only mcmc/      # ids containing 'mcmc/'
    python tests/mutants/run.py --list            # the catalogue
    python tests/mutants/run.py --jobs 1 --report docs/design/mutation-results.md

Each mutant's ``find`` text must occur exactly once in its file (checked before anything runs),
so a catalogue entry that no longer applies fails loudly instead of silently testing nothing.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from catalogue import MUTANTS, Mutant  # noqa: E402

IGNORE = shutil.ignore_patterns(".venv", ".git", "site", "__pycache__", ".pytest_cache", ".hypothesis", "results", "*.egg-info")


def check(mutants: list[Mutant]) -> list[str]:
    """Every mutant's text occurs exactly once in its file, and its tests exist."""
    problems, ids = [], set()
    for m in mutants:
        if m.id in ids:
            problems.append(f"{m.id}: duplicate id")
        ids.add(m.id)
        src = (ROOT / m.file).read_text()
        n = src.count(m.find)
        if n != 1:
            problems.append(f"{m.id}: the text to replace occurs {n} times in {m.file} (must be once)")
        if m.find == m.replace:
            problems.append(f"{m.id}: find and replace are equal")
        for t in m.tests:
            if not (ROOT / t.split("::")[0]).exists():
                problems.append(f"{m.id}: test path {t} does not exist")
    return problems


def run_one(m: Mutant, python: str, timeout: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        work = Path(tmp) / "tree"
        shutil.copytree(ROOT, work, ignore=IGNORE)
        if (ROOT.parent / "shared").exists():  # the data beside the checkout, as tests expect it
            os.symlink(ROOT.parent / "shared", Path(tmp) / "shared")
        path = work / m.file
        path.write_text(path.read_text().replace(m.find, m.replace, 1))
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", HYPOTHESIS_PROFILE="ci")
        cmd = [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "-n", "0", *m.tests]
        t0 = time.time()
        try:
            proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
            rc, out = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            rc, out = "timeout", (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else str(e.stdout or "")
        dt = time.time() - t0
    if rc == 0:
        status = "equivalent" if m.equivalent else "survived"
    elif rc == 5:
        status = "error"  # no test ran: the catalogue entry is wrong
    else:
        status = "killed"
    failed = [ln for ln in out.splitlines() if ln.startswith(("FAILED", "ERROR"))][:3]
    return {"id": m.id, "area": m.area, "status": status, "rc": rc, "seconds": round(dt, 1), "failed": failed, "tail": out[-1500:] if status in ("survived", "error") else ""}


def report(results: list[dict], mutants: list[Mutant]) -> str:
    by_id = {m.id: m for m in mutants}
    killed = sum(r["status"] == "killed" for r in results)
    equiv = sum(r["status"] == "equivalent" for r in results)
    scored = len(results) - equiv
    score = killed / scored if scored else 1.0
    lines = [
        f"Mutation score: **{killed}/{scored} = {score:.0%}** killed ({equiv} declared equivalent, {len(results)} mutants).",
        "",
        "| mutant | area | status | killed by | seconds |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(results, key=lambda r: r["id"]):
        by = (r["failed"][0].split(" ")[1] if r["failed"] else "") if r["status"] == "killed" else ""
        lines.append(f"| `{r['id']}` | {r['area']} | {r['status']} | {by.replace('|', '/')} | {r['seconds']} |")
    lines.append("")
    lines.append("What each mutant plants:")
    lines.append("")
    for r in sorted(results, key=lambda r: r["id"]):
        m = by_id[r["id"]]
        extra = f" Equivalent: {m.equivalent}" if m.equivalent else ""
        lines.append(f"- `{m.id}` ({m.file}): {m.description}{extra}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", default=[], help="run mutants whose id contains this (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the catalogue and exit")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant (a timeout counts as killed)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--report", help="write the markdown report to this file")
    ap.add_argument("--json", help="write the raw results to this file")
    a = ap.parse_args(argv)
    a.python = str(Path(a.python).absolute())
    mutants = [m for m in MUTANTS if not a.only or any(s in m.id for s in a.only)]
    problems = check(mutants)
    if problems:
        print("catalogue problems:\n  " + "\n  ".join(problems))
        return 2
    if a.list:
        for m in mutants:
            print(f"{m.id:45s} {m.file}: {m.description}")
        return 0
    results = []
    with cf.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as ex:
        futs = {ex.submit(run_one, m, a.python, a.timeout): m for m in mutants}
        for f in cf.as_completed(futs):
            r = f.result()
            results.append(r)
            if a.json:  # written after every mutant, so an interrupted run keeps what it did
                Path(a.json).write_text(json.dumps(results, indent=1))
            print(f"{r['status']:10s} {r['id']:45s} {r['seconds']:7.1f}s {' '.join(r['failed'][:1])}", flush=True)
            if r["status"] in ("survived", "error"):
                print("    " + r["tail"][-600:].replace("\n", "\n    "), flush=True)
    text = report(results, mutants)
    print()
    print(text)
    if a.report:
        Path(a.report).write_text(text + "\n")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0 if all(r["status"] in ("killed", "equivalent") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
