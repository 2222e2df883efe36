"""Trust, with real ranks in the lab: a boltring group never talks to a stranger.

Both ranks hold a secret and run a checked all_sum loop throughout; their hostfiles
are exo's (own entry 0.0.0.0:port).  Raw clients run in node 1's namespace:

- a handshake recorded from a legitimate dialer (through a relay) and replayed
  is refused: the acceptor's nonce is fresh, the recorded proof is for the old one;
- a client that skips AUTH and sends a DATA frame is cut off: nothing it sends
  is read as data;
- neither disturbs the group, not even at its next path switch;
- the wildcard entry listens on the port on each interface that reaches a
  neighbour, bound to it, and on nothing else (ss in the namespace);
  stats()["authenticated"] says the secret is in force.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time

import pytest

from boltring_rig.lab import Lab
from boltring_rig.lab import netns
from fault_tools import Worker, has, lab_namespaces, on
from ports import free_port

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

PREFIX = f"tr{os.getpid() % 10000}"
PORT = free_port()  # any free port: the ranks listen only inside this test's own lab namespaces
SECRET = "trust-lab-secret"

CLIENT = textwrap.dedent(
    """
    import json, os, socket, sys, threading
    from boltring.data import _core
    from boltring.control import handshake
    from boltring.data.channel import Channel
    ip, port, secret, what, instance = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode(), sys.argv[4], sys.argv[5]

    def frame(kind, payload, dtype=0, seq=0):
        return _core.encode_header(kind, dtype, seq, len(payload)) + payload

    def frames(data):
        out = []
        while len(data) >= 32:
            kind, _, _, _, length, _ = _core.decode_header(data[:32])
            out.append([_core.KIND_NAMES[kind], data[32:32 + length].decode(errors="replace")])
            data = data[32 + length:]
        return out

    def read_all(s):
        s.settimeout(5)
        buf = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    return buf, "eof"
                buf += b
        except socket.timeout:
            return buf, "timeout"
        except ConnectionResetError:
            return buf, "reset"

    out = {}
    if what == "replay":
        # 1. a legitimate dialer (it holds the secret) through a relay that records its bytes
        relay = socket.socket()
        relay.bind(("127.0.0.1", 0))
        relay.listen(1)
        recorded = bytearray()

        def pump(src, dst, rec):
            try:
                while True:
                    b = src.recv(65536)
                    if not b:
                        break
                    if rec is not None:
                        rec += b
                    dst.sendall(b)
            except OSError:
                pass
            finally:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        def serve():
            c, _ = relay.accept()
            up = socket.create_connection((ip, port), timeout=5)
            threading.Thread(target=pump, args=(up, c, None), daemon=True).start()
            pump(c, up, recorded)

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        chan = Channel.connect(f"127.0.0.1:{relay.getsockname()[1]}", timeout=5)
        reply = handshake.dial(chan, {"world": 2, "src": 1, "dst": 0, "role": "probe", "instance": instance},
                               secret, 5)
        chan.close(goodbye=False)
        t.join(5)
        out["recorded"] = frames(bytes(recorded))
        out["first_nonce"] = reply.get("nonce")
        # 2. the same bytes again, on a new connection
        s = socket.create_connection((ip, port), timeout=5)
        s.sendall(bytes(recorded))
        data, out["end"] = read_all(s)
        out["replayed"] = frames(data)
    elif what == "skip-auth":
        s = socket.create_connection((ip, port), timeout=5)
        hello = {"world": 2, "src": 1, "dst": 0, "role": "data", "epoch": 99, "stripe": 0, "stripes": 1,
                 "send_seq": 0, "recv_seq": 0, "v": 1, "nonce": os.urandom(16).hex(), "auth": True,
                 "instance": instance}
        s.sendall(frame(_core.KIND_HELLO, json.dumps(hello).encode()))
        head = s.recv(32, socket.MSG_WAITALL)
        length = _core.decode_header(head)[4]
        out["hello_reply"] = json.loads(s.recv(length, socket.MSG_WAITALL))
        # no AUTH: a DATA frame as the rank's all_sum would take it
        s.sendall(frame(_core.KIND_DATA, bytes(16384), dtype=11))
        data, out["end"] = read_all(s)
        out["after"] = frames(data)
    print(json.dumps(out), flush=True)
    """
)


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    """A 2-rank group with a secret, formed from exo-style hostfiles, running a checked
    all_sum loop; node 0 also has an interface (extra0) that reaches no neighbour."""
    tmp = tmp_path_factory.mktemp("trust")
    with Lab(nodes=2, prefix=PREFIX) as lab:
        netns.ip(lab.ns(0), "link", "add", "extra0", "type", "veth", "peer", "name", "extra1")
        netns.ip(lab.ns(0), "addr", "add", "10.77.0.1/24", "dev", "extra0")
        netns.ip(lab.ns(0), "link", "set", "extra0", "up")
        netns.ip(lab.ns(0), "link", "set", "extra1", "up")
        full = lab.hostfile(PORT)
        files = []
        for r in range(2):
            entries = [list(e) for e in full]
            entries[r] = [f"0.0.0.0:{PORT}"]
            files.append(tmp / f"hosts{r}.json")
            files[r].write_text(json.dumps(entries))
        opts = {"init": {"secret": SECRET}, "elems": 8192, "sleep_s": 0.005, "report_ops": 20,
                "seconds": 90, "log": "info"}
        ws = [Worker(lab, r, files[r], opts, tmp) for r in range(2)]
        try:
            formed = [w.wait_for(has("formed"), 30) for w in ws]
            for w in ws:
                w.wait_for(on("thunderbolt0"), 15)
            yield lab, ws, formed
        finally:
            for w in ws:
                w.stop()
    assert lab_namespaces(PREFIX) == []


def client(lab: Lab, what: str, instance: str) -> dict:
    """Run the raw client in node 1; it claims to be rank 1 with rank 1's process id
    (sent in clear in every HELLO, so a stranger on the wire has it too)."""
    p = lab.python(1, CLIENT, lab.fast_addr(0), str(PORT), SECRET, what, instance, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    return json.loads(out)


def still_running(ws, seconds: float = 1.0) -> None:
    """Both ranks keep completing right all_sums, with no error."""
    marks = [w.wait_for(has("ops"), 5)["ops"] for w in ws]
    time.sleep(seconds)  # deliberate: the span they must keep running through
    for w, m in zip(ws, marks):
        w.wait_for(lambda x: x.get("ops", 0) > m + 20, 10)


def test_listeners_are_bound_to_each_interface_that_reaches_a_neighbour_and_nothing_else(group):
    lab, ws, formed = group
    assert formed[0]["authenticated"] is True and formed[1]["authenticated"] is True
    assert sorted(formed[0]["listening"]) == [f"100.64.0.1:{PORT} via tailscale0",
                                              f"192.168.4.1:{PORT} via thunderbolt0"]
    ss = netns.run(["ip", "netns", "exec", lab.ns(0), "ss", "-Hltn"]).stdout.split("\n")
    mine = sorted(line.split()[3] for line in ss if line.strip() and line.split()[3].endswith(f":{PORT}"))
    print(f"\nss -ltn in node 0: {mine}")
    # each bound to its device (ss shows addr%dev); none on extra0, lo, or 0.0.0.0
    assert mine == [f"100.64.0.1%tailscale0:{PORT}", f"192.168.4.1%thunderbolt0:{PORT}"]
    # rank 1 only dials (2 ranks: the higher rank dials), so it listens nowhere
    assert formed[1]["listening"] == []


def test_a_replayed_handshake_is_refused(group):
    lab, ws, formed = group
    out = client(lab, "replay", formed[1]["instance"])
    print(f"\nrecorded {[k for k, _ in out['recorded']]}; replay answered "
          f"{[(k, p[:60]) for k, p in out['replayed']]} then {out['end']}")
    assert [k for k, _ in out["recorded"]] == ["HELLO", "AUTH"]
    kinds = [k for k, _ in out["replayed"]]
    assert kinds == ["HELLO", "AUTH"], out
    fresh = json.loads(out["replayed"][0][1])["nonce"]
    assert fresh != out["first_nonce"]  # the acceptor's nonce is new for every connection
    assert json.loads(out["replayed"][1][1]) == {"ok": False}
    assert out["end"] in ("eof", "reset")
    still_running(ws)


def test_a_client_that_skips_auth_and_sends_data_is_cut_off(group):
    lab, ws, formed = group
    out = client(lab, "skip-auth", formed[1]["instance"])
    print(f"\nskip-auth: HELLO reply ok={out['hello_reply'].get('ok')}, then after DATA: {out['after']} "
          f"and {out['end']}")
    assert out["hello_reply"]["ok"] is True and "proof" in out["hello_reply"]
    assert out["after"] == [] and out["end"] in ("eof", "reset")
    still_running(ws)


def test_strangers_do_not_break_the_group_at_its_next_path_switch(group):
    lab, ws, formed = group
    # the acceptor's connections on thunderbolt0 are reset under it (ss -K): its data path
    # fails, and it waits for the dialer's new one, where a stranger's refusal must not
    # count (whether the wait reaches that check is a race: three rounds)
    for _ in range(3):
        client(lab, "replay", formed[1]["instance"])  # a failed proof on the rank's link
        killed = netns.run(["ip", "netns", "exec", lab.ns(0), "ss", "-K", "-tn", "dst", lab.fast_addr(1)])
        assert killed.stdout.count("ESTAB") >= 1, killed.stdout
        still_running(ws)
    assert "refused a connection" in ws[0].log.read_text()
