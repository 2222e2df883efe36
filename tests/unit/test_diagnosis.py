"""The diagnosis module: one path model, one verdict (the policy's own choice), one renderer.

The property test feeds the same random path states to ``diagnosis.judge`` and to a
``PathPolicy`` (a path that proves itself is a probe that answered, any other an
explicit failure) and checks that both pick the same path, see the same primary
kind and the same blockers, and that a neighbour is degraded exactly when the
policy would form on a fallback.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from boltring.control import diagnosis
from boltring.control.diagnosis import Limits, Path, Peer, Report, judge
from boltring.control.interfaces import LinkKind
from boltring.control.policy import Candidate, PathPolicy

KINDS = [LinkKind.THUNDERBOLT, LinkKind.ETHERNET, LinkKind.WIFI, LinkKind.VPN, LinkKind.OTHER]
CHECKED = ["connected", "refused", "listening", "timeout", "missing", "down", "unreachable", "error"]
MEASURED = ["ok", "ok", "ok", "refused", "timeout", "missing", "auth", "error"]


@st.composite
def neighbour(draw: st.DrawFn, measured: bool) -> list[Path]:
    """Up to 4 hostfile addresses, each reached by 1-3 interfaces or by none (unresolved)."""
    paths: list[Path] = []
    for pos in range(draw(st.integers(1, 4))):
        remote = f"10.0.{pos}.1:5000"
        if draw(st.integers(0, 5)) == 0:
            paths.append(Path("", "other", remote, "unresolved", f"no interface here reaches 10.0.{pos}.1",
                              "none", pos))
            continue
        for n in range(draw(st.integers(1, 3))):
            kind = draw(st.sampled_from(KINDS))
            status = draw(st.sampled_from(MEASURED if measured else CHECKED))
            rtt = draw(st.floats(0.01, 50.0)) if status == "ok" else None
            paths.append(Path(f"if{pos}{n}", str(kind), remote, status, "" if status == "ok" else status, "live",
                              pos, rtt_ms=rtt, rtt_min_ms=rtt, rtt_max_ms=rtt))
    return sorted(paths, key=lambda p: -int(p.link_kind))  # as doctor and preflight list them


def policy_over(paths: list[Path], proves: Callable[[Path], bool]) -> tuple[PathPolicy, dict[Candidate, Path]]:
    """A PathPolicy fed the same states: a path that proves itself answered a probe.
    Its candidates come in hostfile order, as ``peerlink.resolve`` gives them."""
    by = {p.candidate(): p for p in sorted(paths, key=lambda p: p.position)}
    pol = PathPolicy(list(by), max_rtt_ms=float("inf"))
    for c, p in by.items():
        if proves(p):
            pol.probe(c, p.rtt_ms or 0.1, now=0.0)
        else:
            pol.failed(c, p.reason)
    return pol, by


def agree(paths: list[Path], limits: Limits | None) -> None:
    v = judge(1, paths, limits)
    slow = v.state == "slow"
    proves = diagnosis.verdict.usable(limits) if slow else diagnosis.verdict.within(limits)
    pol, by = policy_over(paths, proves)
    choice = pol.choice()
    assert (by[choice.use] if choice.use else None) is v.use
    assert choice.primary_kind == v.primary_kind
    assert [by[c] for c in choice.blockers] == list(v.blockers)
    assert pol.best_healthy() == (v.use.candidate() if v.use else None)
    if v.use is None:
        assert v.state == "down" and v.problems
        return
    assert v.state in (("slow",) if slow else ("primary", "fallback"))
    assert (v.state == "primary") == (v.use.link_kind == choice.primary_kind) or slow
    if limits is None or limits.min_gbps is None:
        # degraded exactly when the group would form on a fallback (or nothing is within the limit)
        assert bool(v.problems) == (choice.state == "fallback" or slow)


@settings(max_examples=300, deadline=None)
@given(neighbour(measured=False))
def test_a_checks_verdict_is_the_policys_choice(paths: list[Path]) -> None:
    agree(paths, None)


@settings(max_examples=300, deadline=None)
@given(neighbour(measured=True), st.sampled_from([0.5, 5.0, 20.0, 100.0]))
def test_a_measurements_verdict_is_the_policys_choice(paths: list[Path], max_rtt_ms: float) -> None:
    agree(paths, Limits(max_rtt_ms))


def test_no_address_is_down() -> None:
    v = judge(3, [])
    assert v.use is None and v.state == "down" and v.problems == ["peer 3: the hostfile gives no address for it"]


def test_one_renderer_for_checks_and_measurements() -> None:
    tb = Path("thunderbolt0", "thunderbolt", "192.168.4.2:5000", "refused", "the peer host answered", "live", 0,
              connect_ms=0.3)
    checked = Report(0, 2, "h.json", authenticated=True, interfaces=[])
    checked.add(Peer(1, "dialer", [tb]).judge())
    m = Path("thunderbolt0", "thunderbolt", "192.168.4.2:5000", "ok", "", "live", 0, rtt_ms=0.05, rtt_min_ms=0.04,
             rtt_max_ms=0.07, pings=20, bulk_bytes=64 << 20, bulk_s=0.1, mb_per_s=900.0)
    measured = Report(0, 2, "h.json", 5.0, None, True)
    measured.add(Peer(1, "dialer", [m]).judge(measured.limits))
    for r, word, verdict in ((checked, "problems", "OK: every neighbour"), (measured, "failures", "PASS:")):
        text = r.render()
        assert "Peer 1 (this rank dials it)" in text and verdict in text
        assert "would use: thunderbolt0 (thunderbolt) -> 192.168.4.2:5000 [primary]" in text
        data = json.loads(json.dumps(r.to_dict()))
        assert data["ok"] and data[word] == [] and data["peers"][0]["would_use"]["iface"] == "thunderbolt0"
    assert "0.30 ms" in checked.render() and "connect_ms" in checked.to_dict()["peers"][0]["paths"][0]
    assert "900 MB/s = 7.20 Gb/s" in measured.render()
    assert measured.to_dict()["peers"][0]["paths"][0]["gbps"] == 7.2
    assert Path.from_dict(m.to_dict(measured=True)).rtt_ms == 0.05
