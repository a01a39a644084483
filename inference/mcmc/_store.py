"""Runs on disk: :meth:`Run.save` / :func:`load` (an ``.npz`` file of arrays plus a JSON
description; nothing pickled), and the checkpoint of a run streamed to a directory
(``stream_to``), from which :func:`load` recovers a run that crashed."""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

import ppl
from ppl.errors import ModelError

from .. import sharding
from .._calling import check_option_clash
from .._run.concrete import has_numpy, remember
from .._run.sink import Sink, write_npz
from ._base import Kernel
from ._program import _prepare, _Program

if TYPE_CHECKING:
    from .result import Run

_FORMAT = "ppl.mcmc.Run/1"

#: seconds between two checkpoints of a streamed run (the last chunk always writes one)
_CHECKPOINT_EVERY = 2.0


def _state_arrays(state) -> tuple[dict, list]:
    """The state's leaves as NumPy arrays ``state/<i>`` (keys as their data) and their description."""
    arrays, meta = {}, []
    for i, leaf in enumerate(jax.tree_util.tree_leaves(state)):
        impl = None
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            impl = str(jax.random.key_impl(leaf))
            leaf = jax.random.key_data(leaf)
        arrays[f"state/{i}"] = np.asarray(sharding.to_host(leaf))
        meta.append({"key_impl": impl})
    return arrays, meta


def _state_from_arrays(prog: _Program, dyn: list, arrays: dict, state_meta: list):
    template = prog.init.trace(jax.random.key(0), dyn, None).out_info[0]  # abstract: nothing runs
    t_leaves, treedef = jax.tree_util.tree_flatten(template)
    if len(t_leaves) != len(state_meta):
        raise ModelError(
            f"mcmc.load: the saved state has {len(state_meta)} arrays, the kernel's state "
            f"{len(t_leaves)}; was it saved with another version of the kernel?"
        )
    leaves = []
    for i, (t, m) in enumerate(zip(t_leaves, state_meta)):
        a = arrays[f"state/{i}"]
        leaf = jax.random.wrap_key_data(a, impl=m["key_impl"]) if m["key_impl"] else jax.device_put(a)
        if leaf.shape != t.shape or leaf.dtype != t.dtype:
            raise ModelError(
                f"mcmc.load: state array {i} is {leaf.dtype}{list(leaf.shape)} in the file but "
                f"{t.dtype}{list(t.shape)} for this kernel (is jax_enable_x64 set as when it was saved?)."
            )
        leaves.append(leaf)
    return sharding.shard_batch(jax.tree_util.tree_unflatten(treedef, leaves))


def _meta(prog: _Program, dyn: list, state_meta: list, warmup_done: int) -> dict:
    return {
        "format": _FORMAT,
        "kernel": repr(prog.kernel),
        "model": prog.model.name,
        "num_chains": prog.num_chains,
        "num_warmup": prog.num_warmup,
        "warmup_done": warmup_done,
        "chunk_size": prog.chunk_size,
        "thinning": prog.thinning,
        "state": state_meta,
        "args": [[list(np.shape(a)), str(a.dtype)] for a in dyn],
    }


def save(run: Any, path: Any) -> None:
    """Write ``run`` (a :class:`~inference.mcmc.Run`) to the ``.npz`` file ``path``."""
    arrays, state_meta = _state_arrays(run.state)
    meta = _meta(run._program, run._dyn, state_meta, run.warmup_done)
    tables = {"samples": run.samples, "info": run.info, "warmup_info": run.warmup_info, "active": run.active}
    for t, d in tables.items():
        if d is None:
            meta[t] = None
            continue
        meta[t] = list(d)
        for j, k in enumerate(d):
            arrays[f"{t}/{j}"] = np.asarray(d[k])
    write_npz(os.fspath(path), arrays, meta)


