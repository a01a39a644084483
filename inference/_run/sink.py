"""Where the chunks' outputs go on the host: NumPy buffers, or ``.npy`` files (memory maps)
when a run streams to a directory; and writing an ``.npz`` file atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

__all__ = ["Sink", "write_npz"]


class Sink:
    """Host buffers shaped (batch, n, ...) for each output table, filled chunk by chunk (NumPy
    arrays, or ``<directory>/<prefix><table>.<j>.npy`` memory maps when streaming to files).

    A chunk's outputs are ``{table: {name: array (chunk, batch, ...)}}``; :meth:`write` puts its
    first ``m`` steps at step offset ``t0``.

    Example:
        >>> from inference._run.sink import Sink
        >>> s = Sink(5, None, "")
        >>> s.write({"samples": {"x": np.ones((3, 2))}}, 0, 3)
        >>> s.result(3, {"samples": {"x": np.empty((0, 2))}})["samples"]["x"].shape
        (2, 3)
    """

    def __init__(self, n: int, directory: Path | None, prefix: str):
        self.n, self.directory, self.prefix = n, directory, prefix
        self.tables: dict = {}

    def _buffer(self, table: str, j: int, shape: tuple, dtype) -> np.ndarray:
        if self.directory is None or 0 in shape:  # (an empty file cannot be memory-mapped)
            return np.empty(shape, dtype)
        path = self.directory / f"{self.prefix}{table}.{j}.npy"
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)

    def write(self, out: dict, t0: int, m: int) -> None:
        for table, d in out.items():
            bufs = self.tables.setdefault(table, {})
            for j, (name, v) in enumerate(d.items()):
                v = np.asarray(v)  # (chunk, batch, ...)
                if name not in bufs:
                    bufs[name] = self._buffer(table, j, (v.shape[1], self.n) + v.shape[2:], v.dtype)
                bufs[name][:, t0 : t0 + m] = np.swapaxes(v[:m], 0, 1)

    def result(self, done: int, template: dict) -> dict:
        """address -> array (batch, done, ...), for each table (empty tables from ``template``,
        whose arrays are shaped (steps, batch, ...))."""
        res = {}
        for table, d in template.items():
            bufs = self.tables.get(table, {})
            res[table] = {}
            for j, (name, v) in enumerate(d.items()):
                if name in bufs:
                    if isinstance(bufs[name], np.memmap):
                        bufs[name].flush()
                    res[table][name] = bufs[name][:, :done]
                else:
                    shape = (v.shape[1], done) + tuple(v.shape[2:])
                    res[table][name] = self._buffer(table, j, shape, v.dtype)
        return res


def write_npz(path: str, arrays: dict, meta: dict) -> None:
    """``arrays`` (names with ``/``) and ``meta`` (JSON, as the ``meta`` array) to an ``.npz``
    file, written to ``path + ".tmp"`` and renamed: a crash while writing leaves the previous
    file intact.  Nothing is pickled."""
    arrays = dict(arrays)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **{k.replace("/", "."): v for k, v in arrays.items()})
    os.replace(tmp, path)
