"""`boltring demo`: the seed's story, live, on this machine.

With root and Linux network namespaces: a 2-node lab (a fast veth named
thunderbolt0, a slow path named tailscale0 with 20 ms each way), a group formed
over thunderbolt0, all_sum latency and throughput, then thunderbolt0 is removed
under a running loop of checked all_sums: boltring falls back to tailscale0 and
says so, results stay correct; thunderbolt0 comes back and boltring returns to it.
Without namespaces, the same ranks run over loopback and the link story is skipped,
with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import mlx.core as mx

SIZES = [16 << 10, 1 << 20, 16 << 20]
PORT = 51000


# ---------------------------------------------------------------------- a rank

def _rank(hostfile: str, rank: int) -> int:
    """One rank: run what the orchestrator says on stdin, answer JSON lines."""
    import boltring

    group = boltring.init(hostfile, rank, timeout_s=30)
    peer = 1 - rank
    say = lambda **kw: print(json.dumps(kw), flush=True)  # noqa: E731
    say(formed=group.path(peer).iface)
    stop = threading.Event()
    commands: queue.Queue[dict[str, Any]] = queue.Queue()

    def read() -> None:
        for line in sys.stdin:
            msg = json.loads(line)
            (stop.set if msg.get("cmd") == "stop" else lambda: commands.put(msg))()
        stop.set()
        commands.put({"cmd": "quit"})

    threading.Thread(target=read, daemon=True).start()
    while True:
        cmd = commands.get()
        if cmd["cmd"] == "quit":
            break
        if cmd["cmd"] == "measure":
            say(measure=_measure(group))
        elif cmd["cmd"] == "loop":
            stop.clear()
            _loop(group, peer, stop, say)
    group.close()
    return 0


def _measure(group: Any) -> list[dict[str, float]]:
    out = []
    for nbytes in SIZES:
        x = mx.ones((nbytes // 2,), mx.bfloat16)
        mx.eval(x)
        mx.eval(group.all_sum(x))
        rounds = max(5, min(300, (64 << 20) // nbytes))
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            mx.eval(group.all_sum(x))  # the result computed, not just promised
            times.append(time.perf_counter() - t)
        med = statistics.median(times)
        out.append({"bytes": nbytes, "median_s": med, "gbps": nbytes / med / 1e9})
    return out


def _loop(group: Any, peer: int, stop: threading.Event, say: Any) -> None:
    """Checked all_sums until told to stop; both ranks stop on the same one."""
    x = mx.full((1 << 18,), float(group.rank() + 1), mx.bfloat16)
    want = float(sum(r + 1 for r in range(group.size())))
    checked = wrong = 0
    seen = 0
    last = 0.0
    while True:
        flag = mx.array(1 if stop.is_set() and group.rank() == 0 else 0, mx.int32)
        if group.all_max(flag).item():
            break
        out = group.all_sum(x)
        checked += 1
        wrong += 0 if mx.all(out == want).item() else 1
        now = time.monotonic()
        if now - last > 0.1:
            info = group.path(peer)
            events = group.events()
            say(status={"iface": info.iface, "state": info.state, "rtt_ms": info.rtt_ms, "checked": checked,
                        "wrong": wrong, "events": [e.__dict__ for e in events[seen:]]})
            seen, last = len(events), now
        time.sleep(0.005)
    say(looped={"checked": checked, "wrong": wrong})


# --------------------------------------------------------------- orchestrator

class _Proc:
    def __init__(self, argv: list[str], popen: Any):
        self.p = popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                pass
        self.lines.put({"exited": self.p.wait()})

    def send(self, **msg: Any) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write(json.dumps(msg) + "\n")
        self.p.stdin.flush()

    def expect(self, key: str, timeout: float) -> Any:
        end = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                line = {}
            if key in line:
                return line[key]
            if "exited" in line:
                raise RuntimeError(f"a rank exited (code {line['exited']}); run with -v to see why")
            if time.monotonic() > end:
                raise RuntimeError(f"no '{key}' from a rank within {timeout:.0f} s")

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


def _human(nbytes: int) -> str:
    return f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KiB"


def _table(rows: list[dict[str, float]]) -> None:
    print(f"      {'size':>7}  {'median':>9}  {'all_sum':>11}")
    for r in rows:
        print(f"      {_human(int(r['bytes'])):>7}  {r['median_s'] * 1e6:>7.0f}us  {r['gbps']:>7.2f} GB/s")


def _watch(rank: _Proc, until: Any, timeout: float) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    """Status lines until one satisfies `until`: (that line, events seen, seconds)."""
    t0 = time.monotonic()
    events: list[dict[str, Any]] = []
    while True:
        status = rank.expect("status", timeout - (time.monotonic() - t0))
        events += status["events"]
        if status["wrong"]:
            raise RuntimeError("an all_sum returned a wrong result")
        if until(status):
            return status, events, time.monotonic() - t0


def _until_on(rank: _Proc, iface: str) -> None:
    """Watch `rank` until its path is `iface`, printing the events on the way."""
    status, events, took = _watch(rank, lambda s: s["iface"] == iface, 20)
    for e in events:
        print(f"      {e['kind'].upper()} from {e['from_path']} to {e['to_path']}: {e['reason']}")
    rtt = f", RTT {status['rtt_ms']:.2f} ms" if status["rtt_ms"] is not None else ""
    print(f"      on {status['iface']} ({status['state']}) after {took:.1f} s{rtt}; "
          f"{status['checked']} all_sums checked, {status['wrong']} wrong")


def run(verbose: bool = False) -> int:
    from boltring_rig.lab.netns import unavailable

    reason = unavailable()
    with tempfile.TemporaryDirectory(prefix="boltring-demo-") as tmp:
        hostfile = Path(tmp) / "hosts.json"
        lab = None
        ranks: list[_Proc] = []
        try:
            if reason is None:
                from boltring_rig.lab import Lab

                print("boltring demo: 2 ranks in network namespaces joined by thunderbolt0 (a fast veth) "
                      "and tailscale0 (20 ms each way)")
                lab = Lab(nodes=2, prefix=f"demo{os.getpid() % 10000}").up()
                hostfile.write_text(json.dumps(lab.hostfile(PORT)))
                popen = [lambda argv, n=n, **kw: lab.popen(n, argv, **kw) for n in (0, 1)]
            else:
                print(f"boltring demo: {reason}, so 2 ranks run over loopback and the link story is skipped")
                # one address, two ports: macOS holds only 127.0.0.1 (Linux all of 127/8)
                hostfile.write_text(json.dumps([[f"127.0.0.1:{PORT}"], [f"127.0.0.1:{PORT + 1}"]]))
                popen = [lambda argv, **kw: subprocess.Popen(argv, **kw)] * 2
            env = dict(os.environ, BOLTRING_STATE_DIR=tmp)
            log_flag = ["-v"] if verbose else []
            t0 = time.monotonic()
            ranks = [_Proc([sys.executable, "-m", "boltring_rig.demo", *log_flag, "--rank", str(n), "--hostfile",
                            str(hostfile)], lambda argv, p=popen[n], **kw: p(argv, env=env, **kw))
                     for n in (0, 1)]
            ifaces = [r.expect("formed", 40) for r in ranks]
            print(f"[1/4] group formed in {time.monotonic() - t0:.2f} s; measuring all_sum (bfloat16)")
            for r in ranks:
                r.send(cmd="measure")
            before = [r.expect("measure", 120) for r in ranks][1]
            _table(before)
            if lab is None:
                print(f"done: boltring moved every byte over sockets bound to {ifaces[0]}")
                return 0
            for r in ranks:
                r.send(cmd="loop")
            status, _, _ = _watch(ranks[1], lambda s: True, 20)
            print(f"      path: {status['iface']} ({status['state']}), RTT {status['rtt_ms']:.2f} ms")
            print("[2/4] removing thunderbolt0 on node 1 under a loop of checked all_sums")
            lab.break_link(1)
            _until_on(ranks[1], "tailscale0")
            print("[3/4] restoring thunderbolt0")
            lab.heal(1)
            _until_on(ranks[1], "thunderbolt0")
            ranks[0].send(cmd="stop")
            totals = [r.expect("looped", 30) for r in ranks]
            print("[4/4] measuring again over thunderbolt0")
            for r in ranks:
                r.send(cmd="measure")
            after = [r.expect("measure", 120) for r in ranks][1]
            _table(after)
            ratio = after[-1]["gbps"] / before[-1]["gbps"]
            print(f"done: {sum(t['checked'] for t in totals)} checked all_sums, "
                  f"{sum(t['wrong'] for t in totals)} wrong; 16 MiB throughput after re-promotion "
                  f"{ratio:.0%} of before")
            return 0
        except KeyboardInterrupt:
            print("\ninterrupted; cleaning up")
            return 130
        except Exception as exc:  # noqa: BLE001 - the demo reports and cleans up
            print(f"demo failed: {exc}", file=sys.stderr)
            return 1
        finally:
            for r in ranks:
                r.stop()
            if lab is not None:
                lab.down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m boltring_rig.demo")
    parser.add_argument("--rank", type=int)
    parser.add_argument("--hostfile")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.rank is not None:
        import logging

        logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR, stream=sys.stderr,
                            format=f"rank {args.rank} %(levelname)s %(message)s")
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator handles Ctrl-C
        return _rank(args.hostfile, args.rank)
    return run(args.verbose)


if __name__ == "__main__":
    sys.exit(main())