class _Checkpoint:
    """``<stream_to>/checkpoint.npz``: the chains' state after the last chunk whose draws are in
    the ``.npy`` files, and how many steps of each phase are done, so that
    ``mcmc.load(stream_to, ...)`` recovers the run after a crash."""

    def __init__(self, prog: _Program, dyn: list, directory: Path, warm_sink: Sink | None, warm_start: int, num_samples: int):
        self.prog, self.dyn, self.directory = prog, dyn, directory
        self.warm_sink, self.warm_start, self.num_samples = warm_sink, warm_start, num_samples
        self.last = time.perf_counter()

    def __call__(self, state, warmup_done: int, sample_sink: Sink | None, sample_done: int, force: bool) -> None:
        now = time.perf_counter()
        if not force and now - self.last < _CHECKPOINT_EVERY:
            return
        self.last = now
        arrays, state_meta = _state_arrays(state)
        meta = _meta(self.prog, self.dyn, state_meta, warmup_done)
        tables = {}
        if self.warm_sink is not None:
            tables["warmup_info"] = [list(self.warm_sink.tables.get("info", {})), warmup_done - self.warm_start]
        if sample_sink is not None:
            for t in ("samples", "info", "active"):
                tables[t] = [list(sample_sink.tables.get(t, {})), sample_done]
        meta["stream"] = tables
        meta["num_samples"] = self.num_samples
        write_npz(str(self.directory / "checkpoint.npz"), arrays, meta)


def _load_stream(directory: Path, prog: _Program, dyn: list, meta: dict, arrays: dict) -> Run:
    from .result import Run  # noqa: F811

    tables: dict = {}
    for t, (names, done) in meta["stream"].items():
        tables[t] = {name: np.load(directory / f"{t}.{j}.npy", mmap_mode="r")[:, :done] for j, name in enumerate(names)}
    state = _state_from_arrays(prog, dyn, arrays, meta["state"])
    complete = meta["warmup_done"] >= meta["num_warmup"] and "samples" in tables and meta["stream"]["samples"][1] >= meta.get("num_samples", 0)
    samples = tables.get("samples", {})
    return Run(prog, dyn, state, samples, tables.get("info", {}), tables.get("warmup_info"), tables.get("active"),
               meta["warmup_done"], not complete)


def _what(e: BaseException) -> str:
    if isinstance(e, KeyError):
        return f"the array or record {e.args[0]!r} is missing"
    return f"{type(e).__name__}: {e}"


def _read_npz(path: str) -> dict:
    """The arrays of the ``.npz`` file ``path`` (never unpickled), or a ModelError naming the
    file and what is wrong with it (truncated, not a zip archive, an entry that is not a plain
    array)."""
    try:
        z = np.load(path, allow_pickle=False)
        if not hasattr(z, "files"):
            raise ModelError(f"mcmc.load: {path!r} is a single .npy array, not an .npz archive written by Run.save.")
        with z:
            return {k.replace(".", "/"): z[k] for k in z.files}
    except ppl.PPLError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
        why = str(e)
        if "pickle" in why:  # NumPy's message suggests allow_pickle=True: never load pickles
            why = "it is not an .npz archive of plain arrays (NumPy would read it as pickled Python objects, which mcmc.load never does)"
        elif isinstance(e, (zipfile.BadZipFile, EOFError)):
            why = f"it is not a complete .npz archive (truncated or corrupted: {e})"
        raise ModelError(f"mcmc.load: {path!r} is damaged: {why}.") from None


