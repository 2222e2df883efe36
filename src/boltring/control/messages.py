"""The control plane's JSON messages, one class each, checked field by field.

Every JSON object a peer sends in a control frame is read here and nowhere else:
``Msg.from_wire(obj)`` checks each field's type and bounds (integers in range,
strings and lists of bounded length, nested objects by their own class) and
returns the message, or raises `ProtocolError` naming the message and the field;
``msg.to_wire()`` is the dict that goes on the wire (fields that are None are
left out, the rest in declaration order, which is the order they have always been
sent in).  Fields a peer sends that a class does not know are ignored, as they
always were.

A message class is a frozen dataclass deriving from `Message` whose fields are
declared with the helpers below (`integer`, `boolean`, `text`, `hexdigits`,
`number`, `listing`, `nested`); ``check()`` adds rules that span fields.  Other requests
(preflight's, say) join by declaring their own classes the same way.

    HELLO          dialer -> acceptor      `Hello`
    HELLO (reply)  acceptor -> dialer      `HelloReply` (`Advertised`, `Missing`)
    AUTH           dialer -> acceptor      `AuthProof`
    AUTH (verdict) acceptor -> dialer      `AuthVerdict`
    SWITCH         acceptor -> dialer      `SwitchAck`: the epoch whose stripes all arrived

and, after a HELLO of role "preflight" (``boltring preflight``), in HELLO frames:

    request        dialer -> acceptor      `Plan`, `Pings`, `Bulk`, `Summary` (`PathSummary`), `Bye`
                                           (`read_request` picks the class by ``op``)
    reply          acceptor -> dialer      `PreflightReply`
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from boltring.errors import ProtocolError

__all__ = [
    "VERSION", "MAX_WORLD", "MAX_STRIPES", "MAX_EPOCH", "MAX_TEXT", "MAX_ADDRS",
    "Message", "VersionMismatch", "parse", "decode", "encode",
    "integer", "boolean", "text", "number", "listing", "nested",
    "hexdigits", "int_in", "is_bool", "str_of", "hex_of", "num_in", "list_of", "obj_of", "clip",
    "Hello", "HelloReply", "Advertised", "Missing", "AuthProof", "AuthVerdict", "SwitchAck",
    "MAX_PINGS", "MAX_BULK_BYTES", "Request", "Plan", "Pings", "Bulk", "PathSummary", "Summary", "Bye",
    "PreflightReply", "REQUESTS", "read_request",
]

VERSION = 1  # of the handshake

MAX_WORLD = 1 << 16  # ranks in a group
MAX_STRIPES = 16  # connections of one epoch (the native link's bound)
MAX_EPOCH = (1 << 63) - 1
MAX_TEXT = 4096  # an error or a reason, in characters
MAX_NAME = 64  # an interface, a role, an instance id, a kind
MAX_ADDR = 128  # an "ip:port" endpoint (IPv6 with a zone included)
MAX_HEX = 128  # a nonce or a proof (hex)
MAX_ADDRS = 256  # addresses advertised, or missing, in one reply

M = TypeVar("M", bound="Message")
Check = Callable[[Any, str], Any]  # (value, where) -> value, or ProtocolError naming `where`


def _shown(value: Any) -> str:
    """A peer's value, short enough to put in an error message."""
    s = repr(value)
    return s if len(s) <= 40 else s[:37] + "..."


def _bad(where: str, wanted: str, value: Any) -> ProtocolError:
    return ProtocolError(f"{where}: expected {wanted}, got {_shown(value)}")


# ------------------------------------------------------------ field checks
# Each returns a check: (value, where) -> the value read, or ProtocolError naming `where`.


