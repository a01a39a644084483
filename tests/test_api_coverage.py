"""Every public name is referenced by the suite.

The public names are the ``__all__`` of ``ppl``, ``ppl.randomness``, ``inference`` and its
families (``mcmc``, ``smc``, ``vi``, ``causal``, ``sharding``), ``semantics`` and every
``semantics`` submodule that has an ``__all__``.  A name counts as referenced when a test module
(``tests/test_*.py``, this file excepted) or a ```python block of a doc page that
``tests/test_docs.py`` runs (``docs/**/*.md``, ``README.md``) reaches that very object by name:
``from inference.smc import temper``, ``smc.temper``, ``inference.smc.blocks.temper``, ... — found
by parsing the sources (imports and attribute chains resolved against the real modules), not by
grepping, so a method of the same name on another object (``run.summary()``) does not count.

A reference alone proves little; the tests that were written for names first referenced here
check values against independent references (``tests/test_*_api.py``).  Names that cannot be
tested meaningfully go in ``ALLOWED``, each with its reason; keep it tiny.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

import pytest

from test_docs import python_blocks

pytestmark = pytest.mark.exact

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ppl", "inference", "semantics")
MODULES = ["ppl", "ppl.randomness", "inference", "inference.mcmc", "inference.smc", "inference.vi",
           "inference.causal", "inference.sharding", "semantics"]
MODULES += ["inference.sequential"]  # issue 20
MODULES += ["inference.amortised"]  # issue 20a

#: "module.name" -> why no test can reference it meaningfully (keep this tiny)
ALLOWED: dict[str, str] = {}

_MISSING = object()


def public_modules() -> list[str]:
    import semantics

    subs = [f"semantics.{m.name}" for m in pkgutil.iter_modules(semantics.__path__) if not m.name.startswith("_")]
    return MODULES + [m for m in sorted(subs) if hasattr(importlib.import_module(m), "__all__")]


def public_names() -> list[tuple[str, str]]:
    return [(m, n) for m in public_modules() for n in importlib.import_module(m).__all__]


def references(source: str) -> set[tuple[int, str]]:
    """(id(object), name) of every object of our packages that `source` reaches by name."""
    tree = ast.parse(source)
    alias: dict[str, object] = {}
    out: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PACKAGES:
                    importlib.import_module(a.name)
                    top = a.name if a.asname else a.name.split(".")[0]
                    alias[a.asname or top] = sys.modules[top]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in PACKAGES:
            mod = importlib.import_module(node.module)
            for a in node.names:
                obj = getattr(mod, a.name, _MISSING)
                if obj is _MISSING:
                    try:
                        obj = importlib.import_module(f"{node.module}.{a.name}")
                    except ImportError:
                        continue
                alias[a.asname or a.name] = obj
                out.add((id(obj), a.name))
        elif (  # E = importlib.import_module("semantics.enumerate"): a module a function shadows
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and node.value.func.attr == "import_module"
            and node.value.args
            and isinstance(node.value.args[0], ast.Constant)
            and str(node.value.args[0].value).split(".")[0] in PACKAGES
        ):
            alias[node.targets[0].id] = importlib.import_module(node.value.args[0].value)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, v = [], node
            while isinstance(v, ast.Attribute):
                chain.append(v.attr)
                v = v.value
            if isinstance(v, ast.Name) and v.id in alias:
                obj = alias[v.id]
                for attr in reversed(chain):
                    obj = getattr(obj, attr, _MISSING)
                    if obj is _MISSING:
                        break
                    out.add((id(obj), attr))
    return out


def suite_sources() -> dict[str, str]:
    src = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8")
           for p in sorted((ROOT / "tests").glob("test_*.py")) if p.name != Path(__file__).name}
    for page in sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]:
        if page.exists():
            for i, (_, block) in enumerate(python_blocks(page.read_text(encoding="utf-8"))):
                src[f"{page.relative_to(ROOT)}#block{i}"] = block
    return src


def unreferenced() -> list[str]:
    refs: set[tuple[int, str]] = set()
    for text in suite_sources().values():
        refs |= references(text)
    return [f"{m}.{n}" for m, n in public_names() if (id(getattr(importlib.import_module(m), n)), n) not in refs]


def test_every_public_name_is_referenced_by_a_test_or_doc_page():
    missing = [q for q in unreferenced() if q not in ALLOWED]
    assert not missing, (
        f"{len(missing)} public names are referenced by no test module and no doc page the suite runs "
        f"(write a value test in tests/test_<family>_api.py, or allow-list with a reason): {missing}"
    )


def test_allow_list_is_current():
    names = {f"{m}.{n}" for m, n in public_names()}
    assert set(ALLOWED) <= names, f"allow-listed names that are not public: {sorted(set(ALLOWED) - names)}"
    stale = set(ALLOWED) - set(unreferenced())
    assert not stale, f"allow-listed names that are now referenced (remove them from ALLOWED): {sorted(stale)}"
    assert all(reason.strip() for reason in ALLOWED.values())


def test_the_reference_finder_finds_and_ignores_what_it_should():
    from inference import mcmc, smc

    src = (
        "import inference.smc as S\nfrom inference.mcmc import r_hat as rh\nfrom inference import vi\n"
        "S.temper(p)\nrun.summary()\nvi.expectation\nx.offspring_counts\n"
    )
    found = references(src)
    assert (id(smc.temper), "temper") in found and (id(mcmc.r_hat), "r_hat") in found
    assert (id(mcmc.summary), "summary") not in found  # a method of another object
    assert (id(smc.offspring_counts), "offspring_counts") not in found
    assert len(public_names()) >= 233 and all(m in public_modules() for m in ("semantics.laws", "semantics.stats"))
