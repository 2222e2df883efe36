"""The control messages (boltring.control.messages): every ``from_wire`` fed random
JSON values and mutated valid messages returns a message or raises ProtocolError
naming the message, never another exception; what it returns goes back on the wire
as it came (for the fields the class knows); and the wire form of what the code
sends is the one it always sent."""

from __future__ import annotations

import json
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boltring.control import messages
from boltring.control.messages import (MESSAGES, Advertised, AuthProof, AuthVerdict, Bulk, Bye, Hello, HelloReply,
                                       Message, Missing, PathSummary, Pings, Plan, PreflightReply, Summary,
                                       SwitchAck)
from boltring.errors import ProtocolError

pytestmark = pytest.mark.timeout(120)

NONCE = os.urandom(16).hex()

# one valid wire form per class, as the code sends it
VALID: dict[type[Message], dict] = {
    Hello: {"world": 2, "src": 1, "dst": 0, "role": "data", "instance": "0123456789abcdef", "epoch": 3,
            "stripe": 1, "stripes": 2, "why": "fallback", "reason": "thunderbolt0 is missing", "v": 1,
            "nonce": NONCE, "auth": True},
    HelloReply: {"rank": 0, "world": 2, "addrs": [{"addr": "10.0.0.1:5000", "iface": "tb0", "kind": "thunderbolt"}],
                 "missing": [{"addr": "10.0.1.1:5000", "iface": ""}], "ok": True, "v": 1, "nonce": NONCE,
                 "proof": "ab" * 32},
    Advertised: {"addr": "[fe80::1%tb0]:5000", "iface": "tb0", "kind": "thunderbolt"},
    Missing: {"addr": "10.0.1.1:5000", "iface": "en1"},
    AuthProof: {"proof": "cd" * 32},
    AuthVerdict: {"ok": False},
    SwitchAck: {"epoch": 7},
    # preflight's requests and replies (after a HELLO of role "preflight")
    Plan: {"op": "plan", "budget_s": 31.5, "paths": 2},
    Pings: {"op": "ping", "n": 5},
    Bulk: {"op": "bulk", "bytes": 1 << 20, "timeout_s": 14.0},
    PathSummary: {"iface": "tb0", "kind": "thunderbolt", "remote": "10.0.0.1:5000", "status": "ok", "reason": "",
                  "source": "live", "position": 0, "peer_iface": "tb1", "rtt_ms": 0.05, "rtt_min_ms": 0.04,
                  "rtt_max_ms": 0.07, "pings": 20, "bulk_bytes": 64 << 20, "bulk_s": 0.1, "mb_per_s": 900.0,
                  "gbps": 7.2},
    Summary: {"op": "summary", "paths": [{"iface": "tb0", "kind": "thunderbolt", "remote": "10.0.0.1:5000",
                                          "status": "ok", "rtt_ms": 0.05, "pings": 20},
                                         {"iface": "", "kind": "other", "remote": "10.0.1.1:5000",
                                          "status": "unresolved", "reason": "no interface here reaches it"}]},
    Bye: {"op": "bye"},
    PreflightReply: {"ok": False, "error": "unknown op 'x'"},
}
KEYS = sorted({k for v in VALID.values() for k in v} | {"send_seq", "error", "not_ready", "auth_failed", "role"})
KEYS += ["op"] * 4  # preflight's requests are told apart by their op

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40) | st.sampled_from(["00", "zz", NONCE, "", "x" * 5000, "probe", "data"]),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8),
                                                                inner, max_size=8),
    max_leaves=20,
)


def read(cls: type[Message], obj) -> Message | None:
    """`cls.from_wire(obj)`: a message of `cls`, or None for a ProtocolError naming it."""
    try:
        msg = cls.from_wire(obj)
    except ProtocolError as exc:
        assert cls.WHAT in str(exc) or "protocol version" in str(exc), exc
        return None
    assert isinstance(msg, cls)
    wire = msg.to_wire()
    assert cls.from_wire(json.loads(json.dumps(wire))) == msg  # what it read, it writes back
    assert wire == {k: v for k, v in obj.items() if k in wire}
    return msg


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cls=st.sampled_from(MESSAGES), obj=json_values)
def test_random_json_values_are_messages_or_protocol_errors(cls, obj):
    read(cls, obj)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cls=st.sampled_from(MESSAGES), data=st.data())
