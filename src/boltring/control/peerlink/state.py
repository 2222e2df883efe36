"""The lifecycle of a peer link: one state, changed only by `Lifecycle.transition`.

    FORMING ──────────────> ACTIVE <──────> SWITCHING
       │                      │                 │
       └──────────────────────┴───> FAILED <────┘
       (any state but CLOSED) ───────────────────────> CLOSED

FORMING    no epoch staged yet (``PeerLink.ready`` waits for the first)
ACTIVE     an epoch is staged: the native link moves the data on it; the acceptor
           stages later epochs as they arrive without leaving ACTIVE
SWITCHING  the dialer dials a new epoch while the last one carries the data; back
           to ACTIVE when it is staged, or when dialing it failed
FAILED     ended by an error, stored here: the native link was given it (the
           waiting operation raises it) and ``ready`` raises it; nothing is dialed
           or accepted any more
CLOSED     ``close()``: every connection closed, every thread stopped

A transition not drawn above is a bug, raised as RuntimeError (as Gloo's
``changeState`` asserts).  The link's lock is held around every transition.
"""

from __future__ import annotations

import enum


class LinkState(enum.Enum):
    FORMING = "forming"
    ACTIVE = "active"
    SWITCHING = "switching"
    FAILED = "failed"
    CLOSED = "closed"


ALLOWED: dict[LinkState, frozenset[LinkState]] = {
    LinkState.FORMING: frozenset({LinkState.ACTIVE, LinkState.FAILED, LinkState.CLOSED}),
    LinkState.ACTIVE: frozenset({LinkState.SWITCHING, LinkState.FAILED, LinkState.CLOSED}),
    LinkState.SWITCHING: frozenset({LinkState.ACTIVE, LinkState.FAILED, LinkState.CLOSED}),
    LinkState.FAILED: frozenset({LinkState.CLOSED}),
    LinkState.CLOSED: frozenset(),
}

ENDED = frozenset({LinkState.FAILED, LinkState.CLOSED})


class Lifecycle:
    """A link's state and the one error that ended it."""

    def __init__(self, name: str):
        self.name = name
        self.state = LinkState.FORMING
        self.error: BaseException | None = None

    def __repr__(self) -> str:
        return f"<{self.name} {self.state.value}>"

    def transition(self, new: LinkState, error: BaseException | None = None) -> None:
        """Move to `new` (FAILED with the `error` that ends the link)."""
        if new not in ALLOWED[self.state]:
            raise RuntimeError(f"{self.name}: no transition from {self.state.value} to {new.value}")
        if (new is LinkState.FAILED) != (error is not None):
            raise RuntimeError(f"{self.name}: FAILED, and only FAILED, carries its error")
        if error is not None:
            self.error = error
        self.state = new

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    def raise_error(self) -> None:
        """Raise the error that ended the link, if one did: the one place it is rethrown."""
        if self.error is not None:
            raise self.error
