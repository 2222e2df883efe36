"""One rank of the mlx-lm end-to-end tests (tests/e2e/test_mlx_lm.py).

    python lm_rank.py BACKEND OUT.npz [--arch llama|qwen2] [--parallel tensor|pipeline]
                      [--forced N] [--shape JSON] [--timeout S] [--announce]

BACKEND is "boltring" (``boltring.mlx.use()`` then exo's call), "ring" (MLX's own
ring backend, exo's call alone) or "single" (no group: the whole model).
MLX_HOSTFILE and MLX_RANK are read as exo sets them.  The rank builds the tiny
model from a fixed seed, splits it with mlx-lm's unchanged ``model.shard`` (tensor)
or ``model.model.pipeline`` (pipeline), greedy-decodes with a plain loop (and, but
for "ring", with mlx-lm's ``generate_step``), runs teacher forcing, and writes
tokens and logits to OUT.npz; it prints one JSON line of timings and (for
boltring) the paths and events it saw.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import mlx.core as mx
import numpy as np

from boltring_rig.lab import models

PROMPT_LEN = 8
STEPS = 32
FORCED = 48


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("backend", choices=["boltring", "ring", "single"])
    ap.add_argument("out")
    ap.add_argument("--arch", default="llama", choices=models.ARCHES)
    ap.add_argument("--parallel", default="tensor", choices=["tensor", "pipeline"])
    ap.add_argument("--forced", type=int, default=FORCED, help="teacher-forced tokens")
    ap.add_argument("--shape", default="{}", help="LlamaShape fields as JSON, e.g. {\"hidden_size\": 1024}")
    ap.add_argument("--timeout", type=float, default=None, help="boltring's bound on every wait, s")
    ap.add_argument("--announce", action="store_true", help='print {"phase": "forcing"} before forcing')
    args = ap.parse_args()
    info: dict[str, Any] = {"backend": args.backend}
    t0 = time.perf_counter()
    group = None
    if args.backend == "boltring":
        import boltring.mlx

        boltring.mlx.use(**({} if args.timeout is None else {"timeout_s": args.timeout}))
    if args.backend != "single":
        group = mx.distributed.init(backend="ring", strict=True)  # exo's call, unchanged
        info.update(rank=group.rank(), size=group.size(), group_type=type(group).__module__)
    info["init_s"] = time.perf_counter() - t0

    shape = models.LlamaShape(**json.loads(args.shape))
    model = models.build_model(shape, arch=args.arch, seed=1234)
    if group is not None:
        (models.shard if args.parallel == "tensor" else models.pipeline)(model, group)
        mx.eval(mx.distributed.all_sum(mx.array(1.0), group=group))  # exo's barrier
    prompt = models.prompt_tokens(PROMPT_LEN, shape.vocab_size, seed=7)
    forced_tokens = models.prompt_tokens(args.forced, shape.vocab_size, seed=8)
    cpu0 = time.process_time()
    decode = models.greedy_decode(model, prompt, STEPS)
    info["decode_cpu_s_per_token"] = (time.process_time() - cpu0) / STEPS
    if args.announce:
        print(json.dumps({"phase": "forcing"}), flush=True)
    t1 = time.perf_counter()
    forced = models.forced_logits(model, forced_tokens)
    info.update(tokens_per_s=decode.tokens_per_s, forced_tokens_per_s=args.forced / (time.perf_counter() - t1))
    # mlx-lm's own loop (streams, async eval) on boltring; MLX's ring needs no such check
    generated = models.mlx_lm_tokens(model, prompt, STEPS) if args.backend != "ring" else []

    if args.backend == "boltring":
        import boltring

        assert isinstance(group, boltring.Group)
        peers = sorted({(group.rank() + 1) % group.size(), (group.rank() - 1) % group.size()})
        info["paths"] = {p: {"iface": group.path(p).iface, "kind": group.path(p).kind,
                             "state": group.path(p).state} for p in peers}
        info["events"] = [e.kind for e in group.events()]
        info["event_log"] = [f"{e.kind}: {e.from_path} -> {e.to_path}: {e.reason}" for e in group.events()]
        info["ops"] = group.stats()["ops"]
    if group is not None:
        mx.eval(mx.distributed.all_sum(mx.array(1.0), group=group))  # nobody leaves while a peer works
        if hasattr(group, "close"):
            group.close()
    np.savez(args.out, tokens=np.array(decode.tokens), generated=np.array(generated),
             logits=decode.logits, forced=forced)
    print(json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
