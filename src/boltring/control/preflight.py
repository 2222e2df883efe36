"""``boltring preflight``: measure every path to every ring neighbour before a job.

All ranks run it at once with the same hostfile.  Protocol (one pair of ring
neighbours; one dials, as in the group: ``hostfile.dials``):

* the accepting rank listens on its own hostfile addresses, each listener bound to
  its interface (``listening.wanted``, the group's rule);
* the dialing rank resolves the other's addresses into candidate paths
  (``paths.resolve``, ranked as the path policy ranks them) and dials every one,
  each socket bound to its interface, retrying a refused or silent connect until
  ``timeout`` (the peer may not be listening yet); each connection runs the
  handshake with role ``"preflight"``, so a cluster secret is honoured;
* over each connection the dialer then drives a few request/reply control
  messages (JSON in HELLO frames, every frame counted on both sides):
  ``plan`` (how long the acceptor should wait at most), ``ping`` (n PING/PONG
  round trips, timed in C), ``bulk`` (both sides send and receive n bytes at
  once, one full-duplex exchange: first 1 MiB to size the run, then up to
  ``bulk_bytes`` or what fits in ``seconds``), ``summary`` (every path's result,
  so both ranks print the same table) and ``bye``.

Paths are measured one after another, never two at once, so one path's bulk
transfer does not slow another's RTT.  Every wait is bounded: connects and the
handshake by ``timeout``, the pings of a path by ``timeout`` in all, a bulk
exchange by ``timeout + 2 * seconds``, and the acceptor's whole wait by the
budget the dialer announces (itself the sum of those bounds).

Verdict per neighbour: the path the group would use is the best-ranked one whose
median RTT is within ``max_rtt_ms``.  Failure when that is not a path of the
best kind, when no path is within the RTT limit, when no path works, or when the
path in use carries less than ``min_gbps`` each way.  ``run_preflight`` returns a
:class:`Report` (``exit_code`` 0 or 1); ``boltring preflight`` prints it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import select
import statistics
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from boltring.data import _core
from boltring.data import endpoint
from boltring.control import handshake
from boltring.control import interfaces
from boltring.control import listening
from boltring.control import memory
from boltring.data.channel import Channel, Listener
from boltring.errors import AuthError, BoltError, ConfigError, LinkDown, Timeout
from boltring.control import diagnosis
from boltring.control.hostfile import Address, Hostfile, dials, from_environment
from boltring.control.interfaces import Interface, LinkKind
from boltring.control.peerlink import resolve
from boltring.control.policy import Candidate, choose

log = logging.getLogger("boltring")

ROLE = "preflight"
MiB = 1 << 20
WARMUP_BYTES = 1 * MiB
MAX_BULK_BYTES = 1 << 30  # what an acceptor agrees to receive in one exchange
MAX_PINGS = 10_000
PING_BATCH = 5
MAX_BUDGET_S = 3600.0


@dataclass
class PathResult:
    """One path to a neighbour as measured.  ``iface`` is this rank's interface,
    ``peer_iface`` the neighbour's (known on the accepting side); ``remote`` is
    the address the dialer dialled (the accepting rank's)."""

    iface: str
    kind: str
    remote: str
    status: str  # ok, missing, down, off-subnet, unresolved, refused, timeout, unreachable, auth, error, not measured
    reason: str = ""
    peer_iface: str | None = None
    rtt_ms: float | None = None  # median
    rtt_min_ms: float | None = None
    rtt_max_ms: float | None = None
    pings: int = 0
    bulk_bytes: int = 0  # each way
    bulk_s: float | None = None
    mb_per_s: float | None = None  # each way, 1 MB = 10**6 bytes
    position: int = 0  # order of the path in the hostfile's entry (resolve order)

    @property
    def gbps(self) -> float | None:
        return None if self.mb_per_s is None else self.mb_per_s * 8 / 1000

    @property
    def label(self) -> str:
        return f"{self.iface or '(no interface)'} ({self.kind}) -> {self.remote}"


@dataclass
class PeerResult:
    peer: int
    role: str  # "dialer" (this rank dialled) or "acceptor"
    paths: list[PathResult]
    would_use: PathResult | None = None
    state: str = "down"  # primary, fallback, slow, down
    failures: list[str] = field(default_factory=list)


@dataclass
class Report:
    """What ``run_preflight`` measured, and the verdict."""

    rank: int
    world: int
    hostfile: str
    max_rtt_ms: float
    min_gbps: float | None
    authenticated: bool
    listening: list[str] = field(default_factory=list)
    peers: list[PeerResult] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "exit_code": self.exit_code, "rank": self.rank, "world": self.world,
            "hostfile": self.hostfile, "max_rtt_ms": self.max_rtt_ms, "min_gbps": self.min_gbps,
            "authenticated": self.authenticated, "listening": self.listening,
            "peers": [{"peer": p.peer, "role": p.role, "state": p.state, "failures": p.failures,
                       "would_use": _path_dict(p.would_use) if p.would_use else None,
                       "paths": [_path_dict(x) for x in p.paths]} for p in self.peers],
            "failures": self.failures,
        }

    def render(self) -> str:
        limits = f"RTT <= {self.max_rtt_ms:g} ms"
        if self.min_gbps is not None:
            limits += f", throughput >= {self.min_gbps:g} Gb/s each way"
        out = [f"boltring preflight: rank {self.rank} of {self.world}, hostfile {self.hostfile}; {limits}; "
               + ("authenticated" if self.authenticated else "unauthenticated (BOLTRING_SECRET not set)")]
        if self.listening:
            out.append("listening on: " + "; ".join(self.listening))
        for p in self.peers:
            who = "this rank dialled" if p.role == "dialer" else "it dialled this rank"
            out += ["", f"Peer {p.peer} ({who})"]
            rows = []
            for n, x in enumerate(p.paths, 1):
                path = x.label if x.peer_iface is None else f"{x.label} (peer via {x.peer_iface})"
                rtt = "-" if x.rtt_ms is None else (
                    f"{x.rtt_ms:.3f} ms ({x.rtt_min_ms:.3f}-{x.rtt_max_ms:.3f}, n={x.pings})")
                bulk = "-" if x.mb_per_s is None else (
                    f"{x.mb_per_s:,.0f} MB/s = {x.gbps:.2f} Gb/s ({x.bulk_bytes / MiB:g} MiB in {x.bulk_s:.3f} s)")
                rows.append([str(n), path, x.status, rtt, bulk, x.reason])
            out += diagnosis.table(["#", "PATH", "STATUS", "RTT median (min-max)", "THROUGHPUT each way", "NOTE"], rows)
            if p.would_use is not None:
                out.append(f"  would use: {p.would_use.label} [{p.state}]")
            else:
                out.append(f"  would use: nothing [{p.state}]")
        out.append("")
        if self.ok:
            out.append("PASS: every neighbour's path is within the limits.")
        else:
            out.append(f"FAIL ({len(self.failures)}):")
            out += [f"  {line}" for line in self.failures]
        return "\n".join(out)


