"""The connection handshake: who is calling, for what, and proof of the secret.

    dialer                                   acceptor
      HELLO {v, world, src, dst, role, ...,     ->
             nonce_d, auth}
                                             <-  HELLO {ok, world, rank, addrs, nonce_a,
                                                        proof_a = HMAC(secret, "accept"|nonce_d|nonce_a)}
      AUTH {proof_d = HMAC(secret,           ->
            "dial"|nonce_a|nonce_d)}
                                             <-  AUTH {ok}
      (checks proof_a last)

The AUTH pair is only exchanged when both sides have a secret; a side with a
secret refuses one without.  Nonces are fresh on both sides for every connection,
so a recorded handshake cannot be replayed.  Nothing but these bounded JSON
messages is read from a peer before it has proved itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from boltring.control import messages
from boltring.control.messages import AuthProof, AuthVerdict, Hello, HelloReply, Message, VersionMismatch
from boltring.data import _core
from boltring.data.channel import Channel
from boltring.errors import AuthError, BoltError, ConfigError, LinkDown, ProtocolError

VERSION = messages.VERSION

M = TypeVar("M", bound=Message)


class NotReady(ConfigError):
    """The acceptor is busy with something else (a preflight still finishing): the
    dialer should try again, not give up."""

MAX_MESSAGE = 16384


def send_message(chan: Channel, kind: int, msg: dict[str, Any], timeout: float) -> None:
    """One control frame carrying a JSON object."""
    chan.send_control(kind, json.dumps(msg, separators=(",", ":")).encode(), timeout=timeout)


def recv_message(chan: Channel, kind: int, timeout: float, max_len: int = MAX_MESSAGE,
                 what: str = "handshake", error: type[BoltError] = ProtocolError) -> dict[str, Any]:
    """One control frame of `kind` carrying a JSON object of at most `max_len` bytes;
    anything else is `error`, never a stray exception."""
    raw = chan.recv_control(kind, max_len, timeout=timeout)
    try:
        return messages.parse(raw, what)
    except ProtocolError as exc:
        raise error(f"{chan.where}: {exc}") from None


def send(chan: Channel, kind: int, msg: Message, timeout: float) -> None:
    """One control frame carrying `msg`."""
    chan.send_control(kind, messages.encode(msg), timeout=timeout)


def receive(chan: Channel, kind: int, cls: type[M], timeout: float, max_len: int = MAX_MESSAGE) -> M:
    """One control frame of `kind` carrying a message of class `cls` (at most
    `max_len` bytes); anything else is a ProtocolError naming the peer and the field."""
    raw = chan.recv_control(kind, max_len, timeout=timeout)
    try:
        return messages.decode(cls, raw)
    except ProtocolError as exc:
        exc.args = (f"{chan.where}: {exc}",)  # the class (and a VersionMismatch's version) kept
        raise


def secret_from(value: str | bytes | None) -> bytes | None:
    """The cluster secret: `value`, else BOLTRING_SECRET, else none."""
    if value is None:
        value = os.environ.get("BOLTRING_SECRET") or None
    if value is None:
        return None
    return value.encode() if isinstance(value, str) else bytes(value)


def _proof(secret: bytes, label: bytes, first: str, second: str) -> str:
    try:
        a, b = bytes.fromhex(first), bytes.fromhex(second)
    except (TypeError, ValueError):
        raise ProtocolError("handshake nonce is not hex") from None
    return hmac.new(secret, label + b"|" + a + b"|" + b, hashlib.sha256).hexdigest()


def _nonce() -> str:
    return os.urandom(16).hex()


def dial(chan: Channel, hello: Hello | Mapping[str, Any], secret: bytes | None, timeout: float) -> HelloReply:
    """Run the dialer's side; returns the acceptor's HELLO.  Raises AuthError or
    ConfigError (the acceptor's refusal, with its reason) or ProtocolError.
    `hello` is the dialer's HELLO without ``v``, ``nonce`` and ``auth`` (a dict of
    its wire fields will do)."""
    nonce_d = _nonce()
    fields = hello.to_wire() if isinstance(hello, Hello) else dict(hello)
    send(chan, _core.KIND_HELLO, Hello.from_wire({**fields, "v": VERSION, "nonce": nonce_d,
                                                  "auth": secret is not None}), timeout)
    reply = receive(chan, _core.KIND_HELLO, HelloReply, timeout)
    if not reply.ok:
        error = reply.error if reply.error is not None else "refused"
        if reply.not_ready:
            raise LinkDown(f"{chan.where}: the peer is not ready for this yet: {error}")
        cls = AuthError if reply.auth_failed else ConfigError
        raise cls(f"{chan.where}: the peer refused the connection: {error}")
    if secret is None:
        return reply
    if reply.nonce is None:
        raise ProtocolError(f"{chan.where}: HELLO reply without a nonce")
    # Our proof goes first, so that with different secrets both sides learn it.
    send(chan, _core.KIND_AUTH, AuthProof(proof=_proof(secret, b"dial", reply.nonce, nonce_d)), timeout)
    verdict = receive(chan, _core.KIND_AUTH, AuthVerdict, timeout)
    if not verdict.ok:
        raise AuthError(f"{chan.where}: the peer rejected our proof of the cluster secret "
                        "(the secrets differ)")
    if not hmac.compare_digest(reply.proof or "", _proof(secret, b"accept", nonce_d, reply.nonce)):
        raise AuthError(f"{chan.where}: the peer could not prove it holds the cluster secret")
    return reply


def _refuse(chan: Channel, timeout: float, error: str, **flags: bool) -> None:
    send(chan, _core.KIND_HELLO, HelloReply.refusal(error, **flags), timeout)


def _read_hello(chan: Channel, timeout: float) -> Hello:
    """The dialer's HELLO; one of another version, or with a bad field, is answered
    with a refusal saying so before it is a ProtocolError."""
    obj = recv_message(chan, _core.KIND_HELLO, timeout)
    try:
        return Hello.from_wire(obj)
    except VersionMismatch as exc:
        _refuse(chan, timeout, f"protocol version {exc.version} is not {VERSION}")
        raise ProtocolError(f"{chan.where}: peer speaks protocol version {exc.version}, not {VERSION}") from None
    except ProtocolError as exc:
        _refuse(chan, timeout, str(exc))
        raise ProtocolError(f"{chan.where}: {exc}") from None


def accept(
    chan: Channel,
    check: Callable[[Hello], HelloReply | Mapping[str, Any]],
    secret: bytes | None,
    timeout: float,
) -> Hello:
    """Run the acceptor's side.  `check` validates the dialer's HELLO and returns the
    fields of our reply (a HelloReply, or a dict of its wire fields), or raises
    ConfigError with the reason to send back.  Returns the dialer's HELLO once it
    is accepted."""
    hello = _read_hello(chan, timeout)
    try:
        fields = check(hello)
    except ConfigError as exc:
        _refuse(chan, timeout, str(exc), not_ready=isinstance(exc, NotReady))
        raise
    if bool(hello.auth) != (secret is not None):
        mine = "has" if secret is not None else "has no"
        theirs = "has" if hello.auth else "has no"
        _refuse(chan, timeout, f"the acceptor {mine} cluster secret and the dialer {theirs} secret",
                auth_failed=True)
        raise AuthError(f"{chan.where}: the dialer {theirs} cluster secret and this side {mine}; "
                        "set the same secret on every rank")
    base = fields if isinstance(fields, HelloReply) else HelloReply.from_wire({**fields, "ok": True})
    reply = dataclasses.replace(base, ok=True, v=VERSION)
    if secret is None:
        send(chan, _core.KIND_HELLO, reply, timeout)
        return hello
    nonce_a = _nonce()
    if hello.nonce is None:
        raise ProtocolError(f"{chan.where}: HELLO without a nonce")
    reply = dataclasses.replace(reply, nonce=nonce_a, proof=_proof(secret, b"accept", hello.nonce, nonce_a))
    send(chan, _core.KIND_HELLO, reply, timeout)
    answer = receive(chan, _core.KIND_AUTH, AuthProof, timeout)
    good = hmac.compare_digest(answer.proof, _proof(secret, b"dial", nonce_a, hello.nonce))
    send(chan, _core.KIND_AUTH, AuthVerdict(ok=good), timeout)
    if not good:
        raise AuthError(f"{chan.where}: the dialer could not prove it holds the cluster secret")
    return hello
