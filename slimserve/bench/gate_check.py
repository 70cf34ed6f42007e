"""Build-time quality gates (`gates: {check: build}`): score a staged variant against the float base on held-out
text before it lands in the catalog, with the same perplexity windows `slimserve bench` uses.

The verdict itself is slimserve.gates.evaluate; this module only measures. The reference logits are computed once per
build (`GateChecker` keeps them) on the PyTorch CPU target, and each variant runs on the first target that can run its
artifact (cpu for PyTorch formats, onnx-cpu for ONNX graphs, neuron-static for static buckets, llamacpp-cpu
for GGUF files).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..gates import GateResult, evaluate
from .profiles import get_profile
from .quality import QualityConfig, RefLogits, calibration_overlap, eval_range, run_perplexity
from .targets import get_target, target_names

# Which target a freshly built artifact is checked on, in order of preference.
NATURAL_TARGETS = ("cpu", "onnx-cpu", "neuron-static", "llamacpp-cpu")
TEXT_NAME = "Pride and Prejudice (guidellm)"


def natural_target(manifest: dict[str, Any]):
    """The first target that runs this artifact on this machine; UserError when none does."""
    names = [n for n in NATURAL_TARGETS if n in target_names()]
    why = {}
    for name in names:
        tgt = get_target(name)
        why[name] = tgt.available() or tgt.supports(manifest)
        if why[name] is None:
            return tgt
    raise UserError(
        f"no target here can run a '{manifest.get('format')}' artifact to check its gates",
        hint="; ".join(f"{n}: {w}" for n, w in why.items()) + ". Drop `check: build` and check with `slimserve bench`",
    )


class GateChecker:
    """Reference logits of the base model on the held-out windows, then one verdict per variant."""

    def __init__(self, base_path: Path, threads: int | None = None, qcfg: QualityConfig | None = None):
        from ..data import read_text

        self.base_path, self.threads = Path(base_path), threads
        self.qcfg = qcfg or QualityConfig(**get_profile("quick").quality)
        self.text = read_text(None)
        self.sha = hashlib.sha256(self.text.encode("utf-8")).hexdigest()
        self._ids = None
        self._ref: RefLogits | None = None
        self._ref_ppl: float | None = None

    def _reference(self) -> None:
        from .speed import text_token_ids

        if self._ref is not None:
            return
        runner = get_target("cpu").load(self.base_path, {"format": "hf"}, self.threads)
        try:
            self._ids = text_token_ids(runner.tokenizer, self.text, max_chars=None)
            q, self._ref = run_perplexity(runner, self._ids, self.qcfg, source=TEXT_NAME, ref=None, keep=True)
            self._ref_ppl = q.ppl
        finally:
            runner.close()

    def check(self, path: Path, manifest: dict[str, Any]) -> GateResult:
        """Measure the staged variant at `path` and evaluate its gates."""
        self._reference()
        span = eval_range(self._ids.numel(), self.qcfg, source=TEXT_NAME)
        overlap = calibration_overlap(manifest, self.sha, span)
        if overlap:
            raise UserError(f"variant '{manifest['name']}' cannot be gated on held-out text: {overlap}",
                            hint="calibrate on fewer samples so the last part of the text stays unseen")  # fmt: skip
        tgt = natural_target(manifest)
        runner = tgt.load(Path(path), manifest, self.threads)
        try:
            q, _ = run_perplexity(runner, self._ids, self.qcfg, source=TEXT_NAME, ref=self._ref, keep=False)
        finally:
            runner.close()
        q.ref_ppl, q.ppl_delta, q.eval_sha256 = self._ref_ppl, q.ppl / self._ref_ppl - 1.0, self.sha
        return evaluate(manifest.get("gates"), q, target=tgt.name, run_id="build")


# ---------------------------------------------------------------- the bench's side


def refuse_calibration_overlap(rows: list[Any], n_tokens: int, text_sha: str, qcfg: QualityConfig, source: str):
    """UserError before measuring when the perplexity windows would read a variant's calibration windows."""
    span = eval_range(n_tokens, qcfg, source=source)
    for row in rows:
        why = calibration_overlap(row.manifest, text_sha, span)
        if why:
            raise UserError(
                f"variant '{row.name}' would be scored on text it was calibrated on: {why}",
                field="--eval-text",
                hint="evaluate on another text, or fewer windows (--limit), so no window is one the variant has seen",
            )


def record_verdicts(records: list[Any], manifests: dict[str, dict], text_sha: str, log) -> None:
    """Each record's gate verdict on its own quality (same text and target, against this run's reference)."""
    for r in records:
        m = manifests[r.variant]
        if r.quality is not None:
            r.quality.eval_sha256 = text_sha
        verdict = evaluate(m.get("gates"), r.quality, reference=bool(m.get("reference")), target=r.target,
                           run_id=r.run_id)  # fmt: skip
        r.gate = verdict.to_dict()
        if verdict.status in ("passed", "rejected", "unchecked"):
            log(f"gates {r.variant}: {verdict.summary()}")
