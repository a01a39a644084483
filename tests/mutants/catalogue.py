"""The catalogue of planted bugs for ``make mutants`` (see ``run.py``).

Each :class:`Mutant` replaces one exact piece of text (occurring once) in one file and names the
tests that must then fail.  Bugs are *subtle* on purpose — a partial Hastings term, a biased
offset, a missing Jacobian factor, a diagnostic off by a factor — not "return garbage".  Keep one
list per family (the ``*_MUTANTS`` lists below, in their own modules) so families can add theirs
without touching each other's.

A mutant that cannot change any result (an equivalent mutant) is kept with ``equivalent="why"``
and left out of the score.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mutant:
    id: str  #: "<family>/<short-name>", unique
    file: str  #: path from the repository root
    find: str  #: exact text, occurring exactly once in the file
    replace: str  #: what it becomes
    tests: tuple[str, ...]  #: pytest node ids or files that must fail
    description: str  #: what the bug is, in words
    area: str = "kernel"  #: kernel | estimator | resampler | diagnostic | law | other
    equivalent: str = ""  #: non-empty: why this mutant cannot change a result


def _load() -> list[Mutant]:
    import importlib
    import pkgutil
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))
    out: list[Mutant] = []
    for info in sorted(pkgutil.iter_modules([str(here)]), key=lambda i: i.name):
        if info.name.startswith("mutants_"):
            out.extend(importlib.import_module(info.name).MUTANTS)
    return out


MUTANTS: list[Mutant] = _load()