def _path_dict(x: PathResult) -> dict[str, Any]:
    return {**asdict(x), "gbps": x.gbps}


# ------------------------------------------------------------------ verdict


def evaluate(peer: int, paths: list[PathResult], max_rtt_ms: float,
             min_gbps: float | None) -> tuple[PathResult | None, str, list[str]]:
    """(path the group would use, state, failures) for one neighbour's results."""
    if not paths:
        return None, "down", [f"peer {peer}: the hostfile gives no address for it"]
    primary = max(LinkKind.parse(x.kind) for x in paths)
    ok = [x for x in paths if x.status == "ok"]
    if not ok:
        why = "; ".join(f"{x.iface or x.remote}: {x.reason or x.status}" for x in paths)
        return None, "down", [f"peer {peer}: no path works: {why}"]
    healthy = [x for x in ok if x.rtt_ms is not None and x.rtt_ms <= max_rtt_ms]
    # the group's own rule (policy.choose): best kind first, hostfile order only breaks ties
    use = choose(healthy or ok, lambda x: LinkKind.parse(x.kind), lambda x: True, lambda x: x.position,
                 lambda x: False).use
    assert use is not None
    kind = LinkKind.parse(use.kind)
    better = [x for x in paths if LinkKind.parse(x.kind) > kind]
    failures: list[str] = []
    state = "primary" if kind == primary else "fallback"
    if better:
        why = "; ".join(
            f"{x.iface} RTT {x.rtt_ms:.2f} ms over {max_rtt_ms:g} ms" if x.status == "ok"
            else (x.reason or x.status) for x in better)
        failures.append(f"peer {peer}: would use {use.iface} ({use.kind}): {why}")
    if not healthy:
        state = "slow"
        failures.append(f"peer {peer}: no path within --max-rtt-ms {max_rtt_ms:g}: " + ", ".join(
            f"{x.iface} ({x.kind}) RTT {x.rtt_ms:.2f} ms" for x in ok))
    for x in paths:
        if x.status == "unresolved" and x not in better and x.position < use.position:
            failures.append(f"peer {peer}: {x.reason} (the hostfile lists {x.remote} first)")
    if min_gbps is not None and use.gbps is not None and use.gbps < min_gbps:
        failures.append(f"peer {peer}: {use.iface} ({use.kind}) carries {use.gbps:.2f} Gb/s each way, "
                        f"under --min-gbps {min_gbps:g}")
    return use, state, failures


