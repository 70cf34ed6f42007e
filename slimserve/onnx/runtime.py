"""A lean ONNX Runtime decode loop: one session, IO binding, KV cache pre-allocated once and updated in place.

Per token the loop writes the new token id into a bound buffer, re-binds the attention mask as a longer view of one
pre-filled ones buffer (a pointer and a shape, no copy) and calls ``run_with_iobinding``. The KV buffers are bound as
both ``past_key_values.N.*`` and ``present.N.*``; GroupQueryAttention sees the same pointer and appends in place, so
no step concatenates or copies the cache. Logits are written into one pre-allocated [B, 1, V] buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..bench.runner import GenResult, RssPeakMemory
from ..errors import UserError
from .decode import check_lengths, decode, pick_token  # noqa: F401 (pick_token re-export)
from .graph import ALL_POSITIONS, LOGITS_RANGE

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def session_options(threads: int | None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # the overridable `logits_range` initializer warns on every load
    return so


def make_session(path: Path, device: str = "cpu", threads: int | None = None):
    """An InferenceSession on the device's execution provider; UserError naming the alternatives if it is missing."""
    import onnxruntime as ort

    provider = PROVIDERS.get(device.split(":")[0])
    if provider is None:
        raise UserError(f"no ONNX Runtime execution provider for device '{device}'", allowed=sorted(PROVIDERS))
    have = ort.get_available_providers()
    if provider not in have:
        raise UserError(
            f"ONNX Runtime has no {provider} here (available: {', '.join(have)})",
            field="--target",
            hint="Use target onnx-cpu, or install onnxruntime-gpu on a machine with CUDA",
        )
    return ort.InferenceSession(str(path), session_options(threads), providers=[provider])


class GraphInfo:
    """What the loop needs to know about a decoder graph, read from its inputs."""

    def __init__(self, session):
        ins = {i.name: i for i in session.get_inputs()}
        self.layers = sum(1 for n in ins if n.startswith("past_key_values.") and n.endswith(".key"))
        if "input_ids" not in ins or "attention_mask" not in ins or self.layers == 0:
            raise UserError("the ONNX graph is not a decoder with past key/values (inputs: " + ", ".join(ins) + ")")
        kv = ins["past_key_values.0.key"].shape
        self.kv_heads, self.head_dim = int(kv[1]), int(kv[3])
        self.vocab = int(session.get_outputs()[0].shape[-1])
        self.has_range = LOGITS_RANGE in {i.name for i in session.get_overridable_initializers()}
        self.static_batch = ins["input_ids"].shape[0] if isinstance(ins["input_ids"].shape[0], int) else None
        self.static_seq = ins["input_ids"].shape[1] if isinstance(ins["input_ids"].shape[1], int) else None
        self.static_cache = kv[2] if isinstance(kv[2], int) else None
        self.static_total = ins["attention_mask"].shape[1] if isinstance(ins["attention_mask"].shape[1], int) else None


class KVCache:
    """Fixed-size per-layer KV buffers [B, kv_heads, capacity, head_dim] wrapped as OrtValues (shared memory)."""

    def __init__(self, info: GraphInfo, batch: int, capacity: int, device: str = "cpu"):
        import onnxruntime as ort

        self.batch, self.capacity = batch, capacity
        shape = (batch, info.kv_heads, capacity, info.head_dim)
        if device.startswith("cuda"):  # keep the cache on the GPU; binding host arrays would copy it every step
            dev_id = int(device.split(":")[1]) if ":" in device else 0
            self.arrays = []
            self.values = [
                ort.OrtValue.ortvalue_from_shape_and_type(shape, np.float32, "cuda", dev_id)
                for _ in range(2 * info.layers)
            ]
            self._nbytes = 2 * info.layers * int(np.prod(shape)) * 4
            return
        self.arrays = [np.zeros(shape, np.float32) for _ in range(2 * info.layers)]
        self.values = [ort.OrtValue.ortvalue_from_numpy(a) for a in self.arrays]
        self._nbytes = sum(a.nbytes for a in self.arrays)

    def bind(self, binding, layers: int) -> None:
        for i in range(layers):
            for j, kv in enumerate(("key", "value")):
                v = self.values[2 * i + j]
                binding.bind_ortvalue_input(f"past_key_values.{i}.{kv}", v)
                binding.bind_ortvalue_output(f"present.{i}.{kv}", v)

    @property
    def nbytes(self) -> int:
        return self._nbytes


def _max_positions(model_dir: Path) -> int | None:
    """The rotary cache length the graph was built with (config.json next to it), if known."""
    import json

    cfg = model_dir / "config.json"
    if not cfg.is_file():
        return None
    return json.loads(cfg.read_text()).get("max_position_embeddings")