def load(path: Any, kernel: Kernel, model: Any, *args: Any, progress: bool | None = None, **kwargs: Any) -> Run:
    """Read a run written by :meth:`Run.save`, or the ``stream_to`` directory of a run (also
    one that crashed: it holds the draws that reached the disk and a checkpoint of the state
    after them, written at most every 2 s and after the last chunk).  ``kernel``, ``model`` and
    the model's arguments are the ones the run was made with (arrays of the same shapes).  The
    returned run's :meth:`Run.resume` continues the chains exactly as the saved run's would
    have: the same key gives the same draws.  Nothing is unpickled.

    Args:
        path: an ``.npz`` file written by :meth:`Run.save`, or a ``stream_to`` directory.
        kernel: the kernel the run was made with.
        model: the model the run was made with.
        *args: the model's arguments.
        progress: the default ``progress`` of :meth:`Run.resume` on the loaded run.
        **kwargs: the model's keyword arguments.

    Returns:
        Run: its ``interrupted`` is True when a streamed run had not finished.

    Example:
        >>> import os, tempfile
        >>> @ppl.model
        ... def m():
        ...     ppl.sample("x", dist.Normal(0.0, 1.0))
        >>> run = mcmc.sample(jax.random.key(0), mcmc.RWM(), m, num_warmup=5, num_samples=6, progress=False)
        >>> path = os.path.join(tempfile.mkdtemp(), "run.npz")
        >>> run.save(path)
        >>> again = mcmc.load(path, mcmc.RWM(), m)
        >>> again.resume(jax.random.key(1), num_samples=4).samples["x"].shape
        (1, 4)
    """
    from .result import Run  # noqa: F811 - (at run time; the annotation's import is for type checkers)

    check_option_clash("mcmc.load", model, [] if progress is None else ["progress"])
    path = os.fspath(path)
    directory = None
    if not os.path.exists(path):
        raise ModelError(f"mcmc.load: {path!r} does not exist; expected a file written by Run.save or a run's stream_to directory.")
    if os.path.isdir(path):  # the stream_to directory of a run (e.g. one that crashed)
        directory = Path(path)
        path = os.path.join(path, "checkpoint.npz")
        if not os.path.exists(path):
            raise ModelError(f"mcmc.load: {os.fspath(directory)!r} holds no checkpoint.npz; was it a run's stream_to directory?")
    arrays = _read_npz(path)
    try:
        meta = json.loads(bytes(arrays.pop("meta")).decode())
    except (KeyError, ValueError):
        raise ModelError(f"mcmc.load: {path!r} is not a file written by Run.save (it has no readable 'meta' record).") from None
    if meta.get("format") != _FORMAT:
        raise ModelError(f"mcmc.load: {path!r} has format {meta.get('format')!r}; expected {_FORMAT!r}.")
    if repr(kernel) != meta["kernel"]:
        raise ModelError(f"mcmc.load: the run was saved with kernel {meta['kernel']}, but load was given {kernel!r}.")
    prog, dyn = _prepare("mcmc.load", kernel, model, args, kwargs, meta["num_chains"], meta["num_warmup"], None,
                         thinning=meta.get("thinning", 1))
    if prog.model.name != meta["model"]:
        raise ModelError(f"mcmc.load: the run was saved for model {meta['model']!r}, but load was given {prog.model.name!r}.")
    given = [[list(np.shape(a)), str(a.dtype)] for a in dyn]
    if given != meta["args"] and has_numpy((tuple(args), dict(kwargs))):
        # a run whose model needed its NumPy data concrete (issue 17; in a fresh process nothing
        # remembers it): the saved traced arguments are the non-NumPy ones
        concrete = _prepare("mcmc.load", kernel, model, args, kwargs, meta["num_chains"], meta["num_warmup"], None,
                            concrete_numpy=True, thinning=meta.get("thinning", 1))
        if [[list(np.shape(a)), str(a.dtype)] for a in concrete[1]] == meta["args"]:
            remember(model)
            prog, dyn = concrete
            given = meta["args"]
    if given != meta["args"]:
        raise ModelError(
            f"mcmc.load: the model's array arguments have shapes/dtypes {given}, but the run was "
            f"saved with {meta['args']}; pass the same data."
        )
    if prog.chunk_size is None:
        prog.chunk_size = meta.get("chunk_size")
    try:  # issue 18: a damaged file names itself and what is missing, not a KeyError deep inside
        if directory is not None:
            run = _load_stream(directory, prog, dyn, meta, arrays)
            run._progress = progress
            return run
        state = _state_from_arrays(prog, dyn, arrays, meta["state"])

        def table(name):
            if meta.get(name) is None:
                return None
            return {k: arrays[f"{name}/{j}"] for j, k in enumerate(meta[name])}

        run = Run(prog, dyn, state, table("samples"), table("info"), table("warmup_info"), table("active"),
                  meta.get("warmup_done", meta["num_warmup"]))
    except (KeyError, ValueError, TypeError, IndexError, OSError) as e:
        if isinstance(e, ppl.PPLError):
            raise
        raise ModelError(f"mcmc.load: {path!r} is damaged: {_what(e)}; it cannot be loaded (save the run again, "
                         "or load its stream_to directory).") from None
    run._progress = progress
    return run
