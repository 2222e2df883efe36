"""Ctrl-C reaches a long transfer promptly: the GIL is released around the C call
and signals are checked between short slices."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from boltring.data.channel import Listener

pytestmark = pytest.mark.timeout(60)

SENDER = textwrap.dedent(
    """
    import sys, time
    import mlx.core as mx
    from boltring.data.channel import Channel
    x = mx.zeros((64 << 20,), mx.float32)  # 256 MiB
    mx.eval(x)
    chan = Channel.connect(sys.argv[1], timeout=5)
    print("sending", flush=True)
    try:
        chan.send(x, timeout=60)
    except KeyboardInterrupt:
        print("interrupted", time.monotonic(), flush=True)
        chan.close()
        print("closed", flush=True)
        sys.exit(3)
    """
)


def test_ctrl_c_interrupts_a_256_mib_send_within_half_a_second():
    with Listener("127.0.0.1:0") as listener:
        proc = subprocess.Popen([sys.executable, "-c", SENDER, listener.endpoint],
                                stdout=subprocess.PIPE, text=True)
        try:
            peer = listener.accept(timeout=20)  # accepted, never read: the send blocks
            assert proc.stdout.readline().strip() == "sending"
            time.sleep(0.5)  # deliberate: well inside the blocked send when SIGINT comes
            sent_at = time.monotonic()
            proc.send_signal(signal.SIGINT)
            line = proc.stdout.readline().split()
            assert line[0] == "interrupted"
            assert float(line[1]) - sent_at < 0.5
            assert proc.stdout.readline().strip() == "closed"
            assert proc.wait(timeout=10) == 3
        finally:
            proc.kill()
            proc.wait()
        peer.close(goodbye=False)
