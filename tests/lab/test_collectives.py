"""Every collective against a reference over random dtypes and shapes, on 2, 3 and 4
ranks as processes in the lab: the same result on every rank, bit-identical to
MLX's own `a + b` on 2 ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boltring_rig.lab import Lab
from ports import free_port

pytestmark = [pytest.mark.netns, pytest.mark.timeout(300)]

WORKER = str(Path(__file__).with_name("collective_worker.py"))
ALL = ["bool_", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
       "float16", "bfloat16", "float32", "complex64"]
ORDERED = [d for d in ALL if d not in ("bool_", "complex64")]


class Ranks:
    def __init__(self, n: int, tmp: Path):
        self.lab = Lab(nodes=n, prefix=f"bc{n}{os.getpid() % 10000}").up()
        hostfile = tmp / f"hosts{n}.json"
        hostfile.write_text(json.dumps(self.lab.hostfile(free_port())))
        self.procs = [self.lab.popen(i, [sys.executable, WORKER, str(hostfile), str(i)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True) for i in range(n)]
        for p in self.procs:
            assert json.loads(p.stdout.readline()) == {"ready": True}

    def run(self, case: dict) -> list[dict]:
        for p in self.procs:
            p.stdin.write(json.dumps(case) + "\n")
            p.stdin.flush()
        return [json.loads(p.stdout.readline()) for p in self.procs]

    def close(self) -> None:
        for p in self.procs:
            try:
                p.stdin.write(json.dumps({"quit": True}) + "\n")
                p.stdin.close()
                p.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                p.kill()
                p.wait()
        self.lab.down()


@pytest.fixture(scope="module", params=[2, 3, 4])
def ranks(request, tmp_path_factory):
    r = Ranks(request.param, tmp_path_factory.mktemp("collectives"))
    yield r
    r.close()


# scalars, zero-size, sizes that do not divide by the world size, and sizes across
# the 1 MiB striping boundary
sizes = st.one_of(st.integers(0, 40), st.sampled_from([(1 << 18) - 1, 1 << 18, (1 << 18) + 3, 3 << 17]))
shapes = st.one_of(st.just([]), sizes.map(lambda n: [n]), st.tuples(st.integers(0, 5), st.integers(0, 9)).map(list))


def case_strategy():
    reduce_op = st.fixed_dictionaries({"op": st.sampled_from(["all_sum"]), "dtype": st.sampled_from(ALL)})
    ordered = st.fixed_dictionaries({"op": st.sampled_from(["all_max", "all_min"]),
                                     "dtype": st.sampled_from(ORDERED)})
    moves = st.fixed_dictionaries({"op": st.sampled_from(["all_gather", "shift"]), "dtype": st.sampled_from(ALL)})
    return st.tuples(st.one_of(reduce_op, ordered, moves), shapes, st.integers(0, 2**31)).map(
        lambda t: {**t[0], "shape": t[1], "seed": t[2]})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=case_strategy())
def test_collectives_match_the_reference_on_every_rank(ranks, case):
    results = ranks.run(case)
    assert all(r["ok"] for r in results), (case, results)
    if case["op"] != "shift":
        assert len({r["digest"] for r in results}) == 1, f"ranks disagree on {case}"
