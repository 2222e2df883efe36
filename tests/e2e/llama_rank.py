"""One rank of the mlx-lm end-to-end test (tests/e2e/test_mlx_lm.py).

    python llama_rank.py BACKEND OUT.npz [SHAPE_JSON]

BACKEND is "boltring" (``boltring.mlx.use()`` then exo's call), "ring" (MLX's own
ring backend, exo's call alone) or "single" (no group: the unsharded model).
MLX_HOSTFILE and MLX_RANK are read as exo sets them.  The rank builds the tiny
Llama from a fixed seed, shards it with mlx-lm's unchanged ``model.shard``,
greedy-decodes, runs teacher forcing, and writes tokens and logits to OUT.npz;
it prints one JSON line of timings and (for boltring) the path it used.
"""

from __future__ import annotations

import json
import sys
import time

import mlx.core as mx
import numpy as np

from boltring.lab import models

PROMPT_LEN = 8
STEPS = 32
FORCED = 48


def main() -> int:
    backend, out = sys.argv[1], sys.argv[2]
    shape = models.LlamaShape(**json.loads(sys.argv[3])) if len(sys.argv) > 3 else models.LlamaShape()
    info: dict = {"backend": backend}
    t0 = time.perf_counter()
    group = None
    if backend == "boltring":
        import boltring.mlx

        boltring.mlx.use()
    if backend in ("boltring", "ring"):
        group = mx.distributed.init(backend="ring", strict=True)  # exo's call, unchanged
        info.update(rank=group.rank(), size=group.size(), group_type=type(group).__module__)
    info["init_s"] = time.perf_counter() - t0

    model = models.build_llama(shape, seed=1234)
    if group is not None:
        models.shard(model, group)
        mx.eval(mx.distributed.all_sum(mx.array(1.0), group=group))  # exo's barrier
    prompt = models.prompt_tokens(PROMPT_LEN, shape.vocab_size, seed=7)
    forced_tokens = models.prompt_tokens(FORCED, shape.vocab_size, seed=8)
    cpu0 = time.process_time()
    decode = models.greedy_decode(model, prompt, STEPS)
    info["decode_cpu_s_per_token"] = (time.process_time() - cpu0) / STEPS
    t1 = time.perf_counter()
    forced = models.forced_logits(model, forced_tokens)
    info.update(tokens_per_s=decode.tokens_per_s, forced_tokens_per_s=FORCED / (time.perf_counter() - t1))

    if backend == "boltring":
        import boltring

        assert isinstance(group, boltring.Group)
        peers = sorted({(group.rank() + 1) % group.size(), (group.rank() - 1) % group.size()})
        info["paths"] = {p: {"iface": group.path(p).iface, "kind": group.path(p).kind,
                             "state": group.path(p).state} for p in peers}
        info["events"] = [e.kind for e in group.events()]
        info["ops"] = group.stats()["ops"]
    if group is not None:
        mx.eval(mx.distributed.all_sum(mx.array(1.0), group=group))  # nobody leaves while a peer works
        if hasattr(group, "close"):
            group.close()
    np.savez(out, tokens=np.array(decode.tokens), logits=decode.logits, forced=forced)
    print(json.dumps(info), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
