"""Inferentia-style static shapes: graphs compiled for fixed (batch, sequence) buckets, inputs padded to them.

AWS Neuron compiles ahead of time for fixed shapes, so a server keeps one compiled model per bucket and pads every
request up to the smallest bucket that fits. This module emulates that on ONNX Runtime so the cost of padding is
measured honestly: per bucket (b, s) a prefill graph (input_ids [b, s]) and a decode graph (input_ids [b, 1]), both
with a KV cache of exactly [b, kv_heads, s, head_dim] and no symbolic dimension. s is the whole context
(prompt + new tokens). All graphs share one weights file.

Prompts are right-padded to s; causal attention keeps the real positions exact, and each decode step overwrites the
padded cache slot it moves into, so greedy tokens match the dynamic graph.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..bench.runner import GenResult, RssPeakMemory
from ..errors import UserError
from .decode import decode
from .graph import LOGITS_RANGE, build_decoder, symbolic_dims
from .runtime import GraphInfo, KVCache, make_session

STATIC_DIR = "static"
BUCKETS_FILE = "buckets.json"
WEIGHTS_FILE = "weights.data"


@dataclass(frozen=True)
class Bucket:
    batch: int
    seq: int

    @property
    def stem(self) -> str:
        return f"b{self.batch}_s{self.seq}"


def _set_dims(model, b: int, seq_in: int, s: int, kept: int) -> None:
    """Fix every graph I/O dim of a decoder built with symbolic dims."""
    fixed = {
        "batch_size": b,
        "sequence_length": seq_in,
        "total_sequence_length": s,
        "past_sequence_length": s,
        "present_sequence_length": s,
        "kept_sequence_length": kept,
    }
    for vi in list(model.graph.input) + list(model.graph.output):
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_param"):
                d.dim_value = fixed[d.dim_param]


def export_static(model, out_dir: Path, plan, cfg) -> dict[str, Any]:
    """Write static/<bucket>.{prefill,decode}.onnx + static/weights.data + static/buckets.json; returns records."""
    import onnx

    from .export import save_model, write_hf_sidecars

    sdir = out_dir / STATIC_DIR
    sdir.mkdir(parents=True, exist_ok=True)
    max_s = max(cfg.sequence_lengths)
    if max_s > model.config.max_position_embeddings:
        raise UserError(
            f"bucket sequence length {max_s} exceeds the model's max_position_embeddings "
            f"{model.config.max_position_embeddings}",
            field="export.sequence_lengths",
        )
    proto = build_decoder(model, plan, accuracy_level=cfg.accuracy_level, cache_length=max_s)
    # Write the weights once; every bucket graph then references the same external data.
    tmp = save_model(proto, sdir, "_weights.onnx", WEIGHTS_FILE)
    base = onnx.load(str(tmp), load_external_data=False)
    tmp.unlink()
    buckets = []
    for b in sorted(cfg.batch_sizes):
        for s in sorted(cfg.sequence_lengths):
            bk = Bucket(b, s)
            entry = {"batch": b, "sequence": s}
            for phase, seq_in, kept in (("prefill", s, 1), ("decode", 1, 1), ("score", s, s)):
                m = copy.deepcopy(base)
                _set_dims(m, b, seq_in, s, kept)
                left = symbolic_dims(m)
                if left:
                    raise RuntimeError(f"static graph {bk.stem}.{phase} still has symbolic dims: {left}")
                name = f"{bk.stem}.{phase}.onnx"
                onnx.save(m, str(sdir / name))
                entry[phase] = f"{STATIC_DIR}/{name}"
            buckets.append(entry)
    (sdir / BUCKETS_FILE).write_text(json.dumps({"buckets": buckets, "weights": WEIGHTS_FILE}, indent=2) + "\n")
    write_hf_sidecars(model, out_dir)
    from .neuron import neuron_export_args

    return {
        "buckets": buckets,
        "symbolic_dims": 0,
        "neuron_export_args": neuron_export_args(cfg, "<base model dir>", "<output dir>"),
    }


def read_buckets(path: Path) -> list[dict]:
    f = Path(path) / STATIC_DIR / BUCKETS_FILE
    if not f.is_file():
        raise UserError(f"'{path}' has no {STATIC_DIR}/{BUCKETS_FILE}: not a neuron-static variant")
    return json.loads(f.read_text())["buckets"]


def select_bucket(buckets: list[dict], batch: int, total: int) -> dict:
    """Smallest bucket with batch >= batch and sequence >= total (prompt + new tokens); UserError if none fits."""
    fits = [bk for bk in buckets if bk["batch"] >= batch and bk["sequence"] >= total]
    if not fits:
        max_b = max(bk["batch"] for bk in buckets)
        max_s = max(bk["sequence"] for bk in buckets)
        what = (
            f"batch {batch} > largest bucket batch {max_b}"
            if batch > max_b
            else (f"prompt + new tokens = {total} > largest bucket sequence length {max_s}")
        )
        raise UserError(
            f"no static bucket fits: {what}",
            field="neuron-static",
            allowed=[f"b{bk['batch']}xs{bk['sequence']}" for bk in buckets],
            hint="Shorten the prompt or max_new_tokens, add a bigger bucket to the recipe's export step "
            "(batch_sizes / sequence_lengths), or use the onnx-cpu target (dynamic shapes)",
        )
    return min(fits, key=lambda bk: (bk["sequence"], bk["batch"]))


class StaticRunner(RssPeakMemory):
    """Runner for a neuron-static variant on ONNX Runtime CPU: bucket selection, padding, fixed-size KV cache."""

    loop = "ort-static-buckets-padded"

    def __init__(self, path: Path, tokenizer: Any, *, device: str = "cpu", threads: int | None = None):
        self.path, self.tokenizer, self.device, self.threads = Path(path), tokenizer, device, threads
        self.buckets = read_buckets(self.path)
        self._sessions: dict[str, Any] = {}
        first = self._session(self.buckets[0]["decode"])
        self.info = GraphInfo(first)
        self.vocab_size = self.info.vocab
        self.pad_id = int(getattr(tokenizer, "pad_token_id", None) or 0) if tokenizer is not None else 0
        self.last_bucket: dict | None = None

    def _session(self, rel: str):
        if rel not in self._sessions:
            self._sessions[rel] = make_session(self.path / rel, self.device, self.threads)
        return self._sessions[rel]

    def _run(self, sess, feeds: dict[str, np.ndarray], cache: KVCache, logits: np.ndarray) -> None:
        import onnxruntime as ort

        binding = sess.io_binding()
        cache.bind(binding, self.info.layers)
        for k, v in feeds.items():
            binding.bind_ortvalue_input(k, ort.OrtValue.ortvalue_from_numpy(v))
        binding.bind_ortvalue_output("logits", ort.OrtValue.ortvalue_from_numpy(logits))
        sess.run_with_iobinding(binding)

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, *, do_sample: bool = False,
                 temperature: float = 1.0, top_p: float = 1.0, eos_token_id: int | None = None, on_step=None,
                 seed: int | None = None, on_token=None) -> GenResult:  # fmt: skip
        """As OrtRunner.generate, padded to the smallest bucket that holds prompt + max_new_tokens."""
        ids = input_ids.cpu().numpy().astype(np.int64)
        n, t = ids.shape
        bk = select_bucket(self.buckets, n, t + max_new_tokens)
        self.last_bucket = bk
        layout = _PaddedBucket(self, bk, ids)
        return decode(layout, max_new_tokens, do_sample=do_sample, temperature=temperature, top_p=top_p,
                      eos_token_id=eos_token_id, on_step=on_step, seed=seed, on_token=on_token)  # fmt: skip

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Every position's logits through the bucket's `score` graph (input padded to [b, s], logits [b, s, V])."""
        ids = input_ids.cpu().numpy().astype(np.int64)
        n, t = ids.shape
        bk = select_bucket(self.buckets, n, t)
        b, s = bk["batch"], bk["sequence"]
        padded = np.full((b, s), self.pad_id, np.int64)
        padded[:n, :t] = ids
        logits = np.empty((b, s, self.vocab_size), np.float32)
        feeds = {"input_ids": padded, "attention_mask": np.ones((b, s), np.int64),
                 LOGITS_RANGE: np.array([0, s], np.int64)}  # fmt: skip
        self._run(self._session(bk["score"]), feeds, KVCache(self.info, b, s), logits)
        return torch.from_numpy(logits[:n, :t].copy())

    def estimate_bytes(self, batch: int, seq_len: int) -> int | None:
        bk = select_bucket(self.buckets, batch, seq_len)
        return 2 * self.info.layers * bk["batch"] * self.info.kv_heads * self.info.head_dim * bk["sequence"] * 4

    def close(self) -> None:
        self._sessions.clear()


