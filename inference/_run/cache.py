"""The compiled-program cache of every driver.

A program is cached under its *owner* (the model, the objective: held weakly, so the programs go
with it) and a key of everything else that is read while tracing it: the algorithm (kernel,
optimizer), static arguments, sizes, and `ppl.config.trace_key` (the environment and JAX
configuration values the library reads at trace time).  Shapes and dtypes of array arguments
are keyed by ``jax.jit`` itself inside a cached program.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

from ppl.config import ensure_compilation_cache, trace_key

__all__ = ["trace_key", "ProgramCache"]


class ProgramCache:
    """owner -> {key + trace_key(): program}; ``get`` builds a program on a miss.

    ``hits`` and ``misses`` count lookups.  A key that is not hashable raises ``TypeError`` (the
    caller decides: an error message, or no caching).

    Example:
        >>> from inference._run.cache import ProgramCache
        >>> class Owner: pass
        >>> cache, owner = ProgramCache(), Owner()
        >>> a = cache.get(owner, ("k",), object)
        >>> a is cache.get(owner, ("k",), object), (cache.hits, cache.misses)
        (True, (1, 1))
    """

    def __init__(self) -> None:
        self._weak: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
        self._strong: dict = {}  # owners that cannot be weakly referenced
        self.hits = 0
        self.misses = 0

    def _table(self, owner: Any) -> dict:
        try:
            return self._weak.setdefault(owner, {})
        except TypeError:  # not weakly referenceable
            return self._strong.setdefault(owner, {})

    def get(self, owner: Any, key: tuple, build: Callable[[], Any]) -> Any:
        """The program cached for ``(owner, key, trace_key())``, built by ``build()`` if none."""
        ensure_compilation_cache()  # ppl's persistent cache, unless the user chose otherwise
        key = tuple(key) + (trace_key(),)
        table = self._table(owner)
        prog = table.get(key)  # TypeError when the key is not hashable
        if prog is None:
            self.misses += 1
            prog = table[key] = build()
        else:
            self.hits += 1
        return prog

    def clear(self) -> None:
        """Forget every cached program."""
        self._weak.clear()
        self._strong.clear()


#: the cache of every driver's programs
PROGRAMS = ProgramCache()
