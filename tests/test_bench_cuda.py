"""The cuda target on a real GPU: the lean loops agree with generate(), memory is CUDA's, OOM lands in batch_errors.
Run by bench/gpu_check.sh on a lent GPU; skipped elsewhere."""

import pytest
import torch

from slimserve.bench.targets import get_target, load_torch_model
from slimserve.bench.torch_runner import TorchRunner

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run bench/gpu_check.sh on a GPU)")


@cuda
def test_cuda_target_available():
    assert get_target("cuda").available() is None


@cuda
def test_cuda_loops_match_cpu_and_report_cuda_memory(tiny_llama_dir):
    model, tok = load_torch_model(tiny_llama_dir, "cpu")
    ids = torch.randint(3, model.config.vocab_size, (2, 10), generator=torch.Generator().manual_seed(0))
    cpu_tokens = TorchRunner(model, tok, loop="generate").generate(ids, 5).tokens
    gpu_model, _ = load_torch_model(tiny_llama_dir, "cuda")
    for loop in ("static-kv", "dynamic-kv", "generate"):
        r = TorchRunner(gpu_model, tok, device="cuda", loop=loop)
        r.reset_peak_memory()
        g = r.generate(ids, 5)
        assert g.tokens.device.type == "cpu" and torch.equal(g.tokens, cpu_tokens), loop
        assert r.peak_memory_mb() > 0
    logits = TorchRunner(gpu_model, tok, device="cuda").logits(ids)
    assert logits.device.type == "cpu" and logits.dtype == torch.float32


@cuda
def test_cuda_batch_too_big_is_reported(tiny_llama_dir, monkeypatch):
    from slimserve.bench import speed
    from slimserve.bench.speed import SpeedConfig, run_speed

    runner = get_target("cuda").load(tiny_llama_dir, {"format": "hf"})
    free = torch.cuda.mem_get_info()[0]
    assert runner.estimate_bytes(1, 16) < free
    # pretend only what batch 1 needs is free: batch 64 must be refused with the reason, batch 1 must run
    monkeypatch.setattr(speed, "available_bytes", lambda device: 2 * runner.estimate_bytes(1, 16))
    cfg = SpeedConfig(
        warmup=0,
        min_iters=1,
        min_seconds=0,
        prompt_lens=(8,),
        new_tokens=3,
        batches=(1, 64),
        batch_prompt_len=8,
        batch_new_tokens=8,
    )
    s = run_speed(runner, torch.arange(3, 400) % runner.vocab_size, cfg)
    assert "GiB free" in s.batch_errors[64] and 1 in s.batch_tok_s
