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

The acceptor accepts through the rendezvous's accept loop
(``rendezvous.accept_loop``) and answers each request op with its own handler
(``_Conn.HANDLERS``).

Verdict per neighbour (``diagnosis.judge`` with :class:`diagnosis.Limits`, the
group's own ``policy.choose``): the path the group would use is the best-ranked
one whose median RTT is within ``max_rtt_ms``.  Failure when that is not a path
of the best kind, when no path is within the RTT limit, when no path works, or
when the path in use carries less than ``min_gbps`` each way.  ``run_preflight``
returns a :class:`diagnosis.Report` (``exit_code`` 0 or 1); ``boltring
preflight`` (``tools/preflight.py``) prints it.
"""

from __future__ import annotations

import errno
import logging
import os
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from boltring.data import _core
from boltring.data import endpoint
from boltring.control import diagnosis
from boltring.control import handshake
from boltring.control import interfaces
from boltring.control import listening
from boltring.control import memory
from boltring.control import messages
from boltring.control import rendezvous
from boltring.control.diagnosis import Limits, Path, Peer, Report
from boltring.control.hostfile import Hostfile, dials, from_environment
from boltring.control.interfaces import Interface
from boltring.control.messages import (MAX_BULK_BYTES, MAX_PINGS, Hello, HelloReply, Message, PathSummary,
                                       PreflightReply)
from boltring.control.peerlink import resolve
from boltring.control.policy import Candidate
from boltring.data.channel import Channel, Listener
from boltring.errors import AuthError, BoltError, ConfigError, LinkDown, ProtocolError, Timeout

log = logging.getLogger("boltring")

ROLE = "preflight"
MiB = 1 << 20
WARMUP_BYTES = 1 * MiB
PING_BATCH = 5
MAX_BUDGET_S = 3600.0
NOT_MEASURED = "not measured"
MAX_REQUEST = handshake.MAX_MESSAGE * 8  # a summary of many paths

__all__ = ["MAX_BULK_BYTES", "MAX_PINGS", "Report", "evaluate", "run_preflight"]


def evaluate(peer: int, paths: list[Path], max_rtt_ms: float,
             min_gbps: float | None) -> tuple[Path | None, str, list[str]]:
    """(path the group would use, state, failures) for one neighbour's results:
    ``diagnosis.judge`` with the limits."""
    v = diagnosis.judge(peer, paths, Limits(max_rtt_ms, min_gbps))
    return v.use, v.state, v.problems


# ------------------------------------------------------------------ messages


def _send(chan: Channel, msg: Message, timeout: float) -> None:
    handshake.send(chan, _core.KIND_HELLO, msg, timeout)


def _request(chan: Channel, msg: messages.Request, timeout: float) -> PreflightReply:
    _send(chan, msg, timeout)
    reply = handshake.receive(chan, _core.KIND_HELLO, PreflightReply, timeout)
    if not reply.ok:
        raise ConfigError(f"{chan.where}: the peer refused {msg.op}: {reply.error}")
    return reply


def _summary(results: Sequence[Path]) -> messages.Summary:
    """Every path's result as the dialer sends it (reasons clipped to what the peer reads)."""
    paths = []
    for r in results:
        d = r.to_dict(measured=True)
        d["reason"] = messages.clip(d["reason"])
        paths.append(PathSummary.from_wire({k: v for k, v in d.items() if v is not None}))
    return messages.Summary.of(paths=tuple(paths))


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
            if reply.role != ROLE:
                raise ConfigError(f"{chan.where}: a running boltring group answered, not a preflight; "
                                  "run preflight before the job, or on other ports")
            if reply.rank != peer or reply.world != st.world:
                raise ConfigError(f"{chan.where}: expected rank {peer} of {st.world}, it is rank "
                                  f"{reply.rank} of {reply.world}; the hostfiles disagree")
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


def _measure(chan: Channel, res: Path, st: _Settings, sbuf: memoryview, rbuf: memoryview) -> None:
    """Pings then bulk over one connected path; fills ``res``."""
    t_end = time.monotonic() + st.timeout
    rtts: list[float] = []
    while len(rtts) < st.pings and time.monotonic() < t_end:
        n = min(PING_BATCH, st.pings - len(rtts))
        _request(chan, messages.Pings.of(n=n), st.timeout)
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
    _request(chan, messages.Bulk.of(bytes=out.nbytes, timeout_s=timeout), timeout)
    t0 = time.perf_counter()
    chan.exchange(out, into, timeout=timeout)
    return time.perf_counter() - t0


def _local_rows(peer: int, hf: Hostfile, table: Sequence[Interface]) -> list[Path]:
    """A row per candidate path to ``peer`` (ranked as the path policy ranks them),
    with what the local interface table already says: "not measured" when it can
    be dialled."""
    return diagnosis.local_paths(resolve(hf.entries[peer], list(table)), table, NOT_MEASURED)


def _dial_peer(peer: int, hf: Hostfile, table: Sequence[Interface], st: _Settings) -> Peer:
    """Dial every path to ``peer`` (a neighbour this rank dials), measure each, send the summary."""
    results = _local_rows(peer, hf, table)
    todo = [(i, r.candidate()) for i, r in enumerate(results) if r.status == NOT_MEASURED]
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
        _plan(peer, chans, results, st)
        if chans:
            _measure_all(peer, chans, results, st)
            _tell(peer, chans, results, st)
    finally:
        for chan in chans.values():
            chan.close(goodbye=False)
    return Peer(peer, "dialer", results)


def _plan(peer: int, chans: dict[int, Channel], results: list[Path], st: _Settings) -> None:
    """Announce the acceptor's budget, over the first path that takes it."""
    budget = len(chans) * st.path_budget_s + st.timeout
    for i in sorted(chans):
        try:
            _request(chans[i], messages.Plan.of(budget_s=budget, paths=len(chans)), st.timeout)
            return
        except (BoltError, OSError) as exc:
            results[i].status, results[i].reason = "error", f"failed after connecting: {exc}"
            _close(chans.pop(i))


def _measure_all(peer: int, chans: dict[int, Channel], results: list[Path], st: _Settings) -> None:
    """Measure the connected paths one after another (never two at once)."""
    sbuf = memoryview(bytearray(st.bulk_bytes))
    rbuf = memoryview(bytearray(st.bulk_bytes))
    for i in sorted(chans):
        res = results[i]
        try:
            _measure(chans[i], res, st, sbuf, rbuf)
            res.status, res.reason = diagnosis.MEASURED, ""
        except (BoltError, OSError) as exc:
            res.status = "error"
            res.reason = f"measuring failed: {type(exc).__name__}: {exc}"
            log.warning("preflight: peer %d via %s: %s", peer, res.iface, res.reason)
            _close(chans.pop(i))


def _tell(peer: int, chans: dict[int, Channel], results: list[Path], st: _Settings) -> None:
    """Send every path's result (so both ranks print the same table), then bye on each."""
    summary = _summary(results)
    for i in sorted(chans):
        try:
            _request(chans[i], summary, st.timeout)
            break
        except (BoltError, OSError) as exc:
            log.warning("preflight: peer %d: summary via %s failed: %s", peer, results[i].iface, exc)
    for chan in chans.values():
        try:
            _send(chan, messages.Bye.of(), 1.0)
        except (BoltError, OSError):
            pass


# ------------------------------------------------------------------ acceptor


@dataclass
class _Session:
    """What one dialing neighbour has told us so far."""

    deadline: float
    summary: list[dict[str, Any]] | None = None
    errors: list[str] = field(default_factory=list)
    connections: int = 0


class _Conn:
    """One connection from a dialing neighbour, past the handshake: its requests
    (``messages.read_request``), each answered by the handler of its op
    (``HANDLERS``), until bye."""

    def __init__(self, acc: _Acceptor, chan: Channel, sess: _Session):
        self.acc, self.chan, self.sess, self.st = acc, chan, sess, acc.st
        self.rbuf: bytearray | None = None
        self.sbuf: bytearray | None = None

    def serve(self) -> None:
        while not self.acc.stopped:
            left = self.sess.deadline - time.monotonic()
            if left <= 0:
                return
            obj = handshake.recv_message(self.chan, _core.KIND_HELLO, left, MAX_REQUEST, "preflight")
            try:
                msg = messages.read_request(obj)
            except ProtocolError as exc:
                self._reply(False, messages.clip(str(exc)))
                raise
            if not self.HANDLERS[type(msg)](self, msg):
                return

    def _reply(self, ok: bool = True, error: str | None = None) -> None:
        _send(self.chan, PreflightReply(ok=ok, error=error), self.st.timeout)

    def _left(self) -> float:
        return max(0.01, self.sess.deadline - time.monotonic())

    # Each handler answers one request; False ends the connection.

    def plan(self, msg: messages.Plan) -> bool:
        with self.acc.cv:
            self.sess.deadline = time.monotonic() + min(msg.budget_s, MAX_BUDGET_S) + self.st.timeout
        self._reply()
        return True

    def ping(self, msg: messages.Pings) -> bool:
        self._reply()
        for _ in range(msg.n):
            self.chan.recv_control(_core.KIND_PING, 64, timeout=self._left())
            self.chan.send_control(_core.KIND_PONG, b"", timeout=self.st.timeout)
        return True

    def bulk(self, msg: messages.Bulk) -> bool:
        n = msg.bytes
        wait = min(msg.timeout_s if msg.timeout_s is not None else self.st.timeout, self._left())
        if self.rbuf is None or self.sbuf is None or len(self.rbuf) < n:
            self.rbuf, self.sbuf = bytearray(n), bytearray(n)
        self._reply()
        self.chan.exchange(memoryview(self.sbuf)[:n], memoryview(self.rbuf)[:n], timeout=wait)
        return True

    def summary(self, msg: messages.Summary) -> bool:
        self._reply()
        with self.acc.cv:
            self.sess.summary = [p.to_wire() for p in msg.paths]
            self.acc.cv.notify_all()
        return True

    def bye(self, msg: messages.Bye) -> bool:
        return False

    HANDLERS: dict[type[messages.Request], Callable[[_Conn, Any], bool]] = {
        messages.Plan: plan, messages.Pings: ping, messages.Bulk: bulk, messages.Summary: summary,
        messages.Bye: bye}


class _Acceptor:
    """Listeners on this rank's addresses (accepting through the rendezvous's
    accept loop) and the sessions of the neighbours that dial it."""

    def __init__(self, st: _Settings, dialers: list[int], wants: set[listening.Want]):
        self.st = st
        self.cv = threading.Condition()
        start = time.monotonic()
        # The dialer may start up to `timeout` later and then try for `timeout`.
        self.sessions = {p: _Session(deadline=start + 2 * st.timeout + 1.0) for p in dialers}
        self.listeners: list[Listener] = []
        self.errors: list[str] = []
        kinds = {i.name: str(i.kind) for i in interfaces.interfaces()}
        self.listen: list[dict[str, Any]] = []
        for ip, port, iface in sorted(wants):
            addr = endpoint.format(ip, port)
            try:
                self.listeners.append(Listener(addr, iface=iface))
                self.listen.append({"addr": self.listeners[-1].endpoint, "iface": iface,
                                    "kind": kinds.get(iface, "other")})
                log.debug("preflight: rank %d listening on %s bound to %s", st.me, addr, iface)
            except BoltError as exc:
                self.errors.append(f"cannot listen on {addr} bound to {iface}: {exc} "
                                   "(is a group or another preflight using this port?)")
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._chans: set[Channel] = set()
        self._thread = threading.Thread(
            target=rendezvous.accept_loop, daemon=True, name=f"boltring-preflight-accept-{st.me}",
            args=(self._stop, lambda: self.listeners, self._serve, f"boltring-preflight-serve-{st.me}"))
        self._thread.start()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _check(self, hello: Hello) -> HelloReply:
        if hello.role != ROLE:
            raise handshake.NotReady(f"rank {self.st.me} is running boltring preflight, not a group "
                                     f"(got role {hello.role!r})")
        if hello.dst != self.st.me:
            raise ConfigError(f"this is rank {self.st.me}, not rank {hello.dst}")
        if hello.world != self.st.world:
            raise ConfigError(f"world size {hello.world} from rank {hello.src}, but this rank's "
                              f"hostfile has {self.st.world}")
        if hello.src not in self.sessions:
            raise ConfigError(f"rank {hello.src} is not a neighbour that dials rank {self.st.me}")
        return HelloReply(ok=True, rank=self.st.me, world=self.st.world, role=ROLE)

    def _serve(self, chan: Channel) -> None:
        """One connection from a dialing neighbour (on its own thread): the
        handshake, then its requests until bye."""
        with self.cv:
            if self._stop.is_set():
                chan.close(goodbye=False)
                return
            self._chans.add(chan)
            self._threads.append(threading.current_thread())
        try:
            sess = self._admit(chan)
            if sess is not None:
                self._run(_Conn(self, chan, sess))
        finally:
            with self.cv:
                self._chans.discard(chan)
            chan.close(goodbye=False)

    def _admit(self, chan: Channel) -> _Session | None:
        """The handshake: the session of the neighbour it names, or None (refused)."""
        src: list[int] = []

        def check(hello: Hello) -> HelloReply:
            src.append(hello.src)
            return self._check(hello)

        try:
            hello = handshake.accept(chan, check, self.st.secret, self.st.timeout)
        except (AuthError, ConfigError) as exc:
            log.warning("preflight: rank %d refused %s: %s", self.st.me, chan.where, exc)
            with self.cv:
                sess_of = self.sessions.get(src[0]) if src else None
                (sess_of.errors if sess_of else self.errors).append(f"refused a connection: {exc}")
                self.cv.notify_all()
            return None
        except (BoltError, OSError) as exc:
            log.debug("preflight: handshake with %s failed: %s", chan.where, exc)
            return None
        sess = self.sessions[hello.src]
        with self.cv:
            sess.connections += 1
        return sess

    def _run(self, conn: _Conn) -> None:
        try:
            conn.serve()
        except (BoltError, OSError, ValueError, TypeError) as exc:
            if not self._stop.is_set():
                log.debug("preflight: connection %s ended: %s", conn.chan.where, exc)
                with self.cv:
                    conn.sess.errors.append(f"{conn.chan.iface}: {type(exc).__name__}: {exc}")

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


def _accepted_peer(peer: int, hf: Hostfile, table: Sequence[Interface], acc: _Acceptor) -> Peer:
    """The accepting side's view of ``peer``: its summary, or what is known locally."""
    sess = acc.wait(peer)
    if sess.summary is not None:
        return Peer(peer, "acceptor", _as_seen_here(sess.summary, table))
    # No summary: show this rank's own view of the paths, and say why nothing came.
    out = Peer(peer, "acceptor", _local_rows(peer, hf, table))
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


def _as_seen_here(summary: list[dict[str, Any]], table: Sequence[Interface]) -> list[Path]:
    """The dialer's results, each path named by this rank's own interface (the
    dialer's becomes ``peer_iface``)."""
    own = {str(x.ip).split("%", 1)[0]: i.name for i in table for x in i.addresses}
    present = {i.name for i in table}
    paths = []
    for d in summary:
        try:
            res = Path.from_dict(d)
            ip = endpoint.parse(res.remote)[0]
        except (TypeError, ConfigError):
            continue
        res.peer_iface = res.iface
        seen = memory.recall(ip)
        res.iface = own.get(ip) or (seen[0] if seen else "?")
        if res.iface not in present and res.status != diagnosis.MEASURED:
            here = f"{res.iface} is missing here" if seen else f"no interface here holds {ip}"
            res.reason = f"{here} (the peer saw: {res.reason or res.status})"
        paths.append(res)
    return paths


# ------------------------------------------------------------------ entry


def run_preflight(hostfile: str | os.PathLike[str] | Hostfile | None = None, rank: int | None = None, *,
                  max_rtt_ms: float = 5.0, min_gbps: float | None = None, seconds: float = 2.0,
                  timeout: float = 10.0, pings: int = 20, bulk_bytes: int = 64 * MiB,
                  secret: str | bytes | None = None) -> Report:
    """Measure RTT and throughput over every candidate path to each ring neighbour.

    Every rank of the hostfile must run it at the same time.  ``hostfile``/``rank``
    default to MLX_HOSTFILE/MLX_RANK; ``secret`` to BOLTRING_SECRET.  Raises
    ConfigError for a bad hostfile, rank or argument; returns a
    :class:`diagnosis.Report` whose ``exit_code`` is 1 when a neighbour fails the limits.
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
    acc = _listen(report, hf, table, st, accept_from) if accept_from else None
    try:
        with ThreadPoolExecutor(max_workers=max(1, len(dial_to)), thread_name_prefix="boltring-dial") as pool:
            dialing = {p: pool.submit(_dial_peer, p, hf, table, st) for p in dial_to}
            results = {p: _accepted_peer(p, hf, table, acc) for p in accept_from} if acc else {}
            results.update({p: f.result() for p, f in dialing.items()})
    finally:
        if acc is not None:
            acc.close()
    for p in neighbours:  # an acceptor that heard nothing keeps its own reason
        report.add(results[p].judge(report.limits, keep_problems=True))
    return report


def _listen(report: Report, hf: Hostfile, table: Sequence[Interface], st: _Settings,
            accept_from: list[int]) -> _Acceptor:
    """Open this rank's listeners for the neighbours that dial it; what fails goes in ``report``."""
    peer_ips = [a.ip for p in accept_from for a in hf.entries[p] if not a.wildcard]
    acc = _Acceptor(st, accept_from, listening.wanted(hf.entries[st.me], peer_ips, table))
    report.listen = acc.listen
    report.failures += [f"rank {st.me}: {e}" for e in acc.errors]
    if not acc.listeners:
        report.failures.append(f"rank {st.me}: listening on none of its hostfile addresses "
                               f"({', '.join(str(a) for a in hf.entries[st.me])}); neighbours "
                               f"{accept_from} cannot reach it")
    return acc
