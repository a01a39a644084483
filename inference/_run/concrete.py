"""Which model arguments a compiled program traces and which it keeps concrete: the one rule of
every family (``mcmc.sample``, ``vi.fit``; the SMC drivers close over their arguments).

- Python numbers, strings, None, ... are concrete (a plate size ``n`` stays an int);
- JAX arrays are traced: new values of the same shapes compile nothing;
- NumPy arrays are traced too, unless the model's body needs them concrete
  (``len(np.unique(dept))``, ``int(np.max(x))``, a plate size or a Python ``if`` computed from
  them): then the first tracing fails, and the model's NumPy arguments are kept concrete from
  then on (remembered per model, weakly), as NumPyro does by closing over the data.  A concrete
  NumPy argument (:class:`Concrete`) is keyed by its contents: new data of the same shape
  compiles a new program (pass ``jnp.asarray(data)`` for data the body only computes with).

Example:
    >>> import numpy as np
    >>> frozen = freeze(((np.arange(3),), {"n": 2}))
    >>> type(frozen[0][0]).__name__, frozen[1]["n"]
    ('Concrete', 2)
    >>> thaw(frozen)[0][0].tolist()
    [0, 1, 2]
"""

from __future__ import annotations

import hashlib
import weakref
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

import ppl

__all__ = ["Concrete", "split", "join", "freeze", "thaw", "has_numpy", "needs_concrete_values", "remembered", "remember",
           "retry_concretely", "with_concrete_retry"]


class Concrete:
    """A NumPy argument kept concrete (a static of a program), keyed by its contents."""

    __slots__ = ("value", "_key")

    def __init__(self, value: Any):
        value = np.asarray(value)
        self.value = value
        digest = hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest()
        self._key = (value.shape, value.dtype.str, digest)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Concrete) and self._key == other._key

    def __repr__(self) -> str:
        return f"Concrete(shape={self._key[0]}, dtype={self._key[1]})"


def _is_numpy(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic))


def is_dynamic(x: Any, concrete_numpy: bool = False) -> bool:
    """Whether the argument leaf ``x`` is traced (an input of the program) under the rule."""
    if concrete_numpy:
        return isinstance(x, jax.Array)
    return isinstance(x, (jax.Array, np.ndarray, np.generic))


def split(tree: Any, concrete_numpy: bool = False) -> tuple[Any, tuple, list]:
    """``(treedef, statics, dyn)`` of the arguments ``tree``: ``statics`` the ``(index, value)``
    of the concrete leaves (NumPy ones as :class:`Concrete`: hashable, part of a program's key),
    ``dyn`` the traced leaves as JAX arrays (the program's inputs)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    statics = tuple((i, Concrete(v) if _is_numpy(v) else v) for i, v in enumerate(leaves)
                    if not is_dynamic(v, concrete_numpy))
    dyn = [v if isinstance(v, jax.Array) else jnp.asarray(v) for v in leaves if is_dynamic(v, concrete_numpy)]
    return treedef, statics, dyn


def join(treedef: Any, statics: Any, dyn: Any) -> Any:
    """The arguments again from :func:`split`'s parts (``dyn`` possibly traced); concrete NumPy
    leaves are the user's values."""
    statics = {i: v.value if isinstance(v, Concrete) else v for i, v in dict(statics).items()}
    it = iter(dyn)
    return jax.tree_util.tree_unflatten(treedef, [statics[i] if i in statics else next(it)
                                                  for i in range(treedef.num_leaves)])


def has_numpy(tree: Any) -> bool:
    """Whether ``tree`` (a model's ``(args, kwargs)``) holds a NumPy array or scalar."""
    return any(_is_numpy(v) for v in jax.tree.leaves(tree))


def freeze(tree: Any) -> Any:
    """``tree`` with its NumPy leaves wrapped as :class:`Concrete` (static under ``jit`` /
    ``eqx.filter_jit``, keyed by contents)."""
    return jax.tree.map(lambda v: Concrete(v) if _is_numpy(v) else v, tree)


def thaw(tree: Any) -> Any:
    """``tree`` with its :class:`Concrete` leaves unwrapped (the user's NumPy values)."""
    return jax.tree.map(lambda v: v.value if isinstance(v, Concrete) else v, tree)


#: models whose body needs its NumPy arguments concrete (found at their first run; weakly held)
_NEEDS_CONCRETE: "weakref.WeakKeyDictionary[Any, bool]" = weakref.WeakKeyDictionary()

_CONCRETENESS_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerArrayConversionError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.TracerBoolConversionError,
)


def needs_concrete_values(e: BaseException) -> bool:
    """Whether tracing failed because the model needed a concrete value (``np.unique`` of an
    argument, ``int(...)`` of it, a plate size from it, a Python branch on it)."""
    if isinstance(e, _CONCRETENESS_ERRORS):
        return True
    return isinstance(e, ppl.PPLError) and ("Tracer" in str(e) or "traced value" in str(e))


def _keys(models: Iterable[Any]) -> list:
    out = []
    for m in models:
        if m is None:
            continue
        try:
            out.append(ppl.as_model(m))
        except Exception:  # noqa: BLE001 - not a model (e.g. a custom objective's part): skip it
            continue
    return out


def remembered(*models: Any) -> bool:
    """Whether one of ``models`` was found to need its NumPy arguments concrete."""
    for m in _keys(models):
        try:
            if _NEEDS_CONCRETE.get(m, False):
                return True
        except TypeError:
            pass
    return False


def remember(*models: Any) -> None:
    """Record that ``models`` need their NumPy arguments concrete (later runs start so)."""
    for m in _keys(models):
        try:
            _NEEDS_CONCRETE[m] = True
        except TypeError:
            pass


def retry_concretely(e: BaseException, models: Iterable[Any], tree: Any, concrete: bool) -> bool:
    """Whether a failed tracing of ``models`` on the arguments ``tree`` (NumPy traced unless
    ``concrete``) is to be retried with the NumPy arguments concrete; when so, it is remembered."""
    if concrete or not has_numpy(tree) or not needs_concrete_values(e):
        return False
    remember(*models)
    return True


def with_concrete_retry(models: Iterable[Any], tree: Any, attempt: Callable[[bool], Any]) -> Any:
    """``attempt(concrete)`` with NumPy arguments traced (``concrete=False``) unless the models
    are remembered to need them concrete; again with ``concrete=True`` when the first tracing
    failed because the body needed concrete values (see the module docstring)."""
    models = list(models)
    concrete = remembered(*models)
    try:
        return attempt(concrete)
    except Exception as e:  # noqa: BLE001 - re-raised unless it is the concreteness case
        if not retry_concretely(e, models, tree, concrete):
            raise
    return attempt(True)
