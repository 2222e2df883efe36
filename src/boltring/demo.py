"""`boltring demo`: two processes exchange MLX arrays over a bound Channel and
show the latency, throughput and path they used."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import mlx.core as mx

from boltring.channel import Channel, Listener

SIZES = [16 << 10, 1 << 20, 16 << 20, 64 << 20]


def _rounds(nbytes: int) -> int:
    return max(3, min(200, (256 << 20) // max(nbytes, 1)))


def _buffers(nbytes: int) -> tuple[mx.array, mx.array]:
    x = mx.ones((nbytes // 2,), mx.bfloat16)
    out = mx.zeros_like(x)
    mx.eval(x, out)
    return x, out


def peer(addr: str, iface: str | None) -> None:
    """The other process: answer every exchange, size by size."""
    with Channel.connect(addr, iface=iface, timeout=10) as chan:
        for nbytes in SIZES:
            x, out = _buffers(nbytes)
            for _ in range(_rounds(nbytes) + 1):
                chan.exchange(x, out)


def _human(nbytes: int) -> str:
    return f"{nbytes >> 20} MiB" if nbytes >= 1 << 20 else f"{nbytes >> 10} KiB"


def run(iface: str = "lo", host: str = "127.0.0.1") -> int:
    with Listener(f"{host}:0", iface=iface) as listener:
        child = subprocess.Popen(
            [sys.executable, "-m", "boltring.demo", "--peer", listener.endpoint, "--iface", iface or ""]
        )
        try:
            chan = listener.accept(timeout=30)
            print(f"boltring demo: 2 processes, one Channel bound to {iface} "
                  f"({chan.peer}), bfloat16 full-duplex exchange")
            print(f"{'size':>8} {'rounds':>7} {'median':>11} {'per direction':>14}")
            for nbytes in SIZES:
                x, out = _buffers(nbytes)
                chan.exchange(x, out)  # warm-up
                times = []
                for _ in range(_rounds(nbytes)):
                    t0 = time.perf_counter()
                    chan.exchange(x, out)
                    times.append(time.perf_counter() - t0)
                med = statistics.median(times)
                assert out[0].item() == 1.0, "exchange returned wrong data"
                print(f"{_human(nbytes):>8} {len(times):>7} {med * 1e6:>9.0f}us {nbytes / med / 1e9:>10.2f} GB/s")
            chan.close()
            print(f"path: {iface} (socket bound with {'IP_BOUND_IF' if sys.platform == 'darwin' else 'SO_BINDTODEVICE'})")
            return 0 if child.wait(timeout=30) == 0 else 1
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="boltring demo")
    parser.add_argument("--peer", help=argparse.SUPPRESS)
    parser.add_argument("--iface", default="lo")
    args = parser.parse_args(argv)
    if args.peer:
        peer(args.peer, args.iface or None)
        return 0
    return run(args.iface)


if __name__ == "__main__":
    sys.exit(main())