# ------------------------------------------------------------------ messages


def _send(chan: Channel, msg: dict[str, Any], timeout: float) -> None:
    handshake.send_message(chan, _core.KIND_HELLO, msg, timeout)


def _recv(chan: Channel, timeout: float) -> dict[str, Any]:
    return handshake.recv_message(chan, _core.KIND_HELLO, timeout, handshake.MAX_MESSAGE * 8, "preflight",
                                  ConfigError)


def _request(chan: Channel, msg: dict[str, Any], timeout: float) -> dict[str, Any]:
    _send(chan, msg, timeout)
    reply = _recv(chan, timeout)
    if not reply.get("ok"):
        raise ConfigError(f"{chan.where}: the peer refused {msg.get('op')}: {reply.get('error')}")
    return reply


# ------------------------------------------------------------------ dialer


@dataclass
class _Settings:
    me: int
    world: int
    secret: bytes | None
    timeout: float
    seconds: float
    pings: int
    bulk_bytes: int

    @property
    def path_budget_s(self) -> float:
        """Upper bound of one path's measurement: pings, warm-up, bulk."""
        return 2 * self.timeout + 4 * self.seconds + 1.0


def _connect(c: Candidate, peer: int, st: _Settings, deadline: float) -> tuple[Channel | None, str, str]:
    """Dial one path until it answers the handshake or ``deadline``:
    (channel or None, status, reason)."""
    status, reason = "timeout", f"no answer within {st.timeout:g} s"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, status, reason
        chan: Channel | None = None
        try:
            chan = Channel.connect(c.remote, iface=c.iface, timeout=min(1.0, left))
            reply = handshake.dial(chan, {"world": st.world, "src": st.me, "dst": peer, "role": ROLE},
                                   st.secret, max(0.1, min(st.timeout, left)))
            if reply.get("role") != ROLE:
                raise ConfigError(f"{chan.where}: a running boltring group answered, not a preflight; "
                                  "run preflight before the job, or on other ports")
            if reply.get("rank") != peer or reply.get("world") != st.world:
                raise ConfigError(f"{chan.where}: expected rank {peer} of {st.world}, it is rank "
                                  f"{reply.get('rank')} of {reply.get('world')}; the hostfiles disagree")
            return chan, "ok", ""
        except AuthError as exc:
            _close(chan)
            return None, "auth", str(exc)
        except ConfigError as exc:
            _close(chan)
            return None, "error", str(exc)
        except LinkDown as exc:
            _close(chan)
            if exc.code == _core.ENOIF:
                return None, "missing", f"{c.iface} is missing"
            if exc.errno == errno.ECONNREFUSED:
                status, reason = "refused", (f"the peer host answers but no preflight listens on "
                                             f"{c.remote} (is rank {peer} running preflight?)")
            else:
                status, reason = "unreachable", str(exc)
        except Timeout:
            _close(chan)
            status, reason = "timeout", f"no answer from {c.remote} via {c.iface} within {st.timeout:g} s"
        except (BoltError, OSError) as exc:
            _close(chan)
            status, reason = "error", f"{type(exc).__name__}: {exc}"
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def _close(chan: Channel | None) -> None:
    if chan is not None:
        chan.close(goodbye=False)


