"""Short recovery after pruning: distil the unpruned model (teacher) into the pruned one (student)
on calibration text, with KL divergence on the next-token distributions.

Only decoder-layer weights train (embeddings, norms and the tied head stay fixed). Sparse weights
keep their zeros: the masks are re-applied after every optimizer step. Quality before and after is
measured on held-out windows of the same text (after the training windows) and returned for the manifest.

```yaml
recovery: {steps: 100, lr: 5.0e-5, batch_size: 4, seq_len: 256, eval_windows: 4}
```
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from ..calibration.config import CalibrationConfig
from ..calibration.layerwise import decoder_layers
from .configs import RecoveryConfig


def _windows(tokenizer, calib: CalibrationConfig, cfg: RecoveryConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Training windows (cycled as needed) and held-out evaluation windows from the calibration text."""
    from ..data import calibration_batches, read_text

    text = read_text(calib.text)
    n_train = min(cfg.steps * cfg.batch_size, 256)
    # Asking for the training and held-out windows together checks that the text is long enough for both.
    ids = calibration_batches(tokenizer, text, n_train + cfg.eval_windows, cfg.seq_len, source="(recovery)")
    tail = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids[0]
    held_out = tail[-cfg.eval_windows * cfg.seq_len :].reshape(cfg.eval_windows, cfg.seq_len)
    return ids[:n_train], held_out  # held-out windows come from the end of the text, after the training ones


def _training_record(calib: CalibrationConfig, train: torch.Tensor) -> dict:
    """Which tokens of which text the distillation trained on (bench refuses to evaluate on them)."""
    import hashlib

    from ..data import read_text

    sha = hashlib.sha256(read_text(calib.text).encode("utf-8")).hexdigest()
    return {"text": calib.text, "token_range": [0, int(train.numel())], "text_sha256": sha}


@torch.no_grad()
def distill_quality(student, teacher, windows: torch.Tensor) -> dict:
    """Perplexity of the student and its KL divergence to the teacher (nats/token) on the windows."""
    nll, kld, count = 0.0, 0.0, 0
    for w in windows:
        s = F.log_softmax(student(w[None], use_cache=False).logits[0, :-1].float(), -1)
        t = F.log_softmax(teacher(w[None], use_cache=False).logits[0, :-1].float(), -1)
        nll += float(-s.gather(-1, w[1:, None]).sum())
        kld += float((t.exp() * (t - s)).sum())
        count += w.numel() - 1
    return {"ppl": round(float(torch.exp(torch.tensor(nll / count))), 4), "kld": round(kld / count, 5)}


def sparsity_masks(model) -> dict[str, torch.Tensor]:
    """Boolean keep-masks of weights that are exactly zero (to keep them zero while training)."""
    return {n: p != 0 for n, p in model.named_parameters() if p.dim() == 2 and bool((p == 0).any())}


def recover(student, teacher, tokenizer, cfg: RecoveryConfig, calib: CalibrationConfig, masks=None) -> dict:
    """Distil teacher into student in place; returns before/after quality and timing."""
    started = time.perf_counter()
    train, held_out = _windows(tokenizer, calib, cfg)
    trained_on = _training_record(calib, train)
    teacher.eval()
    before = distill_quality(student.eval(), teacher, held_out)
    params = [p for p in decoder_layers(student).parameters() if p.dim() == 2]
    trainable = {id(p) for p in params}
    for p in student.parameters():
        p.requires_grad_(id(p) in trainable)
    named = dict(student.named_parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    student.train()
    losses = []
    for step in range(cfg.steps):
        idx = torch.arange(step * cfg.batch_size, (step + 1) * cfg.batch_size) % len(train)
        batch = train[idx]
        with torch.no_grad():
            t_logits = teacher(batch, use_cache=False).logits.float()
        s_logits = student(batch, use_cache=False).logits.float()
        temp = cfg.temperature
        loss = F.kl_div(
            F.log_softmax(s_logits / temp, -1).flatten(0, 1),
            F.log_softmax(t_logits / temp, -1).flatten(0, 1),
            log_target=True,
            reduction="batchmean",
        ) * (temp**2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if masks:
            with torch.no_grad():
                for n, m in masks.items():
                    named[n].mul_(m)
        losses.append(loss.item())
    student.eval()
    for p in student.parameters():
        p.requires_grad_(False)
    after = distill_quality(student, teacher, held_out)
    return {
        "config": cfg.model_dump(),
        "training": trained_on,
        "before": before,
        "after": after,
        "loss_first": round(losses[0], 5),
        "loss_last": round(losses[-1], 5),
        "seconds": round(time.perf_counter() - started, 1),
    }


def maybe_recover(student, teacher, tokenizer, cfg: RecoveryConfig | None, calib: CalibrationConfig, masks=None):
    if cfg is None:
        return None
    return recover(student, teacher, tokenizer, cfg, calib, masks)
