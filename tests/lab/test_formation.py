"""Formation with strangers about: real ranks in the lab, raw clients in node 1.

Rank 0 (it accepts; with 2 ranks rank 1 dials) starts alone and forms nothing until
rank 1 comes.  Meanwhile a client refused by its listener on thunderbolt0 — a HELLO
for another world size, and a handshake whose proof of the secret is wrong:

- from an address that is not rank 1's (one more address on node 1's thunderbolt0):
  a stranger.  Rank 0 logs the refusal and keeps waiting; rank 1, started after,
  forms the group with it over thunderbolt0 and every all_sum is right;
- from rank 1's own address (the control): rank 0's formation ends at once with the
  refusal's error (ConfigError, AuthError), since rank 1 and rank 0 disagree and
  neither could go on.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap

import pytest

from boltring_rig.lab import Lab
from boltring_rig.lab import netns
from fault_tools import Worker, has, lab_namespaces, on
from ports import free_port

pytestmark = [pytest.mark.netns, pytest.mark.timeout(150)]

PREFIX = f"fm{os.getpid() % 10000}"
PORT = free_port()  # any free port: the ranks listen only inside this test's own lab namespaces
SECRET = "formation-secret"
STRANGER = "192.168.4.77"  # on node 1's thunderbolt0, beside rank 1's 192.168.4.2

CLIENT = textwrap.dedent(
    """
    import json, os, socket, sys, time
    from boltring.data import _core
    src, ip, port, what = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

    sent = [0]  # frames are numbered per direction

    def send(s, kind, msg):
        body = json.dumps(msg).encode()
        s.sendall(_core.encode_header(kind, 0, sent[0], len(body)) + body)
        sent[0] += 1

    def recv(s, kind):
        head = s.recv(32, socket.MSG_WAITALL)
        if len(head) < 32:
            return None
        k, _, _, _, length, _ = _core.decode_header(head)
        assert k == kind, k
        return json.loads(s.recv(length, socket.MSG_WAITALL))

    end = time.monotonic() + 20
    while True:  # rank 0's listener may still be coming up
        s = socket.socket()
        s.settimeout(5)
        s.bind((src, 0))
        try:
            s.connect((ip, port))
            break
        except OSError:
            s.close()
            if time.monotonic() > end:
                raise
            time.sleep(0.05)
    hello = {"v": 1, "world": 2, "src": 1, "dst": 0, "role": "probe", "instance": "stranger",
             "nonce": os.urandom(16).hex(), "auth": True}
    if what == "world":
        hello["world"] = 3
    send(s, _core.KIND_HELLO, hello)
    reply = recv(s, _core.KIND_HELLO)
    out = {"reply_ok": bool(reply and reply.get("ok"))}
    if what == "proof" and out["reply_ok"]:
        send(s, _core.KIND_AUTH, {"proof": "00" * 32})
        out["auth"] = recv(s, _core.KIND_AUTH)
    print(json.dumps(out), flush=True)
    """
)


@pytest.fixture(scope="module")
def lab():
    with Lab(nodes=2, prefix=PREFIX) as lab:
        netns.ip(lab.ns(1), "addr", "add", f"{STRANGER}/24", "dev", "thunderbolt0")
        yield lab
    assert lab_namespaces(PREFIX) == []


def refused_by_rank0(lab: Lab, src: str, what: str) -> dict:
    p = lab.python(1, CLIENT, src, lab.fast_addr(0), str(PORT), what, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    return json.loads(out)


def start(lab: Lab, rank: int, tmp, seconds: float = 3) -> Worker:
    hosts = tmp / "hosts.json"
    hosts.write_text(json.dumps(lab.hostfile(PORT)))
    opts = {"init": {"secret": SECRET, "timeout_s": 20}, "elems": 8192, "report_ops": 20,
            "seconds": seconds, "log": "info"}
    return Worker(lab, rank, hosts, opts, tmp)


@pytest.mark.parametrize("what", ["world", "proof"])
def test_a_stranger_refused_during_formation_does_not_end_it(lab, tmp_path, what):
    rank0 = start(lab, 0, tmp_path)
    rank1 = None
    try:
        for _ in range(3):
            got = refused_by_rank0(lab, STRANGER, what)
            if what == "proof":  # the HELLO passes, the proof does not
                assert got == {"reply_ok": True, "auth": {"ok": False}}, got
            else:
                assert got == {"reply_ok": False}, got
        assert rank0.proc.poll() is None and rank0.lines.empty(), rank0.history
        rank1 = start(lab, 1, tmp_path)
        for w in (rank0, rank1):
            w.wait_for(has("formed"), 30)
            w.wait_for(on("thunderbolt0"), 15)
            w.wait_for(has("done"), 30)
        assert f"refused a connection from {STRANGER}" in rank0.log.read_text()
    finally:
        for w in (rank0, rank1):
            if w is not None:
                w.stop()


@pytest.mark.parametrize("what, error", [("world", "ConfigError"), ("proof", "AuthError")])
def test_the_same_refusal_from_the_peers_own_address_ends_formation(lab, tmp_path, what, error):
    rank0 = start(lab, 0, tmp_path)
    try:
        refused_by_rank0(lab, lab.fast_addr(1), what)
        # init() raises it (long before its 20 s timeout): fault_rank exits with it
        assert rank0.proc.wait(timeout=15) != 0
        assert f"boltring.errors.{error}: " in rank0.log.read_text()
    finally:
        rank0.stop()