def _measure(chan: Channel, res: PathResult, st: _Settings, sbuf: memoryview, rbuf: memoryview) -> None:
    """Pings then bulk over one connected path; fills ``res``."""
    t_end = time.monotonic() + st.timeout
    rtts: list[float] = []
    while len(rtts) < st.pings and time.monotonic() < t_end:
        n = min(PING_BATCH, st.pings - len(rtts))
        _request(chan, {"op": "ping", "n": n}, st.timeout)
        for _ in range(n):
            rtts.append(chan.ping(max(0.01, min(st.timeout, t_end - time.monotonic()))) * 1000.0)
    res.pings = len(rtts)
    res.rtt_ms = statistics.median(rtts)
    res.rtt_min_ms, res.rtt_max_ms = min(rtts), max(rtts)
    # Grow the exchange from 1 MiB (which also opens TCP's window) until one takes
    # half of `seconds` or reaches `bulk_bytes`; the last one is the measurement.
    n = min(WARMUP_BYTES, st.bulk_bytes)
    spent = 0.0
    for _ in range(16):
        elapsed = _bulk(chan, sbuf[:n], rbuf[:n], st.timeout + 2 * st.seconds)
        spent += elapsed
        if n >= st.bulk_bytes or elapsed >= st.seconds / 2 or spent >= st.seconds:
            break
        want = max(2 * n, int(n / max(elapsed, 1e-6) * st.seconds / 2))
        n = min(st.bulk_bytes, want - want % MiB)
    res.bulk_bytes, res.bulk_s = n, elapsed
    res.mb_per_s = n / max(elapsed, 1e-9) / 1e6


def _bulk(chan: Channel, out: memoryview, into: memoryview, timeout: float) -> float:
    """One full-duplex exchange of len(out) bytes each way; its duration in s."""
    _request(chan, {"op": "bulk", "bytes": out.nbytes, "timeout_s": timeout}, timeout)
    t0 = time.perf_counter()
    chan.exchange(out, into, timeout=timeout)
    return time.perf_counter() - t0


def _local_rows(addresses: Sequence[Address], table: Sequence[Interface]) -> list[PathResult]:
    """A row per candidate path (ranked as the path policy ranks them), with what
    the local interface table already says: "not measured" when it can be dialled."""
    rows = []
    order = sorted(enumerate(resolve(addresses)), key=lambda item: -int(item[1].kind))
    for position, c in order:
        status, reason, _ = diagnosis.local_state(c, table)
        rows.append(PathResult(c.iface, str(c.kind), c.remote, status or "not measured", reason,
                               position=position))
    return rows


def _dial_peer(peer: int, hf: Hostfile, table: Sequence[Interface], st: _Settings) -> PeerResult:
    """Dial every path to ``peer`` (a neighbour this rank dials), measure each, send the summary."""
    results = _local_rows(hf.entries[peer], table)
    todo = [(i, Candidate(r.iface, LinkKind.parse(r.kind), r.remote))
            for i, r in enumerate(results) if r.status == "not measured"]
    deadline = time.monotonic() + st.timeout
    chans: dict[int, Channel] = {}
    if todo:
        with ThreadPoolExecutor(max_workers=len(todo), thread_name_prefix="boltring-preflight") as pool:
            futures = {i: pool.submit(_connect, c, peer, st, deadline) for i, c in todo}
            for i, fut in futures.items():
                chan, status, reason = fut.result()
                results[i].status, results[i].reason = status, reason
                if chan is not None:
                    chans[i] = chan
    try:
        budget = len(chans) * st.path_budget_s + st.timeout
        for i in sorted(chans):  # the plan goes over the first path that takes it
            try:
                _request(chans[i], {"op": "plan", "budget_s": budget, "paths": len(chans)}, st.timeout)
                break
            except (BoltError, OSError) as exc:
                results[i].status, results[i].reason = "error", f"failed after connecting: {exc}"
                _close(chans.pop(i))
        if chans:
            sbuf = memoryview(bytearray(st.bulk_bytes))
            rbuf = memoryview(bytearray(st.bulk_bytes))
            for i in sorted(chans):
                res = results[i]
                try:
                    _measure(chans[i], res, st, sbuf, rbuf)
                    res.status = "ok"
                    res.reason = ""
                except (BoltError, OSError) as exc:
                    res.status = "error"
                    res.reason = f"measuring failed: {type(exc).__name__}: {exc}"
                    log.warning("preflight: peer %d via %s: %s", peer, res.iface, res.reason)
                    _close(chans.pop(i))
            summary = {"op": "summary", "paths": [asdict(r) for r in results]}
            for i in sorted(chans):
                try:
                    _request(chans[i], summary, st.timeout)
                    break
                except (BoltError, OSError) as exc:
                    log.warning("preflight: peer %d: summary via %s failed: %s", peer, results[i].iface, exc)
            for chan in chans.values():
                try:
                    _send(chan, {"op": "bye"}, 1.0)
                except (BoltError, OSError):
                    pass
    finally:
        for chan in chans.values():
            chan.close(goodbye=False)
    return PeerResult(peer, "dialer", results)


