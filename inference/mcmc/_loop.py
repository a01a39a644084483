"""The host side of an MCMC run: the warmup and sampling phases, each a loop over compiled chunks
(:func:`inference._run.loop.host_loop`) whose draws stream into host buffers or files, with
progress, checkpoints, and Ctrl-C returning the draws made so far."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from ppl.errors import ArgumentError

from .. import sharding
from .._run.loop import host_loop
from .._run.progress import Progress
from .._run.sink import Sink
from ._program import _by_suffix, _Program
from ._store import _Checkpoint
from .health import check_run


def _run_phase(prog: _Program, key, state, dyn, t_start: int, n: int, warm: bool, progress: Progress, sink: Sink, on_chunk=None):
    """Steps ``t_start .. n − 1`` of a phase, chunk by chunk, their outputs copied into ``sink``
    (then ``on_chunk(state, steps done, last)`` is called, e.g. to write a checkpoint).

    Returns ``(state, steps done, interrupted)``; on Ctrl-C, the state after the last chunk
    whose outputs reached the host (so the draws and the state match) and ``interrupted=True``.
    """
    warm_, n_ = np.bool_(warm), np.int32(n)
    if sharding.num_devices() > 1:  # one placement for every key (from init or the user): no recompile
        key = jax.device_put(key, NamedSharding(sharding.mesh(), PartitionSpec()))
    ndiv = [0]
    chains = prog.num_chains

    def run_chunk(state, t0):
        return prog.chunk(key, state, dyn, np.int32(t0), n_, warm_)

    def collect(out, t0, m):
        if warm:  # warmup draws are not kept
            out = {"info": out["info"]}
        out = sharding.to_host(out)
        sink.write(out, t0 - t_start, m)
        for v in _by_suffix(out["info"], "diverging"):
            ndiv[0] += int(np.sum(v[:m]))

    def after(state, done, last):
        progress(done, f"{chains} chain{'s' * (chains != 1)}", f"{ndiv[0]} divergences")
        if on_chunk is not None:
            on_chunk(state, done, last)
        return False

    try:
        return host_loop(run_chunk, state, t_start, n, prog.chunk_size, collect, after)
    finally:
        progress.close()


def _finish(prog: _Program, key, state, dyn, sink: Sink, done: int, warm: bool) -> dict:
    """The sink's tables for ``done`` steps (with empty arrays of the right shapes when no chunk
    ran, e.g. ``num_samples=0``)."""
    if sink.tables:
        template = {t: {name: np.empty((0, b.shape[0]) + b.shape[2:], b.dtype) for name, b in d.items()} for t, d in sink.tables.items()}
    else:
        out = jax.eval_shape(prog.chunk, key, state, dyn, np.int32(0), np.int32(0), np.bool_(warm))[1]
        template = {"info": out["info"]} if warm else out
    return sink.result(done, template)


def _interrupted(run):
    warnings.warn(
        f"mcmc: interrupted; returning the {run.num_samples} draws per chain made so far "
        f"(warmup {run.warmup_done}/{run._program.num_warmup}); run.resume(key) continues.",
        stacklevel=3,
    )
    return run


def _empty_samples(prog, key, state, dyn) -> dict:
    out = jax.eval_shape(prog.chunk, key, state, dyn, np.int32(0), np.int32(0), np.bool_(False))[1]
    return {k: np.empty((v.shape[1], 0) + tuple(v.shape[2:]), v.dtype) for k, v in out["samples"].items()}


def _stream_dir(who: str, stream_to: Any) -> Path | None:
    if stream_to is None:
        return None
    d = Path(os.fspath(stream_to))
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArgumentError(f"{who}: cannot create the directory stream_to={os.fspath(stream_to)!r} ({e}).") from None
    return d


def _phases(prog: _Program, dyn: list, state, k_warm, k_samp, warm_start: int, n: int, on: bool, directory: Path | None):
    """Finish the warmup (from step ``warm_start``), then make ``n`` draws per chain."""
    from .result import Run

    num_warmup = prog.num_warmup
    warm_info, wdone, wsink = None, warm_start, None
    if warm_start < num_warmup:
        wsink = Sink(num_warmup - warm_start, directory, "warmup_")
    ckpt = None if directory is None else _Checkpoint(prog, dyn, directory, wsink, warm_start, n)
    if wsink is not None:
        on_chunk = None if ckpt is None else (lambda st, d, last: ckpt(st, d, None, 0, last))
        state, wdone, stop = _run_phase(prog, k_warm, state, dyn, warm_start, num_warmup, True,
                                        Progress(on, "warmup", num_warmup), wsink, on_chunk)
        warm_info = _finish(prog, k_warm, state, dyn, wsink, wdone - warm_start, True)["info"]
        if stop:
            if ckpt is not None:
                ckpt(state, wdone, None, 0, True)
            run = Run(prog, dyn, state, _empty_samples(prog, k_samp, state, dyn), {}, warm_info, None, wdone, True)
            run._progress = on
            return _interrupted(run)
    sink = Sink(n, directory, "")
    on_chunk = None if ckpt is None else (lambda st, d, last: ckpt(st, num_warmup, sink, d, last))
    state, done, stop = _run_phase(prog, k_samp, state, dyn, 0, n, False, Progress(on, "sample", n), sink, on_chunk)
    out = _finish(prog, k_samp, state, dyn, sink, done, False)
    if ckpt is not None and (stop or n == 0):
        ckpt(state, num_warmup, sink, done, True)
    run = Run(prog, dyn, state, out["samples"], out["info"], warm_info, out.get("active"), num_warmup, stop)
    run._progress = on
    return check_run(_interrupted(run) if stop else run)  # issue 18: run.health, raise or warn
