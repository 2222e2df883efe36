"""The path policy, driven through random link events with a fake clock."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from boltring.control.interfaces import LinkKind
from boltring.control.policy import Candidate, PathPolicy

TB = Candidate("thunderbolt0", LinkKind.THUNDERBOLT, "192.168.4.2:5000")
TB2 = Candidate("thunderbolt1", LinkKind.THUNDERBOLT, "192.168.5.2:5000")
TS = Candidate("tailscale0", LinkKind.VPN, "100.64.0.2:5000")


def policy(**kw) -> PathPolicy:
    return PathPolicy([TS, TB], k=3, max_rtt_ms=5.0, prefer_wait_s=3.0, **kw)


def test_the_primary_is_taken_as_soon_as_it_answers():
    p = policy()
    p.probe(TS, 40.0)
    assert p.decide(0.1) is None  # the fallback waits for prefer_wait_s
    p.probe(TB, 0.2)
    d = p.decide(0.2)
    assert d.new == TB and d.kind == "initial"


def test_the_fallback_is_taken_after_prefer_wait_naming_the_missing_interface():
    p = policy()
    p.failed(TB, "interface thunderbolt0 is missing")
    p.probe(TS, 40.0)  # slow, but a fallback is judged by answering, not by the primary's limit
    assert p.decide(2.9) is None
    d = p.decide(3.0)
    assert d.new == TS and d.kind == "fallback"
    assert "thunderbolt0" in d.reason and "missing" in d.reason


def test_fallback_never_keeps_to_the_primary():
    p = policy(fallback="never")
    p.failed(TB, "missing")
    p.probe(TS, 0.5)
    assert p.decide(10.0) is None
    assert p.active is None


def test_an_explicit_failure_demotes_at_once():
    p = policy()
    p.probe(TB, 0.2), p.probe(TS, 0.5)
    p.decide(0.0)
    p.failed(TB, "I/O error")
    d = p.decide(0.5)
    assert d.old == TB and d.new == TS and d.kind == "fallback"


def test_slow_probes_demote_after_k_in_a_row_and_healthy_ones_promote_back():
    p = policy()
    p.probe(TB, 0.2), p.probe(TS, 1.0)
    p.decide(0.0)
    for i in range(2):
        p.probe(TB, 9.0)
        assert p.decide(1.0 + i) is None
    p.probe(TB, 9.0)
    assert p.decide(4.0).new == TS
    for i in range(2):
        p.probe(TB, 0.3)
        assert p.decide(5.0 + i) is None
    p.probe(TB, 0.3)
    d = p.decide(8.0)
    assert d.new == TB and d.kind == "promote"


def test_rtt_hovering_at_the_threshold_does_not_flap():
    p = policy()
    p.probe(TB, 0.2), p.probe(TS, 1.0)
    p.decide(0.0)
    switches = 0
    for i, rtt in enumerate([4.9, 5.1, 4.7, 5.2, 4.6, 5.05] * 20):
        p.probe(TB, rtt)
        switches += p.decide(float(i)) is not None
    assert switches == 0


def test_stripes_are_the_healthy_paths_of_the_active_kind():
    p = PathPolicy([TB, TB2, TS])
    for c in (TB, TB2, TS):
        p.probe(c, 0.3)
    p.decide(0.0)
    assert set(p.stripes()) == {TB, TB2}


def test_an_unknown_fallback_mode_is_rejected():
    with pytest.raises(ValueError):
        PathPolicy([TB], fallback="sometimes")


class PolicyMachine(RuleBasedStateMachine):
    """Random up/down/slow/fast events on a Thunderbolt and a VPN path."""

    @initialize(fallback=st.sampled_from(["allow", "never"]))
    def start(self, fallback):
        self.p = PathPolicy([TB, TS], k=3, max_rtt_ms=5.0, prefer_wait_s=3.0, fallback=fallback)
        self.now = 0.0
        self.tb_good_since: float | None = None  # start of TB's current run of good probes
        self.tb_good_count = 0
        self.switches = 0
        self.events = 0

    def _step(self, c: Candidate, rtt: float | None, reason: str = "down") -> None:
        self.now += 0.5
        if rtt is None:
            self.p.failed(c, reason)
        else:
            self.p.probe(c, rtt)
        if c == TB:
            good = rtt is not None and rtt <= 4.0
            self.tb_good_count = self.tb_good_count + 1 if good else 0
        before = self.p.active
        d = self.p.decide(self.now)
        if d is not None:
            self.events += 1
            assert d.old == before and d.new == self.p.active and d.reason
        if self.p.active != before:
            self.switches += 1

    @rule(rtt=st.floats(0.05, 4.0))
    def tb_fast(self, rtt):
        self._step(TB, rtt)

    @rule(rtt=st.floats(5.01, 80.0))
    def tb_slow(self, rtt):
        self._step(TB, rtt)

    @rule()
    def tb_down(self):
        self._step(TB, None, "thunderbolt0 is missing")

    @rule(rtt=st.floats(0.05, 80.0))
    def ts_probe(self, rtt):
        self._step(TS, rtt)

    @rule()
    def ts_down(self):
        self._step(TS, None, "tailscale0 is missing")

    @invariant()
    def every_switch_has_an_event(self):
        assert self.switches == self.events

    @invariant()
    def never_switches_when_fallback_is_never(self):
        if self.p.fallback == "never":
            assert self.p.active in (None, TB)

    @invariant()
    def never_on_a_worse_path_while_the_better_one_has_been_good_for_k_probes(self):
        if self.tb_good_count >= self.p.k and self.now - self.p.started >= 0:
            assert self.p.active == TB

    @invariant()
    def never_on_an_unhealthy_path(self):
        if self.p.active is not None:
            assert self.p.health[self.p.active].healthy


TestPolicyMachine = PolicyMachine.TestCase
TestPolicyMachine.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


# ---- startup: coming paths, unreached addresses, promotion hold (issue 11) ----------

UNREACHED = Candidate("", LinkKind.OTHER, "192.168.4.2:5000")
WIFI = Candidate("wifi0", LinkKind.OTHER, "169.254.8.2:5000")
TB_TWIN = Candidate("thunderbolt0", LinkKind.THUNDERBOLT, "169.254.8.2:5000")


def test_a_coming_thunderbolt_path_is_waited_for_and_forming_without_it_is_a_fallback():
    p = PathPolicy([WIFI, TB_TWIN], k=3, prefer_wait_s=3.0)  # hostfile order: the twin first
    p.failed(TB_TWIN, "thunderbolt0 has no carrier yet")
    p.probe(WIFI, 0.3)
    assert p.decide(1.0) is None  # hostfile order never outranks kind: it waits
    d = p.decide(3.0)
    assert d.kind == "fallback" and d.new == WIFI and "thunderbolt0 has no carrier yet" in d.reason


def test_an_unreached_address_listed_first_blocks_an_initial_on_a_later_one():
    p = PathPolicy([UNREACHED, TS], k=3, prefer_wait_s=3.0)
    p.failed(UNREACHED, "no local interface reaches 192.168.4.2:5000 directly")
    p.probe(TS, 1.0)
    assert p.decide(1.0) is None
    d = p.decide(3.1)
    assert d.kind == "fallback" and "192.168.4.2" in d.reason
    # once an interface is found for that address, the stale unresolved one blocks nothing
    q = PathPolicy([UNREACHED, TS], k=3, prefer_wait_s=3.0)
    found = Candidate("thunderbolt0", LinkKind.THUNDERBOLT, UNREACHED.remote)
    q.add(found)
    q.probe(found, 0.2)
    d = q.decide(0.5)
    assert d.kind == "initial" and d.new == found


def test_a_path_that_lost_the_active_role_waits_a_doubling_hold_before_promotion():
    p = policy()
    p.probe(TB, 0.2, 0.0), p.probe(TS, 1.0, 0.0)
    assert p.decide(0.0).new == TB
    p.failed(TB, "I/O error")
    assert p.decide(0.1).new == TS
    for t in (0.2, 0.3, 0.4):
        p.probe(TB, 0.2, t)
    assert p.decide(0.45) is None  # 3 healthy probes, but held 1 s after its first loss
    p.probe(TB, 0.2, 1.3)
    d = p.decide(1.3)
    assert d is not None and d.kind == "promote" and d.new == TB