# ------------------------------------------------------------------ acceptor


@dataclass
class _Session:
    """What one dialing neighbour has told us so far."""

    deadline: float
    summary: list[dict[str, Any]] | None = None
    errors: list[str] = field(default_factory=list)
    connections: int = 0


class _Acceptor:
    """Listeners on this rank's addresses and the sessions of the neighbours that dial it."""

    def __init__(self, st: _Settings, dialers: list[int], wants: set[listening.Want]):
        self.st = st
        self.cv = threading.Condition()
        start = time.monotonic()
        # The dialer may start up to `timeout` later and then try for `timeout`.
        self.sessions = {p: _Session(deadline=start + 2 * st.timeout + 1.0) for p in dialers}
        self.listeners: list[Listener] = []
        self.errors: list[str] = []
        for ip, port, iface in sorted(wants):
            addr = endpoint.format(ip, port)
            try:
                self.listeners.append(Listener(addr, iface=iface))
                log.debug("preflight: rank %d listening on %s bound to %s", st.me, addr, iface)
            except BoltError as exc:
                self.errors.append(f"cannot listen on {addr} bound to {iface}: {exc} "
                                   "(is a group or another preflight using this port?)")
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._chans: set[Channel] = set()
        self._thread = threading.Thread(target=self._loop, name=f"boltring-preflight-accept-{st.me}",
                                        daemon=True)
        self._thread.start()

    def listening(self) -> list[str]:
        return [f"{x.endpoint} bound to {x.iface}" for x in self.listeners]

    def _loop(self) -> None:
        fds = {x.fileno(): x for x in self.listeners}
        while not self._stop.is_set() and fds:
            try:
                ready, _, _ = select.select(list(fds), [], [], 0.1)
            except (OSError, ValueError):
                return
            for fd in ready:
                try:
                    chan = fds[fd].accept(timeout=0)
                except BoltError:
                    continue
                t = threading.Thread(target=self._serve, args=(chan,), daemon=True,
                                     name=f"boltring-preflight-serve-{self.st.me}")
                with self.cv:
                    self._chans.add(chan)
                    self._threads.append(t)
                t.start()

    def _check(self, hello: dict[str, Any]) -> dict[str, Any]:
        src, dst = hello.get("src"), hello.get("dst")
        if hello.get("role") != ROLE:
            raise handshake.NotReady(f"rank {self.st.me} is running boltring preflight, not a group "
                              f"(got role {hello.get('role')!r})")
        if dst != self.st.me:
            raise ConfigError(f"this is rank {self.st.me}, not rank {dst}")
        if hello.get("world") != self.st.world:
            raise ConfigError(f"world size {hello.get('world')} from rank {src}, but this rank's "
                              f"hostfile has {self.st.world}")
        if src not in self.sessions:
            raise ConfigError(f"rank {src} is not a neighbour that dials rank {self.st.me}")
        return {"rank": self.st.me, "world": self.st.world, "role": ROLE}

    def _serve(self, chan: Channel) -> None:
        """One connection from a dialing neighbour: answer its requests until bye."""
        st = self.st
        src: list[Any] = []

        def check(hello: dict[str, Any]) -> dict[str, Any]:
            src.append(hello.get("src"))
            return self._check(hello)

        try:
            hello = handshake.accept(chan, check, st.secret, st.timeout)
        except (AuthError, ConfigError) as exc:
            log.warning("preflight: rank %d refused %s: %s", st.me, chan.where, exc)
            with self.cv:
                sess_of = self.sessions.get(src[0]) if src and isinstance(src[0], int) else None
                (sess_of.errors if sess_of else self.errors).append(f"refused a connection: {exc}")
                self.cv.notify_all()
            chan.close(goodbye=False)
            return
        except (BoltError, OSError) as exc:
            log.debug("preflight: handshake with %s failed: %s", chan.where, exc)
            chan.close(goodbye=False)
            return
        peer = int(hello["src"])
        sess = self.sessions[peer]
        with self.cv:
            sess.connections += 1
        rbuf: bytearray | None = None
        sbuf: bytearray | None = None
        try:
            while not self._stop.is_set():
                left = sess.deadline - time.monotonic()
                if left <= 0:
                    break
                msg = _recv(chan, left)
                op = msg.get("op")
                if op == "bye":
                    break
                if op == "plan":
                    budget = float(msg.get("budget_s", 0))
                    with self.cv:
                        sess.deadline = time.monotonic() + min(max(budget, 0.0), MAX_BUDGET_S) + st.timeout
                    _send(chan, {"ok": True}, st.timeout)
                elif op == "ping":
                    n = int(msg.get("n", 0))
                    if not 0 <= n <= MAX_PINGS:
                        _send(chan, {"ok": False, "error": f"{n} pings is out of range"}, st.timeout)
                        break
                    _send(chan, {"ok": True}, st.timeout)
                    for _ in range(n):
                        wait = max(0.01, sess.deadline - time.monotonic())
                        chan.recv_control(_core.KIND_PING, 64, timeout=wait)
                        chan.send_control(_core.KIND_PONG, b"", timeout=st.timeout)
                elif op == "bulk":
                    n = int(msg.get("bytes", 0))
                    wait = min(float(msg.get("timeout_s", st.timeout)), max(0.01, sess.deadline - time.monotonic()))
                    if not 0 < n <= MAX_BULK_BYTES:
                        _send(chan, {"ok": False, "error": f"{n} bytes is out of range"}, st.timeout)
                        break
                    if rbuf is None or len(rbuf) < n:
                        rbuf, sbuf = bytearray(n), bytearray(n)
                    assert sbuf is not None
                    _send(chan, {"ok": True}, st.timeout)
                    chan.exchange(memoryview(sbuf)[:n], memoryview(rbuf)[:n], timeout=wait)
                elif op == "summary":
                    paths = msg.get("paths")
                    _send(chan, {"ok": isinstance(paths, list), "error": "no paths"}, st.timeout)
                    if isinstance(paths, list):
                        with self.cv:
                            sess.summary = [p for p in paths if isinstance(p, dict)]
                            self.cv.notify_all()
                else:
                    _send(chan, {"ok": False, "error": f"unknown op {op!r}"}, st.timeout)
                    break
        except (BoltError, OSError, ValueError, TypeError) as exc:
            if not self._stop.is_set():
                log.debug("preflight: connection %s ended: %s", chan.where, exc)
                with self.cv:
                    sess.errors.append(f"{chan.iface}: {type(exc).__name__}: {exc}")
        finally:
            with self.cv:
                self._chans.discard(chan)
            chan.close(goodbye=False)

    def wait(self, peer: int) -> _Session:
        """Until ``peer``'s summary arrives or its deadline passes."""
        sess = self.sessions[peer]
        with self.cv:
            while sess.summary is None:
                left = sess.deadline - time.monotonic()
                if left <= 0:
                    break
                self.cv.wait(min(left, 0.2))
        return sess

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self.cv:
            chans, threads = list(self._chans), list(self._threads)
        for chan in chans:
            chan.shutdown()
        for t in threads:
            t.join(timeout=5)
        for x in self.listeners:
            x.close()


