"""Diagnosis: what a rank can tell of its paths to its neighbours, in one model.

* :mod:`.paths` -- one path model (:class:`Path`): a candidate path with its local
  state, the result of checking it, and its RTT/throughput when measured;
* :mod:`.verdict` -- one verdict (:func:`judge`): the group's own ``policy.choose``
  over those paths, and the words for what is wrong;
* :mod:`.report` -- one report (:class:`Report`, :class:`Peer`) and its renderer
  (text table and JSON).

Used by ``boltring doctor`` (connect checks), ``boltring preflight`` and
``init(preflight=True)`` (measurements).
"""

from boltring.control.diagnosis.paths import MEASURED, REACHED, Path, local_paths, local_state
from boltring.control.diagnosis.report import Peer, Report, interface_dict, path_table, render, table
from boltring.control.diagnosis.verdict import Limits, Verdict, judge

__all__ = ["MEASURED", "REACHED", "Limits", "Path", "Peer", "Report", "Verdict", "interface_dict", "judge", "local_paths",
           "local_state", "path_table", "render", "table"]
