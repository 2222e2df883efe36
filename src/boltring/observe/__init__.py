"""A running group, seen from outside its process.

Every live group publishes a snapshot of its state (``snapshot.py``: ranks, each
peer's path, kind, state, RTT, epoch, bytes, operations and their latency, recent
events, why a peer is not on its primary path) as one JSON file in a per-user
runtime directory (``store.py``), rewritten by a background thread every 0.25 s
and at once on a path event (``publisher.py``).  ``boltring status`` prints those
files (``boltring.tools.status``), ``boltring watch`` shows them live (``boltring.tools.watch``), and an
opt-in Prometheus endpoint serves the same snapshot as metrics (``metrics.py``).

None of it touches the data plane: a snapshot reads counters and the control
plane's state, under locks held only for a few instructions.
"""
