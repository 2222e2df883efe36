"""Tiny mlx-lm models for tests and benchmarks: random weights, fixed seed, nothing downloaded.

``build_llama`` makes an mlx-lm Llama (``mlx_lm.models.llama.Model``) whose
weights come from a seeded generator, in bfloat16, so every rank of a job builds
the same model and shards it with mlx-lm's own, unchanged ``model.shard(group)``
(tensor parallel).  ``build_model(arch="qwen2")`` makes a Qwen2 the same way,
whose mlx-lm code also splits layers across ranks (``pipeline``: ``send``,
``recv_like`` and ``all_gather``).
``greedy_decode`` and ``forced_logits`` run it one token at a time through the KV
cache, as decoding does: two ``all_sum`` of ``[1, 1, hidden]`` per layer per token.
``write_model`` puts one in a directory, with a tokenizer, for mlx-lm's own loaders
and command-line tools (``mlx_lm.benchmark --model DIR``).

Random weights make greedy decoding settle on one token quickly, so comparisons
should also use ``forced_logits`` over a varied token sequence (teacher forcing).
mlx-lm is a test/benchmark dependency only (the ``test`` extra).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np


@dataclass(frozen=True)
class LlamaShape:
    """The knobs of a tiny Llama; heads, kv heads and intermediate size must divide by
    the group size to shard."""

    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 8
    num_kv_heads: int = 4
    vocab_size: int = 1024
    intermediate_size: int = 512

    def args(self, arch: str = "llama") -> Any:
        """mlx-lm ``ModelArgs`` of ``arch`` for this shape."""
        ModelArgs = _arch(arch).ModelArgs
        return ModelArgs(model_type=arch, hidden_size=self.hidden_size,
                         num_hidden_layers=self.num_layers, intermediate_size=self.intermediate_size,
                         num_attention_heads=self.num_heads, num_key_value_heads=self.num_kv_heads,
                         rms_norm_eps=1e-5, vocab_size=self.vocab_size, tie_word_embeddings=True)


ARCHES = ("llama", "qwen2")


def _arch(arch: str) -> Any:
    if arch not in ARCHES:
        raise ValueError(f"arch must be one of {ARCHES}, not {arch!r}")
    import importlib

    return importlib.import_module(f"mlx_lm.models.{arch}")


def build_model(shape: LlamaShape | None = None, *, arch: str = "llama", seed: int = 0,
                dtype: mx.Dtype = mx.bfloat16, **overrides: int) -> Any:
    """An mlx-lm model of ``arch`` with random weights from ``seed``, cast to ``dtype``
    and evaluated.  ``overrides`` replace fields of ``shape`` (``hidden_size=512``, ...).
    The same arguments give bit-identical weights in every process."""
    shape = replace(shape or LlamaShape(), **overrides)
    mx.random.seed(seed)
    model = _arch(arch).Model(shape.args(arch))
    model.set_dtype(dtype)
    mx.eval(model.parameters())
    return model


def build_llama(shape: LlamaShape | None = None, *, seed: int = 0, dtype: mx.Dtype = mx.bfloat16,
                **overrides: int) -> Any:
    """An mlx-lm Llama with random weights from ``seed`` (see ``build_model``)."""
    return build_model(shape, arch="llama", seed=seed, dtype=dtype, **overrides)


def write_model(directory: str | Path, shape: LlamaShape | None = None, *, arch: str = "llama",
                seed: int = 0, dtype: mx.Dtype = mx.bfloat16, **overrides: int) -> Path:
    """``build_model(...)`` as an mlx-lm model directory: ``config.json``, the weights
    (``model.safetensors`` and its index) and a word-level tokenizer whose words are
    ``w0`` ... ``w<vocab_size - 1>`` (``w0`` unknown, ``w1`` end of sequence).
    mlx-lm's ``load``, ``sharded_load`` and command-line tools read it as they read a
    downloaded model (set HF_HUB_OFFLINE=1: nothing needs the network)."""
    from mlx_lm.utils import save_config, save_model
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    shape = replace(shape or LlamaShape(), **overrides)
    out = Path(directory)
    save_model(out, build_model(shape, arch=arch, seed=seed, dtype=dtype))
    # unset fields (None) are left out: transformers' config check refuses them
    save_config({k: v for k, v in asdict(shape.args(arch)).items() if v is not None}, out / "config.json")
    words = Tokenizer(models.WordLevel({f"w{i}": i for i in range(shape.vocab_size)}, unk_token="w0"))
    words.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=words, unk_token="w0", eos_token="w1").save_pretrained(out)
    return out


def shard(model: Any, group: Any) -> Any:
    """Tensor-parallel over ``group`` with mlx-lm's own ``model.shard`` (unchanged)."""
    model.shard(group)
    mx.eval(model.parameters())
    return model


