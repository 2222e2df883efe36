"""Rank 1 of the lab benchmarks: mirrors whatever rank 0 (the pytest process) runs.

    python lab_follower.py HOSTFILE

Each command is a 4-element int32 array sent by rank 0: (op, dtype code, bytes,
count); the follower then runs `count` of that op.  Op 0 ends it.
"""

from __future__ import annotations

import sys

import mlx.core as mx

import boltring
from boltring.data import dtypes

ALL_SUM, ALL_GATHER, SENDRECV = 1, 2, 3


def main() -> int:
    group = boltring.init(sys.argv[1], 1)
    try:
        while True:
            op, code, nbytes, count = (int(v) for v in group.recv((4,), mx.int32, 0).tolist())
            if op == 0:
                return 0
            dtype = dtypes.from_code(code)
            x = mx.full((max(1, nbytes // dtype.size),), 2, dtype)
            mx.eval(x)
            for _ in range(count):  # the same work as rank 0, results evaluated
                if op == ALL_SUM:
                    mx.eval(group.all_sum(x))
                elif op == ALL_GATHER:
                    mx.eval(group.all_gather(x))
                else:
                    mx.eval(group.recv_like(x, 0))
                    group.send(x, 0)
    finally:
        group.close()


if __name__ == "__main__":
    sys.exit(main())
