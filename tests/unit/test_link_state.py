"""A peer link's lifecycle (boltring.control.peerlink.state): only the transitions
drawn in docs/architecture.md "Peer links" happen; FAILED carries the one error
that ended the link, which `raise_error` rethrows."""

from __future__ import annotations

import pytest

from boltring.control.peerlink.state import ALLOWED, Lifecycle, LinkState
from boltring.errors import LinkDown, PeerLost

F, A, S, X, C = (LinkState.FORMING, LinkState.ACTIVE, LinkState.SWITCHING, LinkState.FAILED,
                 LinkState.CLOSED)
DRAWN = {(F, A), (A, S), (S, A), (F, X), (A, X), (S, X), (F, C), (A, C), (S, C), (X, C)}


def at(state: LinkState) -> Lifecycle:
    life = Lifecycle("link 0->1")
    path = {F: [], A: [A], S: [A, S], X: [X], C: [C]}[state]
    for s in path:
        life.transition(s, PeerLost("gone") if s is X else None)
    return life


@pytest.mark.parametrize("old", list(LinkState))
@pytest.mark.parametrize("new", list(LinkState))
def test_only_the_drawn_transitions_are_allowed(old, new):
    assert ((old, new) in DRAWN) == (new in ALLOWED[old])
    life = at(old)
    if (old, new) in DRAWN:
        life.transition(new, LinkDown("x") if new is X else None)
        assert life.state is new
    else:
        with pytest.raises(RuntimeError, match="no transition"):
            life.transition(new, LinkDown("x") if new is X else None)
        assert life.state is old


def test_failed_carries_its_error_and_only_failed_does():
    life = at(A)
    with pytest.raises(RuntimeError):
        life.transition(X)
    with pytest.raises(RuntimeError):
        life.transition(S, LinkDown("x"))
    life.raise_error()  # nothing ended it yet
    err = LinkDown("the primary path is not usable")
    life.transition(X, err)
    assert life.ended and life.error is err
    with pytest.raises(LinkDown) as got:
        life.raise_error()
    assert got.value is err
    life.transition(C)
    assert life.ended and life.error is err
