"""A rank for lab tests: forms the group and runs all_sums, each result checked,
reporting path, RTT, events and throughput as JSON lines on stdout.

    python rank_loop.py HOSTFILE RANK SECONDS [KEY=VALUE init options...]
"""

from __future__ import annotations

import json
import logging
import sys
import time

import mlx.core as mx

import boltring

ELEMS = 1 << 19  # 1 MiB of bfloat16 per all_sum


def main() -> int:
    hostfile, rank, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    opts = {k: float(v) if k != "fallback" else v for k, v in (a.split("=", 1) for a in sys.argv[4:])}
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s rank {rank} %(levelname)s %(message)s")
    t0 = time.monotonic()
    group = boltring.init(hostfile, rank, **opts)
    peer = 1 - rank
    print(json.dumps({"formed": time.monotonic() - t0}), flush=True)
    mine = mx.full((ELEMS,), float(rank + 1), mx.bfloat16)
    expected = float(sum(r + 1 for r in range(group.size())))
    seen, ops, bad, busy = 0, 0, 0, 0.0
    last = time.monotonic()
    end = last + seconds
    while time.monotonic() < end:
        t = time.perf_counter()
        out = group.all_sum(mine)
        mx.eval(out)  # lazy, as every MLX collective: the bytes move here
        busy += time.perf_counter() - t
        ops += 1
        if not mx.all(out == expected).item():
            bad += 1
        now = time.monotonic()
        if now - last >= 0.2:
            info = group.path(peer)
            events = group.events()
            print(json.dumps({
                "t": now, "iface": info.iface, "state": info.state, "rtt": info.rtt_ms, "ops": ops,
                "bad": bad, "rate": ops * ELEMS * 2 / busy if busy else 0.0,
                "events": [e.__dict__ for e in events[seen:]],
            }), flush=True)
            seen = len(events)
            ops, busy, last = 0, 0.0, now
        time.sleep(0.01)  # leave the 2 cores some room: RTT is measured under this load
    group.close()
    print(json.dumps({"done": True, "bad": bad}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
