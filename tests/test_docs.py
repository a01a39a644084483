"""Every ```python block in the docs and README runs, in order, page by page.

Blocks of one page share a fresh namespace, as cells of one notebook would. Fence other
snippets as ```text (or ```console, ```bash) to keep them out of this test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# An opening fence of three or more backticks tagged `python` (optionally `python title=..`),
# up to the matching closing fence at the same or a smaller indent.
_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,})[ \t]*python\b[^\n]*\n(?P<body>.*?)^(?P=indent)(?P=fence)[ \t]*$",
    re.DOTALL | re.MULTILINE,
)


def _pages() -> list[Path]:
    pages = sorted((ROOT / "docs").rglob("*.md"))
    readme = ROOT / "README.md"
    if readme.exists():
        pages.append(readme)
    return pages


def python_blocks(text: str) -> list[tuple[int, str]]:
    """Return ``(line_number, source)`` of each ```python block, indentation removed."""
    blocks = []
    for m in _FENCE.finditer(text):
        indent = len(m.group("indent"))
        lines = m.group("body").splitlines()
        body = "\n".join(line[indent:] if line[:indent].strip() == "" else line for line in lines)
        line_no = text.count("\n", 0, m.start()) + 2  # first line of the block's body
        blocks.append((line_no, body + "\n"))
    return blocks


_PAGES_WITH_CODE = [p for p in _pages() if python_blocks(p.read_text(encoding="utf-8"))]


@pytest.mark.slow
@pytest.mark.parametrize(
    "page", _PAGES_WITH_CODE, ids=[str(p.relative_to(ROOT)) for p in _PAGES_WITH_CODE]
)
def test_page_code_runs(page: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    monkeypatch.chdir(ROOT)
    rel = page.relative_to(ROOT)
    namespace: dict = {"__name__": f"docs_{rel.stem.replace('-', '_')}"}
    for index, (line_no, source) in enumerate(python_blocks(page.read_text(encoding="utf-8"))):
        filename = f"{rel}:block{index}@line{line_no}"
        try:
            code = compile(source, filename, "exec")
            exec(code, namespace)
        except Exception as exc:  # noqa: BLE001 - report any failure with its location
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-3))
            pytest.fail(
                f"{rel}: python block #{index} (starting at line {line_no}) failed:\n"
                f"{source}\n---\n{tb}",
                pytrace=False,
            )
        finally:
            import matplotlib.pyplot as plt

            plt.close("all")


def test_doc_pages_found() -> None:
    assert (ROOT / "docs" / "index.md").exists()
    assert (ROOT / "docs" / "getting-started.md").exists()


def test_block_extractor() -> None:
    text = "intro\n```python\nx = 1\n```\n```text\nnot code\n```\n  ```python\n  y = x + 1\n  ```\n"
    blocks = python_blocks(text)
    assert [b for _, b in blocks] == ["x = 1\n", "y = x + 1\n"]
    assert blocks[0][0] == 3


@pytest.mark.slow
def test_quickstart_example_runs() -> None:
    env = dict(os.environ)
    env.setdefault("JAX_PLATFORMS", "cpu")
    env["MPLBACKEND"] = "Agg"
    # importable from the checkout even without an (up-to-date) editable install
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"examples/quickstart.py exited with {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    )


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """The site builds with --strict (broken links, nav entries, API docstrings fail it)."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-6000:]}"
