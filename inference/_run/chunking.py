"""How many steps a compiled chunk has when the user gives no ``chunk_size``."""

from __future__ import annotations

import math

__all__ = ["CHUNKS", "MAX_CHUNK", "CHUNK_BYTES", "choose_chunk_size"]

#: about this many chunks per run
CHUNKS = 20
#: at most this many steps per chunk
MAX_CHUNK = 1024
#: at most this many bytes of outputs per chunk on the device
CHUNK_BYTES = 64 * 2**20


def choose_chunk_size(num_steps: int, bytes_per_step: int = 0, phases: tuple = ()) -> int:
    """About ``num_steps / CHUNKS`` steps, at most ``MAX_CHUNK`` steps and ``CHUNK_BYTES``
    bytes of outputs; a divisor of every phase length (e.g. warmup and sampling) when one is
    within a factor 2 of that, so no chunk runs past the end of a phase.

    Example:
        >>> from inference._run.chunking import choose_chunk_size
        >>> choose_chunk_size(2000, phases=(1000, 1000)), choose_chunk_size(1000, phases=(1000,))
        (100, 50)
    """
    num_steps = int(num_steps)
    target = max(1, min(MAX_CHUNK, math.ceil(num_steps / CHUNKS)))
    target = int(max(1, min(target, CHUNK_BYTES // max(int(bytes_per_step), 1))))
    g = 0
    for p in phases:
        g = math.gcd(g, int(p))
    g = g or num_steps
    divisors = [d for d in range(max(1, target // 2), min(g, 2 * target) + 1) if g % d == 0]
    return min(divisors, key=lambda d: abs(d - target)) if divisors else target