def int_in(lo: int, hi: int) -> Check:
    def check(value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise _bad(where, f"an integer in [{lo}, {hi}]", value)
        return value
    return check


def is_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(where, "true or false", value)
    return value


def str_of(max_len: int, choices: frozenset[str] | None = None) -> Check:
    def check(value: Any, where: str) -> str:
        if not isinstance(value, str) or len(value) > max_len:
            raise _bad(where, f"a string of at most {max_len} characters", value)
        if choices is not None and value not in choices:
            raise _bad(where, "one of " + ", ".join(sorted(choices)), value)
        return value
    return check


def hex_of(max_len: int) -> Check:
    def check(value: Any, where: str) -> str:
        if not isinstance(value, str) or len(value) > max_len or value.strip(_HEX):
            raise _bad(where, f"hex digits, at most {max_len}", value)
        return value
    return check


_HEX = "0123456789abcdefABCDEF"


def num_in(lo: float, hi: float) -> Check:
    def check(value: Any, where: str) -> float:
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value) or not lo <= value <= hi):
            raise _bad(where, f"a number in [{lo:g}, {hi:g}]", value)
        return float(value)
    return check


def list_of(item: Check, max_len: int) -> Check:
    def check(value: Any, where: str) -> tuple[Any, ...]:
        if not isinstance(value, list) or len(value) > max_len:
            raise _bad(where, f"a list of at most {max_len} items", value)
        return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(value))
    return check


def obj_of(cls: type[Message]) -> Check:
    def check(value: Any, where: str) -> Message:
        return cls.read(value, where)
    return check


def _field(check: Check, required: bool) -> Any:
    return dataclasses.field(default=None, metadata={"check": check, "required": required})


def integer(lo: int, hi: int, *, required: bool = False) -> Any:
    """An integer field (never a bool) in [lo, hi]."""
    return _field(int_in(lo, hi), required)


def boolean(*, required: bool = False) -> Any:
    return _field(is_bool, required)


def text(max_len: int, *, choices: frozenset[str] | None = None, required: bool = False) -> Any:
    """A string field of at most `max_len` characters (one of `choices`, if given)."""
    return _field(str_of(max_len, choices), required)


def hexdigits(max_len: int, *, required: bool = False) -> Any:
    """A string of hex digits (a nonce, a proof) of at most `max_len`."""
    return _field(hex_of(max_len), required)


def number(lo: float, hi: float, *, required: bool = False) -> Any:
    """A finite number (int or float, never a bool) in [lo, hi], read as a float."""
    return _field(num_in(lo, hi), required)


def listing(item: Check | type[Message], max_len: int, *, required: bool = False) -> Any:
    """A list of at most `max_len` items, each checked by `item` (a message class
    for a list of objects, or a check: ``int_in(0, 9)``, ``str_of(64)``, ...); read
    as a tuple."""
    check = obj_of(item) if isinstance(item, type) else item
    return _field(list_of(check, max_len), required)


def nested(cls: type[Message], *, required: bool = False) -> Any:
    """An object field holding a message of class `cls`."""
    return _field(obj_of(cls), required)


# ------------------------------------------------------------------ base


@dataclass(frozen=True, kw_only=True)
class Message:
    """One JSON control message.  Subclasses are frozen dataclasses whose fields
    are declared with `integer`, `boolean`, `text`, `number`, `listing`, `nested`."""

    WHAT: ClassVar[str] = "message"  # how errors name it
    SEPARATORS: ClassVar[tuple[str, str]] = (",", ":")  # as `encode` writes it

    @classmethod
    def from_wire(cls: type[M], obj: Any) -> M:
        """The message `obj` (a decoded JSON value) holds; ProtocolError names what is wrong."""
        return cls.read(obj, cls.WHAT)

    @classmethod
    def read(cls: type[M], obj: Any, where: str) -> M:
        if not isinstance(obj, dict):
            raise ProtocolError(f"{where}: expected a JSON object, got {_shown(obj)}")
        values = {}
        for f in dataclasses.fields(cls):
            value = obj.get(f.name)
            if value is None:
                if f.metadata["required"]:
                    raise ProtocolError(f"{where}: field {f.name!r} is missing")
                continue
            values[f.name] = f.metadata["check"](value, f"{where} field {f.name!r}")
        msg = cls(**values)
        msg.check(where)
        return msg

    @classmethod
    def coerce(cls: type[M], value: M | Mapping[str, Any]) -> M:
        """`value` itself, or the message a dict of wire fields makes (checked)."""
        return value if isinstance(value, cls) else cls.from_wire(dict(value))

    def check(self, where: str) -> None:
        """Rules across fields (a subclass's); ProtocolError when one does not hold."""

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = _wire(value)
        return out

    # dict-style reading of the wire fields, for callers written against dicts
    def get(self, name: str, default: Any = None) -> Any:
        return self.to_wire().get(name, default)

    def __getitem__(self, name: str) -> Any:
        return self.to_wire()[name]