def test_valid_messages_with_one_field_replaced_are_messages_or_protocol_errors(cls, data):
    obj = dict(VALID[cls])
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(obj) + ["extra"]))
        if data.draw(st.booleans()):
            obj[key] = data.draw(json_values)
        else:
            obj.pop(key, None)
    read(cls, obj)


def _mutate(rng: random.Random, value):
    """A near-valid JSON value: ints pushed to edges, strings grown or changed, lists
    grown past their caps or emptied, types swapped."""
    if isinstance(value, dict):
        return {k: (_mutate(rng, v) if rng.random() < 0.3 else v) for k, v in value.items()}
    if isinstance(value, list):
        return rng.choice([[], value * rng.choice([2, 100, 300]), [_mutate(rng, v) for v in value], value[0:1] + [7]])
    if isinstance(value, bool):
        return rng.choice([not value, 1, 0, "true", None])
    if isinstance(value, int):
        return rng.choice([0, -1, 1, 15, 16, 17, 2**16, 2**16 - 1, 2**63, 2**63 - 1, 2**70, float(value), str(value)])
    if isinstance(value, str):
        return rng.choice(["", value * 50, value + "g", value.upper(), "\u00e9" * 4, 5, [value]])
    return value


def test_20k_mutated_messages_are_messages_or_protocol_errors():
    rng = random.Random(1723)
    seen = {"ok": 0, "refused": 0}
    for i in range(20_000):
        cls = MESSAGES[i % len(MESSAGES)]
        obj = _mutate(rng, VALID[cls])
        seen["ok" if read(cls, obj) is not None else "refused"] += 1
    assert seen["ok"] > 1000 and seen["refused"] > 1000, seen


def test_every_valid_message_reads_and_writes_back_unchanged():
    for cls, obj in VALID.items():
        assert read(cls, obj) is not None, cls


@pytest.mark.parametrize("cls,obj,field", [
    (Hello, {**VALID[Hello], "world": "2"}, "'world'"),
    (Hello, {**VALID[Hello], "stripe": 16}, "'stripe'"),
    (Hello, {**VALID[Hello], "stripe": 2, "stripes": 2}, "stripe 2 of 2"),
    (Hello, {**VALID[Hello], "epoch": 0}, "'epoch'"),
    (Hello, {**VALID[Hello], "auth": 1}, "'auth'"),
    (Hello, {**VALID[Hello], "nonce": "zz"}, "'nonce'"),
    (Hello, {k: v for k, v in VALID[Hello].items() if k != "src"}, "'src' is missing"),
    (Hello, {**VALID[Hello], "v": 2}, "protocol version 2"),
    (Hello, {**VALID[Hello], "v": True}, "protocol version True"),
    (HelloReply, {**VALID[HelloReply], "addrs": [{"addr": 5}]}, "'addrs'[0] field 'addr'"),
    (HelloReply, {**VALID[HelloReply], "missing": [{}] * 300}, "'missing'"),
    (HelloReply, {"error": "x"}, "'ok' is missing"),
    (AuthProof, {"proof": "\u00e9"}, "'proof'"),
    (SwitchAck, {"epoch": 1.0}, "'epoch'"),
    (SwitchAck, [1, 2], "a JSON object"),
    (Pings, {"op": "ping", "n": 10_001}, "'n'"),
    (Pings, {"op": "bulk", "n": 1}, "field 'op' is 'bulk'"),
    (Bulk, {"op": "bulk", "bytes": 0}, "'bytes'"),
    (Bulk, {"op": "bulk", "bytes": (1 << 30) + 1}, "'bytes'"),
    (Plan, {"op": "plan", "budget_s": float("nan")}, "'budget_s'"),
    (Plan, {"op": "plan"}, "'budget_s' is missing"),
    (Summary, {"op": "summary", "paths": [{"iface": "tb0"}]}, "'paths'[0]: field 'kind' is missing"),
    (Summary, {"op": "summary"}, "'paths' is missing"),
])
def test_a_bad_field_is_a_protocol_error_naming_it(cls, obj, field):
    with pytest.raises(ProtocolError, match=None) as got:
        cls.from_wire(obj)
    assert field in str(got.value), got.value


