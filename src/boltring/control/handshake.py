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

import hashlib
import hmac
import json
import os
from collections.abc import Callable
from typing import Any

from boltring.data import _core
from boltring.data.channel import Channel
from boltring.errors import AuthError, BoltError, ConfigError, LinkDown, ProtocolError

VERSION = 1


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
        msg = json.loads(raw)
    except (ValueError, RecursionError):  # not UTF-8 or JSON, too deep, a number too long
        raise error(f"{chan.where}: {what} message is not JSON") from None
    if not isinstance(msg, dict):
        raise error(f"{chan.where}: {what} message is not an object")
    return msg


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


def dial(chan: Channel, hello: dict[str, Any], secret: bytes | None, timeout: float) -> dict[str, Any]:
    """Run the dialer's side; returns the acceptor's HELLO.  Raises AuthError or
    ConfigError (the acceptor's refusal, with its reason) or ProtocolError."""
    nonce_d = _nonce()
    send_message(chan, _core.KIND_HELLO, {**hello, "v": VERSION, "nonce": nonce_d, "auth": secret is not None}, timeout)
    reply = recv_message(chan, _core.KIND_HELLO, timeout)
    if not reply.get("ok"):
        error = str(reply.get("error", "refused"))
        if reply.get("not_ready"):
            raise LinkDown(f"{chan.where}: the peer is not ready for this yet: {error}")
        cls = AuthError if reply.get("auth_failed") else ConfigError
        raise cls(f"{chan.where}: the peer refused the connection: {error}")
    if secret is None:
        return reply
    nonce_a = reply.get("nonce")
    if not isinstance(nonce_a, str):
        raise ProtocolError(f"{chan.where}: HELLO reply without a nonce")
    # Our proof goes first, so that with different secrets both sides learn it.
    send_message(chan, _core.KIND_AUTH, {"proof": _proof(secret, b"dial", nonce_a, nonce_d)}, timeout)
    verdict = recv_message(chan, _core.KIND_AUTH, timeout)
    if not verdict.get("ok"):
        raise AuthError(f"{chan.where}: the peer rejected our proof of the cluster secret "
                        "(the secrets differ)")
    if not hmac.compare_digest(str(reply.get("proof", "")), _proof(secret, b"accept", nonce_d, nonce_a)):
        raise AuthError(f"{chan.where}: the peer could not prove it holds the cluster secret")
    return reply


def accept(
    chan: Channel,
    check: Callable[[dict[str, Any]], dict[str, Any]],
    secret: bytes | None,
    timeout: float,
) -> dict[str, Any]:
    """Run the acceptor's side.  `check` validates the dialer's HELLO and returns the
    fields of our reply, or raises ConfigError with the reason to send back.
    Returns the dialer's HELLO once it is accepted."""
    hello = recv_message(chan, _core.KIND_HELLO, timeout)
    if hello.get("v") != VERSION:
        send_message(chan, _core.KIND_HELLO, {"ok": False, "error": f"protocol version {hello.get('v')} "
                                       f"is not {VERSION}"}, timeout)
        raise ProtocolError(f"{chan.where}: peer speaks protocol version {hello.get('v')}, not {VERSION}")
    try:
        fields = check(hello)
    except ConfigError as exc:
        send_message(chan, _core.KIND_HELLO, {"ok": False, "error": str(exc),
                                              "not_ready": isinstance(exc, NotReady)}, timeout)
        raise
    if bool(hello.get("auth")) != (secret is not None):
        mine = "has" if secret is not None else "has no"
        send_message(chan, _core.KIND_HELLO, {"ok": False, "auth_failed": True,
                                       "error": f"the acceptor {mine} cluster secret and the dialer "
                                       f"{'has' if hello.get('auth') else 'has no'} secret"}, timeout)
        raise AuthError(f"{chan.where}: the dialer {'has' if hello.get('auth') else 'has no'} cluster "
                        f"secret and this side {mine}; set the same secret on every rank")
    reply = {**fields, "ok": True, "v": VERSION}
    if secret is None:
        send_message(chan, _core.KIND_HELLO, reply, timeout)
        return hello
    nonce_a = _nonce()
    nonce_d = hello.get("nonce")
    if not isinstance(nonce_d, str):
        raise ProtocolError(f"{chan.where}: HELLO without a nonce")
    reply.update(nonce=nonce_a, proof=_proof(secret, b"accept", nonce_d, nonce_a))
    send_message(chan, _core.KIND_HELLO, reply, timeout)
    answer = recv_message(chan, _core.KIND_AUTH, timeout)
    good = hmac.compare_digest(str(answer.get("proof", "")), _proof(secret, b"dial", nonce_a, nonce_d))
    send_message(chan, _core.KIND_AUTH, {"ok": good}, timeout)
    if not good:
        raise AuthError(f"{chan.where}: the dialer could not prove it holds the cluster secret")
    return hello
