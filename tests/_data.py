"""Where the tests find the third-party data sets: ``$PPL_SHARED_DATA`` if set, else
``../shared/data`` beside the checkout (the layout of a developer's machine and of CI).

No test names an absolute path; a missing data set is an error that says where it was looked for.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """The folder of shared data sets."""
    env = os.environ.get("PPL_SHARED_DATA")
    return Path(env) if env else ROOT.parent / "shared" / "data"


def data_path(*parts: str) -> Path:
    """The path of a shared data file; FileNotFoundError names where it was looked for."""
    p = data_dir().joinpath(*parts)
    if not p.exists():
        raise FileNotFoundError(
            f"shared data {'/'.join(parts)!r} not found at {p}; the tests expect ../shared/data beside "
            "the checkout, or set PPL_SHARED_DATA to the folder that holds it"
        )
    return p


def load_json(*parts: str) -> Any:
    """A shared JSON data set, parsed."""
    return json.loads(data_path(*parts).read_text())
