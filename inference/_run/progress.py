"""The one progress display of every driver, updated on the host between chunks.

In a terminal: one line on stderr, rewritten in place (``\\rwarmup: 300/1000 | 4 chains``); in a
Jupyter kernel: a ``tqdm.auto`` bar.  On by default only in interactive sessions (a notebook
kernel, or stderr a terminal) and never when ``CI`` is set.
"""

from __future__ import annotations

from ppl.config import in_ci

import sys
import time

__all__ = ["progress_default", "in_notebook", "Progress"]


def in_notebook() -> bool:
    """Whether this runs in a Jupyter (IPython) kernel; IPython is not imported for this."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        ip = ipython.get_ipython()
        return ip is not None and "IPKernelApp" in getattr(ip, "config", {})
    except Exception:  # noqa: BLE001 - an odd shell: not a notebook
        return False


def progress_default() -> bool:
    """The ``progress=None`` default: on in a notebook or when stderr is a terminal, off when
    the ``CI`` environment variable is set (to anything but 0/false/no) or output is piped."""
    if in_ci():
        return False
    if in_notebook():
        return True
    try:
        return sys.stderr.isatty()
    except Exception:  # noqa: BLE001 - a replaced stderr without isatty
        return False


class Progress:
    """``label: done/total | field | field`` shown at most every ``every`` seconds (and always at
    the end); does nothing when ``on`` is False.

    Example:
        >>> from inference._run.progress import Progress
        >>> p = Progress(False, "sample", 100)
        >>> p(50, "0 divergences"); p.close()
    """

    def __init__(self, on: bool, label: str, total: int, every: float = 0.1):
        self.on, self.label, self.total, self.every = bool(on), label, int(total), every
        self.last = 0.0
        self._open = False  # a terminal line was written without its newline
        self._bar = None
        if self.on and in_notebook():
            try:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=self.total, desc=label, leave=True)
            except Exception:  # noqa: BLE001 - no tqdm: the terminal line
                self._bar = None

    def __call__(self, done: int, *fields: str) -> None:
        if not self.on:
            return
        now = time.perf_counter()
        final = done >= self.total
        if not final and now - self.last < self.every:
            return
        self.last = now
        if self._bar is not None:
            self._bar.n = done
            if fields:
                self._bar.set_postfix_str(" | ".join(fields), refresh=False)
            self._bar.refresh()
            if final:
                self.close()
            return
        extra = "".join(f" | {f}" for f in fields)
        sys.stderr.write(f"\r{self.label}: {done}/{self.total}{extra}" + ("\n" if final else ""))
        sys.stderr.flush()
        self._open = not final

    def close(self) -> None:
        """End the display (a newline after an unfinished line, e.g. on Ctrl-C)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._open:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._open = False
