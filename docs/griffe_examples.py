"""Griffe extension for the API reference: read ``Example:`` as Google's ``Examples:``.

Google-style ``Examples:`` sections are parsed as doctests (rendered as Python code); the
singular ``Example:`` is not a section name, so its ``>>>`` lines would render as Markdown
block quotes and their output as broken cross-references. Our docstrings use both spellings.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        doc = obj.docstring
        if doc is not None and "Example:" in doc.value:
            doc.value = _EXAMPLE.sub(r"\1Examples:", doc.value)