def _wire(value: Any) -> Any:
    if isinstance(value, Message):
        return value.to_wire()
    if isinstance(value, (tuple, list)):
        return [_wire(v) for v in value]
    return value


class VersionMismatch(ProtocolError):
    """A HELLO of another protocol version (read before any other field, whose
    meaning may differ in that version)."""

    def __init__(self, where: str, version: Any):
        super().__init__(f"{where}: protocol version {_shown(version)}, not {VERSION}")
        self.version = version


def parse(raw: bytes, what: str = "message") -> dict[str, Any]:
    """A control frame's payload as a JSON object, or ProtocolError."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):  # not UTF-8 or JSON, too deep, a number too long
        raise ProtocolError(f"{what} message is not JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} message is not an object")
    return obj


def decode(cls: type[M], raw: bytes) -> M:
    """A control frame's payload as a message of class `cls`, or ProtocolError."""
    return cls.from_wire(parse(raw, cls.WHAT))


def encode(msg: Message) -> bytes:
    return json.dumps(msg.to_wire(), separators=msg.SEPARATORS).encode()


def clip(s: str, n: int = MAX_TEXT) -> str:
    """Text of ours shortened to what a peer accepts."""
    return s if len(s) <= n else s[: n - 3] + "..."


# --------------------------------------------------------------- handshake


@dataclass(frozen=True, kw_only=True)
class Hello(Message):
    """The dialer's HELLO: who calls whom, for what (``role``: "probe", "data",
    "preflight"), and, for data connections, which epoch and stripe."""

    WHAT: ClassVar[str] = "HELLO"

    world: int = integer(1, MAX_WORLD, required=True)
    src: int = integer(0, MAX_WORLD - 1, required=True)
    dst: int = integer(0, MAX_WORLD - 1, required=True)
    role: str = text(MAX_NAME, required=True)
    instance: str | None = text(MAX_NAME)  # the dialing process's id
    epoch: int | None = integer(1, MAX_EPOCH)
    stripe: int | None = integer(0, MAX_STRIPES - 1)
    stripes: int | None = integer(1, MAX_STRIPES)
    why: str | None = text(MAX_NAME)  # the PathEvent kind that opened the epoch
    reason: str | None = text(MAX_TEXT)
    v: int | None = integer(0, 1 << 31, required=True)
    nonce: str | None = hexdigits(MAX_HEX)
    auth: bool | None = boolean()  # the dialer has a secret

    @classmethod
    def read(cls, obj: Any, where: str) -> Hello:
        if isinstance(obj, dict) and (type(obj.get("v")) is not int or obj["v"] != VERSION):
            raise VersionMismatch(where, obj.get("v"))
        return super().read(obj, where)

    def check(self, where: str) -> None:
        if self.stripe is not None and self.stripes is not None and self.stripe >= self.stripes:
            raise ProtocolError(f"{where}: stripe {self.stripe} of {self.stripes}")

    def data_epoch(self) -> tuple[int, int, int] | None:
        """(epoch, stripe, stripes) of a data connection, or None when one is missing."""
        if self.epoch is None or self.stripe is None or self.stripes is None:
            return None
        return self.epoch, self.stripe, self.stripes