def _accepted_peer(peer: int, hf: Hostfile, table: Sequence[Interface], acc: _Acceptor) -> PeerResult:
    """The accepting side's view of ``peer``: its summary, or what is known locally."""
    sess = acc.wait(peer)
    own = {str(x.ip).split("%", 1)[0]: i.name for i in table for x in i.addresses}
    present = {i.name for i in table}
    if sess.summary is not None:
        paths = []
        for d in sess.summary:
            try:
                res = PathResult(**{k: d[k] for k in PathResult.__dataclass_fields__ if k in d})
                ip = endpoint.parse(res.remote)[0]
            except (TypeError, ConfigError):
                continue
            res.peer_iface = res.iface
            seen = memory.recall(ip)
            res.iface = own.get(ip) or (seen[0] if seen else "?")
            if res.iface not in present and res.status != "ok":
                here = f"{res.iface} is missing here" if seen else f"no interface here holds {ip}"
                res.reason = f"{here} (the peer saw: {res.reason or res.status})"
            paths.append(res)
        return PeerResult(peer, "acceptor", paths)
    # No summary: show this rank's own view of the paths, and say why nothing came.
    out = PeerResult(peer, "acceptor", _local_rows(hf.entries[peer], table))
    refused = [e for e in sess.errors if e.startswith("refused")]
    if refused and not sess.connections:
        out.failures.append(f"peer {peer}: every connection from it was {refused[-1]}")
        return out
    what = (f"{sess.connections} connection(s) from it, but no summary" if sess.connections
            else "no preflight connection from it")
    errors = "; ".join(sess.errors[-2:] + acc.errors[-2:])
    out.failures.append(f"peer {peer}: {what} within the deadline (is it running `boltring preflight` "
                        f"with this hostfile, and can it reach this rank's addresses?)"
                        + (f": {errors}" if errors else ""))
    return out