def pipeline(model: Any, group: Any) -> Any:
    """Pipeline-parallel over ``group`` with mlx-lm's own ``model.model.pipeline``
    (Qwen2): each rank keeps its share of the layers."""
    model.model.pipeline(group)
    mx.eval(model.parameters())
    return model


def prompt_tokens(count: int, vocab_size: int, seed: int = 1) -> list[int]:
    """``count`` varied token ids, the same for every process given the same seed."""
    rng = np.random.default_rng(seed)
    return [int(t) for t in rng.integers(0, vocab_size, size=count)]


def _last_logits(model: Any, tokens: Sequence[int], cache: list[Any]) -> mx.array:
    out = model(mx.array([list(tokens)], dtype=mx.int32), cache=cache)
    last = out[0, -1, :]
    mx.eval(last)
    return last


def _host(logits: mx.array) -> np.ndarray:
    """float32 copy of a logits row (exact for bfloat16/float16)."""
    return np.array(logits.astype(mx.float32))


@dataclass
class Decode:
    """A greedy decode: the tokens, the logits each was chosen from, and the time taken."""

    tokens: list[int]
    logits: np.ndarray  # (steps, vocab) float32, exact copies of the model's logits
    prefill_s: float
    decode_s: float

    @property
    def tokens_per_s(self) -> float:
        """Decode speed: the tokens after the first (which comes from the prefill)."""
        return (len(self.tokens) - 1) / self.decode_s if self.decode_s > 0 else float("inf")


def greedy_decode(model: Any, prompt: Sequence[int], steps: int) -> Decode:
    """Prefill ``prompt``, then ``steps`` greedy tokens, one forward pass each (KV cache)."""
    from mlx_lm.models.cache import make_prompt_cache

    if steps < 1 or not prompt:
        raise ValueError("greedy_decode needs a prompt and steps >= 1")
    cache = make_prompt_cache(model)
    t0 = time.perf_counter()
    logits = _last_logits(model, prompt, cache)
    t1 = time.perf_counter()
    tokens: list[int] = []
    rows: list[np.ndarray] = []
    for _ in range(steps):
        rows.append(_host(logits))
        token = int(np.array(mx.argmax(logits)))
        tokens.append(token)
        if len(tokens) < steps:
            logits = _last_logits(model, [token], cache)
    t2 = time.perf_counter()
    return Decode(tokens, np.stack(rows), t1 - t0, t2 - t1)


def mlx_lm_tokens(model: Any, prompt: Sequence[int], steps: int) -> list[int]:
    """Greedy tokens from mlx-lm's own ``generate_step`` (its streams and async eval)."""
    from mlx_lm.generate import generate_step

    out: list[int] = []
    for token, _ in generate_step(mx.array(list(prompt)), model, max_tokens=steps):
        out.append(int(token))
    return out


def forced_logits(model: Any, tokens: Sequence[int]) -> np.ndarray:
    """Teacher forcing: feed ``tokens`` one at a time through the KV cache and return
    the logits after each, shape ``(len(tokens), vocab)`` float32."""
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    return np.stack([_host(_last_logits(model, [t], cache)) for t in tokens])


__all__ = ["ARCHES", "Decode", "LlamaShape", "build_llama", "build_model", "forced_logits",
           "greedy_decode", "mlx_lm_tokens", "pipeline", "prompt_tokens", "shard", "write_model"]