def test_the_wire_form_is_the_one_the_code_always_sent():
    dialer = Hello(world=2, src=1, dst=0, role="data", instance="ab", epoch=1, stripe=0, stripes=1,
                   why="initial", reason="r", v=1, nonce="00", auth=False)
    assert messages.encode(dialer) == (b'{"world":2,"src":1,"dst":0,"role":"data","instance":"ab","epoch":1,'
                                       b'"stripe":0,"stripes":1,"why":"initial","reason":"r","v":1,"nonce":"00",'
                                       b'"auth":false}')
    probe = Hello(world=2, src=1, dst=0, role="probe", v=1, nonce="00", auth=True)
    assert messages.encode(probe) == b'{"world":2,"src":1,"dst":0,"role":"probe","v":1,"nonce":"00","auth":true}'
    reply = HelloReply(rank=0, world=2, addrs=(Advertised(addr="a:1", iface="i", kind="k"),),
                       missing=(Missing(addr="b:2", iface=""),), ok=True, v=1, nonce="01", proof="02")
    assert messages.encode(reply) == (b'{"rank":0,"world":2,"addrs":[{"addr":"a:1","iface":"i","kind":"k"}],'
                                      b'"missing":[{"addr":"b:2","iface":""}],"ok":true,"v":1,"nonce":"01",'
                                      b'"proof":"02"}')
    assert messages.encode(HelloReply.refusal("no", not_ready=False)) == b'{"ok":false,"error":"no","not_ready":false}'
    assert messages.encode(HelloReply.refusal("no", auth_failed=True)) == b'{"ok":false,"auth_failed":true,"error":"no"}'
    assert messages.encode(AuthProof(proof="ab")) == b'{"proof":"ab"}'
    assert messages.encode(AuthVerdict(ok=True)) == b'{"ok":true}'
    assert messages.encode(SwitchAck(epoch=3)) == json.dumps({"epoch": 3}).encode()


def test_a_preflight_request_is_read_by_its_op():
    assert messages.read_request({"op": "ping", "n": 3}) == Pings.of(n=3)
    assert messages.read_request({"op": "bye", "extra": 1}) == Bye.of()
    for obj in ({"op": "x"}, {"n": 3}, {"op": 5}, [1], None):
        with pytest.raises(ProtocolError, match="preflight request: unknown op"):
            messages.read_request(obj)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=json_values)
def test_random_json_values_are_preflight_requests_or_protocol_errors(obj):
    try:
        msg = messages.read_request(obj)
    except ProtocolError as exc:
        assert "preflight" in str(exc), exc
        return
    assert msg.to_wire() == {k: v for k, v in obj.items() if k in msg.to_wire()}


def test_preflights_wire_form_is_the_one_it_always_sent():
    assert messages.encode(Plan.of(budget_s=31.0, paths=2)) == b'{"op":"plan","budget_s":31.0,"paths":2}'
    assert messages.encode(Pings.of(n=5)) == b'{"op":"ping","n":5}'
    assert messages.encode(Bulk.of(bytes=1048576, timeout_s=14.0)) == b'{"op":"bulk","bytes":1048576,"timeout_s":14.0}'
    assert messages.encode(Bye.of()) == b'{"op":"bye"}'
    assert messages.encode(PreflightReply(ok=True)) == b'{"ok":true}'
    assert messages.encode(PreflightReply(ok=False, error="no")) == b'{"ok":false,"error":"no"}'


@pytest.mark.parametrize("raw", [b"[" * 5000, b"9" * 4400, b"\xff", b"[1, 2]", b"", b"null"])
def test_a_payload_that_is_not_a_json_object_is_a_protocol_error(raw):
    for cls in MESSAGES:
        with pytest.raises(ProtocolError, match=cls.WHAT):
            messages.decode(cls, raw)
