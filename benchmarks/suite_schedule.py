"""How long ``make test`` takes on two workers, from per-test times: xdist's schedulers replayed.

The wall time of a run on two workers is the sum of the tests' times over two plus the *tail*
(one worker still running after the other ran out of work).  This replays xdist 3.8's ``load``
scheduler (chunks sent in collection order, never taken back) and its ``worksteal`` scheduler
(half of the queue each, an idle worker steals half of the other's remaining queue) on the
per-test times of a junit file, for a given collection order.  It is a load-robust way to
compare orders and schedulers: the times come from one run, the machine's load scales them all.

    python -m benchmarks.suite_schedule --junit junit.xml --order order.txt [--order2 other.txt]

``order.txt``: the node ids in collection order (``pytest --collect-only -q``).  Fixture and
per-worker start-up costs are not modelled (tests are independent items).
"""

from __future__ import annotations

import argparse
import heapq
import xml.etree.ElementTree as ET


def junit_times(path: str) -> dict[str, float]:
    """nodeid -> seconds, from a pytest junit file (classname ``tests.test_x`` + name)."""
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        cls, name = case.get("classname", ""), case.get("name", "")
        parts = cls.split(".")
        # module path, then classes (none in this suite)
        nodeid = "/".join(parts[:2]) + ".py::" + "::".join(parts[2:] + [name]) if len(parts) >= 2 else name
        out[nodeid] = out.get(nodeid, 0.0) + float(case.get("time", 0.0))
    return out


def simulate_load(times: list[float], nodes: int = 2) -> float:
    """xdist ``load``: initial chunks of len/nodes/4 in order, refills to len(pending)/nodes/2
    when a node's queue drops under len(pending)/nodes/4 (as xdist 3.8's LoadScheduling)."""
    pending = list(range(len(times)))
    queues: list[list[int]] = [[] for _ in range(nodes)]
    chunk = max(2, len(times) // nodes // 4)
    for q in queues:
        q.extend(pending[:chunk])
        del pending[:chunk]
    events = [(times[q[0]], n) for n, q in enumerate(queues) if q]
    heapq.heapify(events)
    end = 0.0
    while events:
        t, n = heapq.heappop(events)
        done = queues[n].pop(0)
        end = max(end, t)
        if pending:
            lo = max(2, len(pending) // nodes // 4)
            hi = max(2, len(pending) // nodes // 2)
            # a node running long tests with two queued waits (xdist's heuristic)
            if len(queues[n]) < lo and not (times[done] >= 0.1 and len(queues[n]) >= 2):
                send = min(hi - len(queues[n]), len(pending))
                queues[n].extend(pending[:send])
                del pending[:send]
        if queues[n]:
            heapq.heappush(events, (t + times[queues[n][0]], n))
    return end


def simulate_worksteal(times: list[float], nodes: int = 2, min_pending: int = 2) -> float:
    """xdist ``worksteal``: the collection split evenly in order; a node with fewer than
    ``min_pending`` queued steals half of the longest queue's tail (keeping ``min_pending``)."""
    n_items = len(times)
    queues = [list(range(i * n_items // nodes, (i + 1) * n_items // nodes)) for i in range(nodes)]
    events = [(times[q[0]], n) for n, q in enumerate(queues) if q]
    heapq.heapify(events)
    end = 0.0
    while events:
        t, n = heapq.heappop(events)
        queues[n].pop(0)
        end = max(end, t)
        if len(queues[n]) < min_pending:
            other = max((m for m in range(nodes) if m != n), key=lambda m: len(queues[m]))
            steal = min(len(queues[other]) // 2, max(0, len(queues[other]) - min_pending))
            if steal:
                queues[n].extend(queues[other][-steal:])
                del queues[other][-steal:]
        if queues[n]:
            heapq.heappush(events, (t + times[queues[n][0]], n))
    return end


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--junit", required=True)
    ap.add_argument("--order", required=True, help="node ids, one a line, in collection order")
    ap.add_argument("--order2", help="a second order to compare")
    ap.add_argument("--default", type=float, default=0.05, help="seconds for a test missing from the junit file")
    args = ap.parse_args()
    times = junit_times(args.junit)
    for path in [args.order, args.order2]:
        if not path:
            continue
        ids = [line.strip() for line in open(path) if "::" in line]
        ts = [times.get(i, args.default) for i in ids]
        missing = sum(i not in times for i in ids)
        print(f"{path}: {len(ids)} tests ({missing} without a time), sum {sum(ts) / 60:.1f} min, "
              f"half {sum(ts) / 120:.1f} min, longest {max(ts):.0f} s")
        print(f"  load:      {simulate_load(ts) / 60:.1f} min")
        print(f"  worksteal: {simulate_worksteal(ts) / 60:.1f} min")


if __name__ == "__main__":
    main()
