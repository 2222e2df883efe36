"""boltring's test lab: Macs joined by Thunderbolt and a VPN, as Linux network namespaces.

``Lab`` builds N nodes with fast ``thunderbolt*`` veths and a slow, delayed
``tailscale0`` network, plus the route that made the seed bug silent: the fast
subnet is also reachable over the slow path.  Tests and benchmarks run ranks as
real processes inside the nodes (``Lab.popen``).  Needs root and iproute2.
See ``lab.py`` for the topology.
"""

from .lab import FAST_IFS, SLOW_IF, FastLink, Lab
from .netns import LabError

__all__ = ["Lab", "LabError", "FastLink", "FAST_IFS", "SLOW_IF"]