class OrtRunner(RssPeakMemory):
    """Runner (slimserve.bench.runner protocol) for a fused decoder graph on ONNX Runtime."""

    loop = "ort-iobinding-gqa-shared-kv"

    def __init__(self, model_path: Path, tokenizer: Any, *, device: str = "cpu", threads: int | None = None):
        self.path, self.tokenizer, self.device, self.threads = Path(model_path), tokenizer, device, threads
        self.session = make_session(self.path, device, threads)
        self.info = GraphInfo(self.session)
        if not self.info.has_range:
            raise UserError(
                f"{self.path.name} is not a slimserve fused graph (no {LOGITS_RANGE} input)",
                hint="Build it with `export: {format: onnx, graph: fused}`, or run it with optimum's ORTModelForCausalLM",
            )
        self.vocab_size = self.info.vocab
        self.max_positions = _max_positions(self.path.parent)
        self._cache: KVCache | None = None

    # --- helpers -----------------------------------------------------------------------------------------------------
    def _kv(self, batch: int, need: int) -> KVCache:
        if self._cache is None or self._cache.batch != batch or self._cache.capacity < need:
            self._cache = None  # free the old buffers first
            self._cache = KVCache(self.info, batch, need, self.device)
        return self._cache

    def _prepare(self, batch: int, capacity: int):
        """A binding with KV, logits and logits_to_keep bound; returns (binding, logits buffer, ones buffer)."""
        import onnxruntime as ort

        binding = self.session.io_binding()
        cache = self._kv(batch, capacity)
        cache.bind(binding, self.info.layers)
        logits = np.empty((batch, 1, self.vocab_size), np.float32)
        binding.bind_ortvalue_output("logits", ort.OrtValue.ortvalue_from_numpy(logits))
        self._range = np.array([-1, ALL_POSITIONS], np.int64)  # the last position only
        binding.bind_ortvalue_input(LOGITS_RANGE, ort.OrtValue.ortvalue_from_numpy(self._range))
        ones = np.ones(batch * cache.capacity, np.int64)
        return binding, logits, ones

    # --- Runner protocol ---------------------------------------------------------------------------------------------
    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int,
        *,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        eos_token_id: int | None = None,
        on_step: Callable[[int], None] | None = None,
        seed: int | None = None,
        on_token: Callable[[np.ndarray], None] | None = None,
    ) -> GenResult:
        """Decode max_new_tokens for same-length prompts input_ids [B, T]; stops early only if eos_token_id is given.

        on_token gets each step's new token ids [B] as soon as they are picked (streaming); an exception it raises
        ends the decode there.
        """
        ids = np.ascontiguousarray(input_ids.cpu().numpy().astype(np.int64))
        b, t = ids.shape
        check_lengths(t, max_new_tokens, self.max_positions)
        layout = _SharedKV(self, ids, t + max_new_tokens)
        return decode(layout, max_new_tokens, do_sample=do_sample, temperature=temperature, top_p=top_p,
                      eos_token_id=eos_token_id, on_step=on_step, seed=seed, on_token=on_token)  # fmt: skip

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Full-sequence forward (empty cache, every position's logits): float32 [B, T, V]."""
        ids = input_ids.cpu().numpy().astype(np.int64)
        b, t = ids.shape
        feed: dict[str, np.ndarray] = {"input_ids": ids, "attention_mask": np.ones((b, t), np.int64)}
        empty = np.zeros((b, self.info.kv_heads, 0, self.info.head_dim), np.float32)
        for i in range(self.info.layers):
            feed[f"past_key_values.{i}.key"] = empty
            feed[f"past_key_values.{i}.value"] = empty
        return torch.from_numpy(self.session.run(["logits"], feed)[0])

    def estimate_bytes(self, batch: int, seq_len: int) -> int | None:
        kv = 2 * self.info.layers * batch * self.info.kv_heads * self.info.head_dim * seq_len * 4
        return kv + batch * self.vocab_size * 4 * 2

    def close(self) -> None:
        self._cache = None
        self.session = None


class _SharedKV:
    """OrtRunner's layout: one KV buffer bound as past and present; the mask a longer view of one ones buffer."""

    def __init__(self, runner: OrtRunner, ids: np.ndarray, capacity: int):
        import onnxruntime as ort

        self.rows, self.t = ids.shape
        self.session = runner.session
        self.binding, self.logits, self.ones = runner._prepare(self.rows, capacity)
        self.binding.bind_ortvalue_input("input_ids", ort.OrtValue.ortvalue_from_numpy(ids))
        self.step_ids = np.empty((self.rows, 1), np.int64)

    def _run(self, total: int) -> np.ndarray:
        self.binding.bind_input("attention_mask", "cpu", 0, np.int64, [self.rows, total], self.ones.ctypes.data)
        self.session.run_with_iobinding(self.binding)
        return self.logits[:, -1]

    def prefill(self) -> np.ndarray:
        return self._run(self.t)

    def step(self, i: int, tokens: np.ndarray) -> np.ndarray:
        import onnxruntime as ort

        if i == 1:
            self.binding.bind_ortvalue_input("input_ids", ort.OrtValue.ortvalue_from_numpy(self.step_ids))
        self.step_ids[:, 0] = tokens
        return self._run(self.t + i)
