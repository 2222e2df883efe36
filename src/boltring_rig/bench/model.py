"""The tiny Llama the decode benchmark runs: mlx-lm's own model, random weights from
a fixed seed, bfloat16, nothing downloaded.

``boltring_rig.lab.models`` (the shared builder for tests and benchmarks) is used when
this tree has it; otherwise a minimal builder here makes the same kind of model.
Every rank builds identical full weights, then mlx-lm's unchanged
``model.shard(group)`` splits them.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np

try:
    from boltring_rig.lab import models as _shared
except ImportError:  # not merged into this tree yet
    _shared = None

BUILDER = "boltring_rig.lab.models" if _shared is not None else "boltring_rig.bench.model (minimal)"

HEADS = 4            # heads, kv heads and the MLP width divide by 1, 2 and 4 ranks
INTERMEDIATE = 512
VOCAB = 1024


def build(*, seed: int = 0, hidden: int = 256, layers: int = 16) -> Any:
    """An evaluated bfloat16 mlx-lm Llama, bit-identical in every process for one seed."""
    if _shared is not None:
        return _shared.build_llama(seed=seed, dtype=mx.bfloat16, hidden_size=hidden, num_layers=layers,
                                   num_heads=HEADS, num_kv_heads=HEADS, vocab_size=VOCAB,
                                   intermediate_size=INTERMEDIATE)
    from mlx_lm.models.llama import Model, ModelArgs

    args = ModelArgs(model_type="llama", hidden_size=hidden, num_hidden_layers=layers,
                     intermediate_size=INTERMEDIATE, num_attention_heads=HEADS,
                     num_key_value_heads=HEADS, rms_norm_eps=1e-5, vocab_size=VOCAB,
                     tie_word_embeddings=True)
    mx.random.seed(seed)
    model = Model(args)
    model.set_dtype(mx.bfloat16)
    mx.eval(model.parameters())
    return model


def shard(model: Any, group: Any) -> Any:
    """Tensor-parallel over `group` with mlx-lm's own `model.shard`."""
    model.shard(group)
    mx.eval(model.parameters())
    return model


def prompt(count: int, seed: int) -> list[int]:
    """`count` token ids, the same in every process."""
    rng = np.random.default_rng(seed + 1)
    return [int(t) for t in rng.integers(0, VOCAB, size=count)]
