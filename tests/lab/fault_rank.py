"""A rank for fault tests: forms the group, runs checked all_sums, reports JSON lines.

    python fault_rank.py HOSTFILE RANK '{"init": {...}, "elems": N, "dtype": "bfloat16", ...}'

Options (all optional): init (boltring.init keywords), elems and dtype of each
all_sum, seconds to run, report_ops (a status line every that many all_sums; the
ranks agree there whether time is up, so they stop after the same one), sleep_s
between operations, settle_s before the last line, go (wait for a line on stdin
before the loop), random (sizes and dtypes drawn from a seed every rank shares),
warm (first the largest size of each dtype), cache_limit (mx.set_cache_limit),
log (a logging level for stderr), vote (false: no all_max at each report; each
rank stops on its own clock, for tests that stop the ranks themselves).

Every rank adds ((i % 61) + rank) for element i, so the expected sum is exact in
every dtype (at most 4 ranks: under 256, which bfloat16 holds exactly).  Lines:
  {"formed": s, "iface", "listening", "authenticated", "pid", "fds", "threads", "rss"}
  {"t", "started", "ops", "bad", "iface", "state", "fds", "threads", "rss", "mlx_active",
   "mlx_cache", "events"}                                   every report_ops all_sums
  {"error": class, "msg", "t", "in_op": s, "cpu": s}      a BoltError (then it idles 2 s, closes)
  {"interrupted": t, "in_op": s} then {"closed": s, "threads": [...]}       on Ctrl-C
  {"done": true, "ops", "bad", "fds", "threads", "rss"}
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time

import mlx.core as mx

import boltring

DTYPES = ["bfloat16", "float16", "float32", "int32", "uint8", "int64"]


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def say(**kw) -> None:
    print(json.dumps(kw), flush=True)


def operands(elems: int, dtype: mx.Dtype, rank: int, n: int) -> tuple[mx.array, mx.array]:
    base = mx.arange(elems, dtype=mx.int32) % 61
    mine = (base + rank).astype(dtype)
    want = (base * n + n * (n - 1) // 2).astype(dtype)
    mx.eval(mine, want)
    return mine, want


def main() -> int:
    hostfile, rank, opts = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    if opts.get("log"):
        import logging
        logging.basicConfig(level=getattr(logging, str(opts["log"]).upper(), logging.INFO), stream=sys.stderr,
                            format=f"%(asctime)s rank {rank} %(levelname)s %(message)s")
    if "cache_limit" in opts:  # bound MLX's buffer cache, so that RSS shows what is live
        mx.set_cache_limit(int(opts["cache_limit"]))
    t0 = time.monotonic()
    group = boltring.init(hostfile, rank, **opts.get("init", {}))
    n = group.size()
    peer = (rank + 1) % n
    stats = group.stats()
    # the per-process id every HELLO of this rank carries (in clear: a sniffer has it too)
    instance = getattr(group.link(peer), "instance", None)
    say(formed=time.monotonic() - t0, iface=group.path(peer).iface, listening=stats["listening"], instance=instance,
        authenticated=stats["authenticated"], pid=os.getpid(), fds=fds(), threads=threading.active_count(),
        rss=rss())
    rng = random.Random(opts.get("random", 0))
    elems, dtype = int(opts.get("elems", 8192)), getattr(mx, opts.get("dtype", "bfloat16"))
    mine, want = operands(elems, dtype, rank, n)
    if opts.get("go"):
        say(ready=True)
        sys.stdin.readline()
    seconds, report_ops, sleep_s = float(opts.get("seconds", 60)), int(opts.get("report_ops", 1)), \
        float(opts.get("sleep_s", 0.0))
    ops = bad = seen = 0
    end = time.monotonic() + seconds
    started = time.monotonic()
    warm = [(1 << 21, d) for d in DTYPES] if opts.get("warm") else []  # the largest case of each dtype first
    try:
        while True:
            if warm:
                elems, name = warm.pop()
                mine, want = operands(elems, getattr(mx, name), rank, n)
            elif "random" in opts:  # every rank draws the same case from the shared seed
                elems = rng.choice([1, 7, 4096, 8192, rng.randrange(1, 1 << 16), rng.randrange(1, 1 << 21)])
                mine, want = operands(elems, getattr(mx, rng.choice(DTYPES)), rank, n)
            started = time.monotonic()
            out = group.all_sum(mine)
            mx.eval(out)  # lazy, as every MLX collective: the bytes move here
            ops += 1
            if not mx.array_equal(out, want).item():
                bad += 1
            if ops % report_ops == 0:
                now = time.monotonic()
                info = group.path(peer)
                events = group.events()
                say(t=now, started=started, ops=ops, bad=bad, iface=info.iface, state=info.state, fds=fds(),
                    threads=threading.active_count(), rss=rss(), mlx_active=mx.get_active_memory(),
                    mlx_cache=mx.get_cache_memory(),
                    events=[e.__dict__ for e in events[seen:]])
                seen = len(events)
                # every rank stops after the same operation: the first whose time is up decides
                # (without "vote", each stops on its own clock: for tests that stop them)
                if not opts.get("vote", True):
                    if now >= end:
                        break
                elif group.all_max(mx.array(int(now >= end), mx.int32)).item():
                    break
            if sleep_s:
                time.sleep(sleep_s)  # the test's pacing between all_sums
    except boltring.BoltError as e:
        now = time.monotonic()
        say(error=type(e).__name__, msg=str(e), t=now, in_op=now - started, cpu=time.process_time(),
            ops=ops, bad=bad)
        time.sleep(2.0)  # stay around to be measured
        group.close()  # as a program that handles the error would
        return 1
    except KeyboardInterrupt:
        now = time.monotonic()
        say(interrupted=now, in_op=now - started, ops=ops)
        t1 = time.monotonic()
        group.close()
        closed = time.monotonic() - t1
        end = time.monotonic() + 3.0
        while threading.active_count() > 1 and time.monotonic() < end:
            time.sleep(0.05)
        say(closed=closed, threads=[t.name for t in threading.enumerate() if t is not threading.main_thread()])
        return 130
    time.sleep(float(opts.get("settle_s", 0.0)))  # let probe and admit threads of a flap end
    say(done=True, ops=ops, bad=bad, fds=fds(), threads=threading.active_count(), rss=rss(),
        thread_names=sorted(t.name for t in threading.enumerate()))
    group.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