# ------------------------------------------------------------------ entry


def run_preflight(hostfile: str | os.PathLike[str] | Hostfile | None = None, rank: int | None = None, *,
                  max_rtt_ms: float = 5.0, min_gbps: float | None = None, seconds: float = 2.0,
                  timeout: float = 10.0, pings: int = 20, bulk_bytes: int = 64 * MiB,
                  secret: str | bytes | None = None) -> Report:
    """Measure RTT and throughput over every candidate path to each ring neighbour.

    Every rank of the hostfile must run it at the same time.  ``hostfile``/``rank``
    default to MLX_HOSTFILE/MLX_RANK; ``secret`` to BOLTRING_SECRET.  Raises
    ConfigError for a bad hostfile, rank or argument; returns a :class:`Report`
    whose ``exit_code`` is 1 when a neighbour fails the limits.
    """
    if isinstance(hostfile, Hostfile):
        if rank is None:
            raise ConfigError("rank= is needed with a Hostfile object")
        hf = hostfile
        hf.check_rank(rank)
    else:
        hf, rank = from_environment(hostfile, rank)
    if not (timeout > 0 and seconds > 0 and 1 <= pings <= MAX_PINGS and 0 < bulk_bytes <= MAX_BULK_BYTES):
        raise ConfigError("preflight needs timeout > 0, seconds > 0, 1 <= pings <= "
                          f"{MAX_PINGS} and 0 < bulk bytes <= {MAX_BULK_BYTES}")
    st = _Settings(rank, hf.size, handshake.secret_from(secret), timeout, seconds, pings, bulk_bytes)
    table = interfaces.interfaces()
    memory.remember(table)
    neighbours = hf.neighbours(rank)
    dial_to = [p for p in neighbours if dials(rank, p, hf.size)]
    accept_from = [p for p in neighbours if not dials(rank, p, hf.size)]
    report = Report(rank, hf.size, hf.source, max_rtt_ms, min_gbps, st.secret is not None)
    acc: _Acceptor | None = None
    if accept_from:
        peer_ips = [a.ip for p in accept_from for a in hf.entries[p] if not a.wildcard]
        acc = _Acceptor(st, accept_from, listening.wanted(hf.entries[rank], peer_ips, table))
        report.listening = acc.listening()
        report.failures += [f"rank {rank}: {e}" for e in acc.errors]
        if not acc.listeners:
            report.failures.append(f"rank {rank}: listening on none of its hostfile addresses "
                                   f"({', '.join(str(a) for a in hf.entries[rank])}); neighbours "
                                   f"{accept_from} cannot reach it")
    try:
        with ThreadPoolExecutor(max_workers=max(1, len(dial_to)), thread_name_prefix="boltring-dial") as pool:
            dialing = {p: pool.submit(_dial_peer, p, hf, table, st) for p in dial_to}
            results = {p: _accepted_peer(p, hf, table, acc) for p in accept_from} if acc else {}
            results.update({p: f.result() for p, f in dialing.items()})
    finally:
        if acc is not None:
            acc.close()
    for p in neighbours:
        res = results[p]
        use, state, failures = evaluate(p, res.paths, max_rtt_ms, min_gbps)
        res.would_use, res.state = use, state
        if not res.failures:  # an acceptor that heard nothing has its own reason
            res.failures = failures
        report.peers.append(res)
        report.failures += res.failures
    return report


def main(hostfile: str | None, rank: int | None, *, as_json: bool = False, **kw: Any) -> int:
    """``boltring preflight``: run, print the table (or JSON), return the exit code."""
    report = run_preflight(hostfile, rank, **kw)
    print(json.dumps(report.to_dict(), indent=1) if as_json else report.render(), flush=True)
    return report.exit_code