@dataclass(frozen=True, kw_only=True)
class Advertised(Message):
    """An address the acceptor listens on, that the dialer may add as a candidate."""

    WHAT: ClassVar[str] = "advertised address"

    addr: str = text(MAX_ADDR, required=True)
    iface: str | None = text(MAX_NAME)
    kind: str | None = text(MAX_NAME)


@dataclass(frozen=True, kw_only=True)
class Missing(Message):
    """An address of the acceptor's hostfile entry that no interface holds now,
    with the interface remembered for it ("" when none is)."""

    WHAT: ClassVar[str] = "missing address"

    addr: str = text(MAX_ADDR, required=True)
    iface: str | None = text(MAX_NAME)


@dataclass(frozen=True, kw_only=True)
class HelloReply(Message):
    """The acceptor's answer: ``ok`` and who it is, or why it refuses."""

    WHAT: ClassVar[str] = "HELLO reply"

    rank: int | None = integer(0, MAX_WORLD - 1)
    world: int | None = integer(1, MAX_WORLD)
    addrs: tuple[Advertised, ...] | None = listing(Advertised, MAX_ADDRS)
    missing: tuple[Missing, ...] | None = listing(Missing, MAX_ADDRS)
    role: str | None = text(MAX_NAME)
    ok: bool = boolean(required=True)
    auth_failed: bool | None = boolean()
    error: str | None = text(MAX_TEXT)
    not_ready: bool | None = boolean()  # the acceptor is busy with something else: try again
    v: int | None = integer(0, 1 << 31)
    nonce: str | None = hexdigits(MAX_HEX)
    proof: str | None = hexdigits(MAX_HEX)

    @classmethod
    def refusal(cls, error: str, **flags: bool) -> HelloReply:
        return cls(ok=False, error=clip(error), **flags)


@dataclass(frozen=True, kw_only=True)
class AuthProof(Message):
    """The dialer's proof of the secret: HMAC over the acceptor's nonce and its own."""

    WHAT: ClassVar[str] = "AUTH"

    proof: str = hexdigits(MAX_HEX, required=True)


@dataclass(frozen=True, kw_only=True)
class AuthVerdict(Message):
    """The acceptor's verdict on the dialer's proof."""

    WHAT: ClassVar[str] = "AUTH verdict"

    ok: bool = boolean(required=True)


# ---------------------------------------------------------------- peer links


@dataclass(frozen=True, kw_only=True)
class SwitchAck(Message):
    """The acceptor has every stripe of ``epoch`` and has staged it."""

    WHAT: ClassVar[str] = "SWITCH acknowledgement"
    SEPARATORS: ClassVar[tuple[str, str]] = (", ", ": ")  # as it has always been written

    epoch: int = integer(1, MAX_EPOCH, required=True)


# ---------------------------------------------------------------- preflight

MAX_PINGS = 10_000  # ping-pongs in one request
MAX_BULK_BYTES = 1 << 30  # what an acceptor agrees to receive in one exchange
MAX_SECONDS = 1e9  # a budget or a timeout, in s (the acceptor bounds it further)
MAX_PATHS = 1 << 12  # paths to one neighbour in a summary


@dataclass(frozen=True, kw_only=True)
class Request(Message):
    """A preflight request; ``op`` names it (each op is a class, `REQUESTS`)."""

    WHAT: ClassVar[str] = "preflight request"
    OP: ClassVar[str] = ""

    op: str = text(MAX_NAME, required=True)

    @classmethod
    def of(cls: type[M], **fields: Any) -> M:
        """The request with its ``op`` filled in."""
        return cls(op=cls.OP, **fields)  # type: ignore[attr-defined]

    def check(self, where: str) -> None:
        if self.op != self.OP:
            raise ProtocolError(f"{where}: field 'op' is {_shown(self.op)}, not {self.OP!r}")