class _PaddedBucket:
    """StaticRunner's layout: prompt right-padded to the bucket, batch padding rows repeating the first row."""

    def __init__(self, runner: StaticRunner, bk: dict, ids: np.ndarray):
        self.runner, self.ids = runner, ids
        self.rows, self.t = ids.shape
        self.b, self.s = bk["batch"], bk["sequence"]
        self.prefill_sess, self.decode_sess = runner._session(bk["prefill"]), runner._session(bk["decode"])
        self.cache = KVCache(runner.info, self.b, self.s)
        self.logits = np.empty((self.b, 1, runner.vocab_size), np.float32)
        self.mask = np.zeros((self.b, self.s), np.int64)
        self.step_ids = np.zeros((self.b, 1), np.int64)
        self.keep = np.array([0, 1], np.int64)

    def prefill(self) -> np.ndarray:
        n, t = self.rows, self.t
        padded = np.full((self.b, self.s), self.runner.pad_id, np.int64)
        padded[:n, :t] = self.ids
        padded[n:, :t] = self.ids[0]  # batch padding rows repeat the first prompt
        feeds = {"input_ids": padded, "attention_mask": np.ones((self.b, self.s), np.int64),
                 LOGITS_RANGE: np.array([t - 1, t], np.int64)}  # fmt: skip
        self.runner._run(self.prefill_sess, feeds, self.cache, self.logits)
        return self.logits[:n, -1]

    def step(self, i: int, tokens: np.ndarray) -> np.ndarray:
        self.step_ids[: self.rows, 0] = tokens
        self.step_ids[self.rows :, 0] = tokens[0]
        self.mask[:, : self.t + i] = 1  # the new token sits at position t + i - 1
        feeds = {"input_ids": self.step_ids, "attention_mask": self.mask, LOGITS_RANGE: self.keep}
        self.runner._run(self.decode_sess, feeds, self.cache, self.logits)
        return self.logits[: self.rows, -1]
