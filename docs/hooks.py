"""MkDocs hook: the docs pages are executed when the site is built, and show what they print and draw.

The executing and rendering is done by the ``markdown-exec`` plugin (see ``mkdocs.yml``); this
hook only gives every plain ```python block of a page markdown-exec's options, so that a page
author writes ordinary ```python blocks and nothing else (the convention is in
``docs/design/docs.md``):

* every ```python block runs at build time, in one namespace per page (markdown-exec's
  ``session``, named after the page), in order, as cells of one notebook;
* the source is shown, then what the block printed (as text, with what library code printed to
  stdout), the warnings it raised (not deprecation notices: those go to the log), and every
  matplotlib figure it left open (a pyplot figure, or a ``Figure`` bound to a name in the
  page's namespace, e.g. ``fig = d.draw()``), inline as a PNG ``<img>``; shown pyplot figures are
  closed;
* an error in a block is logged as a warning by markdown-exec, so ``mkdocs build --strict``
  fails and names the block.

A block that already says ``exec=...`` is left to markdown-exec as written (its own options,
without the output capture above). Fence snippets that must not run as ```text.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
import re
import sys
import types
import warnings
from typing import Any

#: The name under which the display helpers below are importable by the executed blocks.
MODULE = "_ppl_docs_exec"

# An opening fence of three or more backticks tagged ``python``, with its options.
_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,})[ \t]*python\b(?P<opts>[^\n]*)$", re.MULTILINE)
_HIDE = "  # markdown-exec: hide"
# Figures put in the gallery by blocks that call ``print.gallery(name)``: name -> <img> HTML.
_GALLERY: dict[str, str] = {}
_GALLERY_SLOT = re.compile(r"<!-- gallery:(?P<name>[A-Za-z0-9_-]+) -->")
_log = logging.getLogger("mkdocs.hooks.ppl_docs")
# Warnings not shown on the page (deprecation notices of the libraries we call, e.g. ArviZ's use
# of matplotlib); they still go to the build log.
_NOT_SHOWN = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


class Capture:
    """Stands in for ``print`` in an executed block; ``emit`` writes the block's HTML output."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.text = io.StringIO()
        self.warned: list[str] = []
        self.gallery_name: str | None = None
        self._showwarning = warnings.showwarning
        self._stdout = sys.stdout
        warnings.showwarning = self._record
        sys.stdout = self.text  # what library code prints (e.g. ``run.print_summary()``) shows too

    def __call__(self, *args: Any, sep: str = " ", end: str = "\n", file: Any = None, flush: bool = False) -> None:
        if file is not None and file not in (self.text, sys.stderr):
            file.write(sep.join(str(a) for a in args) + end)
            return
        self.text.write(sep.join(str(a) for a in args) + end)

    def gallery(self, name: str) -> None:
        """Also show this block's figures in ``docs/gallery.md`` where it says ``<!-- gallery:name -->``."""
        self.gallery_name = name

    def _record(self, message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        if issubclass(category, _NOT_SHOWN):  # other libraries' notices to their developers: to the log
            self._showwarning(message, category, filename, lineno, file, line)
        else:
            self.warned.append(f"{category.__name__}: {message}")

    def emit(self, namespace: dict) -> None:
        warnings.showwarning = self._showwarning
        sys.stdout = self._stdout
        parts = []
        text = self.text.getvalue()
        if text.strip():
            parts.append(_code_html(text.rstrip("\n")))
        if self.warned:
            parts.append(
                '<div class="admonition warning"><p class="admonition-title">Warning</p>'
                + "".join(f"<p>{html.escape(w)}</p>" for w in self.warned)
                + "</div>"
            )
        figures = [_figure_html(fig) for fig in _new_figures(namespace)]
        parts.extend(figures)
        if self.gallery_name is not None:
            if not figures:
                _log.warning(f"docs gallery: the block that calls print.gallery({self.gallery_name!r}) drew no figure")
            _GALLERY[self.gallery_name] = "\n".join(figures)
        if parts:
            self.sink("\n".join(parts))


def _code_html(text: str) -> str:
    return f'<div class="language-text highlight"><pre><span></span><code>{html.escape(text)}</code></pre></div>'


def _new_figures(namespace: dict) -> list:
    """Figures not shown yet: the open pyplot ones (then closed) and those bound in the namespace."""
    if "matplotlib.figure" not in sys.modules:  # nothing drew: do not import matplotlib
        return []
    from matplotlib.figure import Figure

    figures = []
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        for num in plt.get_fignums():
            fig = plt.figure(num)
            figures.append(fig)
            plt.close(fig)
    for value in list(namespace.values()):
        if isinstance(value, Figure) and all(value is not f for f in figures):
            figures.append(value)
    fresh = [f for f in figures if not getattr(f, "_ppl_docs_shown", False)]
    for fig in fresh:
        fig._ppl_docs_shown = True
    return fresh


def _figure_html(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    titles = [fig._suptitle.get_text()] if getattr(fig, "_suptitle", None) is not None else []
    titles += [ax.get_title() for ax in fig.axes if ax.get_title()]
    alt = html.escape("; ".join(titles[:3]) or "figure", quote=True)
    return f'<p><img class="ppl-figure" alt="{alt}" src="data:image/png;base64,{data}" style="max-width:100%"></p>'


def page_session(src_uri: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", src_uri.removesuffix(".md")).strip("-")


def with_exec_options(markdown: str, session: str) -> str:
    """Give each plain ```python fence of ``markdown`` the options that execute and display it."""
    out = []
    pos = 0
    for m in _OPEN.finditer(markdown):
        if "exec=" in m.group("opts"):
            continue
        indent, fence = m.group("indent"), m.group("fence")
        close = re.compile(rf"^{re.escape(indent)}{fence}[ \t]*$", re.MULTILINE).search(markdown, m.end())
        if close is None:
            continue
        opts = f' exec="on" session="{session}" source="above" html="1"{m.group("opts")}'
        out.append(markdown[pos : m.start()])
        out.append(f"{indent}{fence}python{opts}\n")
        out.append(f"{indent}print = __import__({MODULE!r}).Capture(print){_HIDE}")
        out.append(markdown[m.end() : close.start()])
        out.append(f"{indent}print.emit(globals()){_HIDE}\n")
        pos = close.start()
    out.append(markdown[pos:])
    return "".join(out)


def on_config(config: Any, **kwargs: Any) -> Any:
    os.environ.setdefault("MPLBACKEND", "Agg")  # figures are rendered to PNG, never to a window
    module = types.ModuleType(MODULE)
    module.Capture = Capture
    sys.modules[MODULE] = module
    return config


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    return with_exec_options(markdown, page_session(page.file.src_uri))


_CODE = re.compile(r"<code>.*?</code>", re.DOTALL)
_LINE_ANCHOR = re.compile(r"__codelineno-\d+-")


def unique_line_anchors(output: str) -> str:
    """Number the code blocks' line anchors (``#__codelineno-<block>-<line>``) through the page:
    markdown-exec renders each block's source on its own, so every block would be block 0."""
    count = iter(range(1_000_000))

    def renumber(m: re.Match) -> str:
        code = m.group(0)
        if "__codelineno-" not in code:
            return code
        return _LINE_ANCHOR.sub(f"__codelineno-{next(count)}-", code)

    return _CODE.sub(renumber, output)


def on_post_page(output: str, page: Any, **kwargs: Any) -> str:
    """Fill the gallery's ``<!-- gallery:name -->`` slots (pages are all executed by now), and
    make the code lines' anchors unique on the page."""
    output = unique_line_anchors(output)

    def fill(m: re.Match) -> str:
        name = m.group("name")
        if name not in _GALLERY:
            _log.warning(f"docs gallery: {page.file.src_uri} shows figure {name!r}, which no block put in the gallery "
                         f"(a block must call print.gallery({name!r}))")
            return ""
        return _GALLERY[name]

    return _GALLERY_SLOT.sub(fill, output)