@dataclass(frozen=True, kw_only=True)
class Plan(Request):
    """How long the acceptor should wait at most, for how many paths."""

    WHAT: ClassVar[str] = "preflight plan"
    OP: ClassVar[str] = "plan"

    budget_s: float = number(0, MAX_SECONDS, required=True)
    paths: int | None = integer(0, MAX_PATHS)


@dataclass(frozen=True, kw_only=True)
class Pings(Request):
    """``n`` PING/PONG round trips follow."""

    WHAT: ClassVar[str] = "preflight ping"
    OP: ClassVar[str] = "ping"

    n: int = integer(0, MAX_PINGS, required=True)


@dataclass(frozen=True, kw_only=True)
class Bulk(Request):
    """One full-duplex exchange of ``bytes`` each way follows, within ``timeout_s``."""

    WHAT: ClassVar[str] = "preflight bulk"
    OP: ClassVar[str] = "bulk"

    bytes: int = integer(1, MAX_BULK_BYTES, required=True)
    timeout_s: float | None = number(0, MAX_SECONDS)


@dataclass(frozen=True, kw_only=True)
class PathSummary(Message):
    """One path as the dialer measured it (``diagnosis.Path``'s measured fields)."""

    WHAT: ClassVar[str] = "preflight path"

    iface: str = text(MAX_NAME, required=True)
    kind: str = text(MAX_NAME, required=True)
    remote: str = text(MAX_ADDR, required=True)
    status: str = text(MAX_NAME, required=True)
    reason: str | None = text(MAX_TEXT)
    source: str | None = text(MAX_NAME)
    position: int | None = integer(0, MAX_PATHS)
    peer_iface: str | None = text(MAX_NAME)
    rtt_ms: float | None = number(0, MAX_SECONDS)
    rtt_min_ms: float | None = number(0, MAX_SECONDS)
    rtt_max_ms: float | None = number(0, MAX_SECONDS)
    pings: int | None = integer(0, MAX_PINGS)
    bulk_bytes: int | None = integer(0, MAX_BULK_BYTES)
    bulk_s: float | None = number(0, MAX_SECONDS)
    mb_per_s: float | None = number(0, 1e15)
    gbps: float | None = number(0, 1e15)


@dataclass(frozen=True, kw_only=True)
class Summary(Request):
    """Every path's result, so that both ranks print the same table."""

    WHAT: ClassVar[str] = "preflight summary"
    OP: ClassVar[str] = "summary"

    paths: tuple[PathSummary, ...] = listing(PathSummary, MAX_PATHS, required=True)


@dataclass(frozen=True, kw_only=True)
class Bye(Request):
    """The dialer is done with this connection."""

    WHAT: ClassVar[str] = "preflight bye"
    OP: ClassVar[str] = "bye"


@dataclass(frozen=True, kw_only=True)
class PreflightReply(Message):
    """The acceptor's answer to a request: ``ok``, or why not."""

    WHAT: ClassVar[str] = "preflight reply"

    ok: bool = boolean(required=True)
    error: str | None = text(MAX_TEXT)


REQUESTS: dict[str, type[Request]] = {c.OP: c for c in (Plan, Pings, Bulk, Summary, Bye)}


def read_request(obj: Any) -> Request:
    """The preflight request `obj` holds, of the class its ``op`` names; ProtocolError
    (naming the op or the field) for anything else."""
    op = obj.get("op") if isinstance(obj, dict) else None
    cls = REQUESTS.get(op) if isinstance(op, str) else None
    if cls is None:
        raise ProtocolError(f"{Request.WHAT}: unknown op {_shown(op)}")
    return cls.from_wire(obj)


MESSAGES: tuple[type[Message], ...] = (Hello, HelloReply, Advertised, Missing, AuthProof, AuthVerdict,
                                       SwitchAck, Plan, Pings, Bulk, PathSummary, Summary, Bye, PreflightReply)
