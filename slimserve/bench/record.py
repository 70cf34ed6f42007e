"""Benchmark measurements as plain dataclasses: one BenchRecord per variant x target x run.

Every number is measured (speed, quality) or derived from measurements and a price (cost).
Fields that a run did not measure stay None, never a made-up value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

RECORD_VERSION = 1


@dataclass
class LatencyStats:
    """Repeated measurements of one quantity (seconds or tok/s), optimum-benchmark style."""

    count: int
    mean: float
    stdev: float
    p50: float
    p90: float
    p99: float
    min: float
    max: float
    p10: float | None = None  # None in records written before it was kept


@dataclass
class Fingerprint:
    """Where and how a number was produced."""

    hardware_key: str  # key into the price table, e.g. "local-cpu", "aws-c7i.xlarge"
    cpu_model: str
    cpu_flags: list[str]  # subset of avx2/avx512f/avx512_vnni/amx_tile...
    cores: int
    threads: int
    gpu_name: str | None
    gpu_memory_gb: float | None
    versions: dict[str, str]  # torch, transformers, onnxruntime, slimserve, python
    command: str  # the exact command line
    hostname_hash: str  # stable id of the machine without leaking its name


@dataclass
class SpeedResult:
    loop: str  # which decode loop was timed, e.g. "torch-lean-kv", "ort-iobinding-kv"
    load_s: float | None = None  # median over rounds
    ttft_s: LatencyStats | None = None
    prefill_tok_s: dict[int, LatencyStats] = field(default_factory=dict)  # prompt len -> stats
    decode_tok_s: LatencyStats | None = None
    itl_ms: LatencyStats | None = None  # inter-token latency over the decode steps
    batch_tok_s: dict[int, float] = field(default_factory=dict)  # batch size -> decode tok/s (all sequences)
    batch_itl_p99_ms: dict[int, float] = field(default_factory=dict)
    batch_errors: dict[int, str] = field(default_factory=dict)  # batch size -> why it did not run
    peak_mem_mb: float | None = None
    size_mb: float | None = None
    rounds: int = 1  # interleaved measurement rounds pooled into the stats above
    round_p50: dict[str, list[float]] = field(default_factory=dict)  # metric -> median of each round, in order


@dataclass
class QualityResult:
    eval_text: str | None = None  # path or name of the text
    tokens: int | None = None  # tokens scored
    ppl: float | None = None
    ref_ppl: float | None = None
    ppl_delta: float | None = None  # relative increase vs reference: ppl/ref_ppl - 1
    kld: float | None = None  # mean KL(ref || variant) over next-token distributions
    kld_p99: float | None = None
    top1: float | None = None  # fraction of positions where the argmax agrees with the reference
    mc_accuracy: dict[str, float] = field(default_factory=dict)  # task -> accuracy
    mc_counts: dict[str, int] = field(default_factory=dict)
    eval_range: list[int] | None = None  # [first, last) token positions of the text the windows read
    eval_sha256: str | None = None  # sha256 of the evaluation text (calibration records carry the same hash)


@dataclass
class CostResult:
    hardware_key: str
    price_per_hour: float
    price_source: str  # where the hourly price comes from (table entry + date, or the CLI flag)
    usd_per_1m_input: float
    usd_per_1m_output: float
    batch: int  # batch size the output cost was computed at
    slo_ms: float  # p99 inter-token latency bound that batch had to meet
    input_tok_s: float
    output_tok_s: float


@dataclass
class BenchRecord:
    variant: str
    target: str
    run_id: str
    created: str  # ISO-8601 UTC
    fingerprint: Fingerprint
    speed: SpeedResult | None = None
    quality: QualityResult | None = None
    cost: CostResult | None = None
    notes: list[str] = field(default_factory=list)
    gate: dict[str, Any] | None = None  # slimserve.gates.GateResult.to_dict(): the variant's gates on this quality
    version: int = RECORD_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
