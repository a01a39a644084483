"""The docs pages run: the site build executes them, and shows what they print and draw.

How pages are executed (the convention for page authors is in ``docs/design/docs.md``):

* Every ```python block of every page under ``docs/`` runs when the site is built: the
  ``markdown-exec`` plugin executes it, and the hook ``docs/hooks.py`` gives plain blocks one
  namespace per page (as cells of one notebook) and shows below each block what it printed, its
  warnings and the matplotlib figures it drew (inline PNG). ``test_mkdocs_build_strict`` is the
  test that executes them (once: the pages are not run a second time here), and then parses the
  built HTML for the figures. An error in a block fails the strict build;
  ``test_strict_build_fails_on_a_failing_block`` checks that on a planted failing block.
* ``test_page_code_runs`` executes the ```python blocks of the pages that the build does not
  (``README.md``), blocks of one page in one fresh namespace.

Fence snippets that must not run as ```text (or ```console, ```bash).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import traceback
from html.parser import HTMLParser
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


def _executed_by_build(page: Path) -> bool:
    """Pages of the site (everything under docs/) run when it is built."""
    return (ROOT / "docs") in page.parents


_PAGES_WITH_CODE = [
    p for p in _pages() if python_blocks(p.read_text(encoding="utf-8")) and not _executed_by_build(p)
]
# Pages that must show at least one figure in the built site.
_PAGES_WITH_FIGURES = [ROOT / "docs" / "getting-started.md", *sorted((ROOT / "docs" / "tutorials").glob("*.md"))]


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


def _hooks():
    spec = importlib.util.spec_from_file_location("_docs_hooks_under_test", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _mkdocs_build(cwd: Path, site: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("MPLBACKEND", None)  # the hook chooses a backend without a window itself
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


class _Images(HTMLParser):
    """Counts the inline figures (``<img src="data:image/png...">``) of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.figures = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        src = dict(attrs).get("src") or ""
        if tag == "img" and src.startswith("data:image/png;base64,") and len(src) > 1000:
            self.figures += 1


def _figures(html_file: Path) -> int:
    parser = _Images()
    parser.feed(html_file.read_text(encoding="utf-8"))
    return parser.figures


def _built(site: Path, page: Path) -> Path:
    rel = page.relative_to(ROOT / "docs").with_suffix("")
    return site / ("index.html" if rel.name == "index" else rel / "index.html")


def test_hook_gives_plain_python_blocks_exec_options() -> None:
    hooks = _hooks()
    text = "```python\nx = 1\n```\n\n```python exec=\"on\"\ny = 2\n```\n\n```text\nz\n```\n"
    out = hooks.with_exec_options(text, "tutorials-x")
    plain, own = out.split("\n\n")[:2]
    assert plain.startswith('```python exec="on" session="tutorials-x" source="above" html="1"\n')
    assert "Capture(print)  # markdown-exec: hide\nx = 1\nprint.emit(globals())  # markdown-exec: hide\n```" in plain
    assert own == '```python exec="on"\ny = 2\n```'  # a block with its own exec= is left alone
    assert out.endswith("```text\nz\n```\n")
    assert hooks.page_session("tutorials/mcmc.md") == "tutorials-mcmc"
    two = '<code><a id="__codelineno-0-1" href="#__codelineno-0-1"></a>x</code><code>y</code>' * 2
    first, second = hooks.unique_line_anchors(two).split("</code><code>y</code>")[:2]
    assert first.count("__codelineno-0-1") == 2 and second.count("__codelineno-1-1") == 2


_MINI_SITE = """site_name: planted
strict: true
markdown_extensions: [admonition, pymdownx.superfences]
hooks: [{hooks}]
plugins: [markdown-exec]
"""


@pytest.mark.parametrize("planted", [False, True], ids=["twin-passes", "failing-block-fails"])
def test_strict_build_fails_on_a_failing_block(tmp_path: Path, planted: bool) -> None:
    """The mechanism of the real build on a one-page site: an error in a block fails it."""
    pytest.importorskip("markdown_exec")
    (tmp_path / "docs").mkdir()
    (tmp_path / "mkdocs.yml").write_text(_MINI_SITE.format(hooks=ROOT / "docs" / "hooks.py"))
    failing = "```python\nboom = 1 / (n - 3)\n```\n" if planted else ""
    (tmp_path / "docs" / "index.md").write_text(
        "# Page\n\n```python\nimport matplotlib.pyplot as plt\nn = 3\nprint('n is', n)\n"
        "plt.plot([1, 2, 4])\n```\n\n"
        "```python\nfrom matplotlib.figure import Figure\n\n"
        "diagram = Figure()  # not a pyplot figure, as `d.draw()` returns\ndiagram.subplots().plot([3, 1])\n```\n\n"
        "```python\nprint('twice n is', 2 * n)  # a name of the page's first block\n```\n\n" + failing
    )
    proc = _mkdocs_build(tmp_path, tmp_path / "site")
    if planted:
        assert proc.returncode != 0, "the strict build passed a page whose block raises"
        assert "ZeroDivisionError" in proc.stderr and "session index" in proc.stderr, proc.stderr[-3000:]
    else:
        assert proc.returncode == 0, proc.stderr[-3000:]
        page = tmp_path / "site" / "index.html"
        assert "n is 3" in page.read_text(encoding="utf-8")
        assert "twice n is 6" in page.read_text(encoding="utf-8")
        assert _figures(page) == 2


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """The site builds with --strict (broken links, nav entries, API docstrings, and an error in
    any executed block fail it); every tutorial shows a figure and the gallery is filled."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("markdown_exec")
    site = tmp_path / "site"
    proc = _mkdocs_build(ROOT, site)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stderr[-6000:]}"
    without = [str(p.relative_to(ROOT)) for p in _PAGES_WITH_FIGURES if _figures(_built(site, p)) == 0]
    assert not without, f"these pages show no figure in the built site: {without}"
    slots = _hooks()._GALLERY_SLOT.findall((ROOT / "docs" / "gallery.md").read_text(encoding="utf-8"))
    assert len(slots) >= 6
    assert _figures(site / "gallery" / "index.html") >= len(slots)
