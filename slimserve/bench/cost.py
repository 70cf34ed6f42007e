"""Cost model: an hourly price and measured throughput -> $ per 1M input and output tokens (pure).

Input tokens cost what prefill throughput allows; output tokens cost what decode throughput allows at the batch size
with the best throughput whose p99 inter-token latency meets the SLO (default 100 ms, MLPerf llama3.1-8b server).
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import UserError, flag
from .record import CostResult, SpeedResult

DEFAULT_SLO_MS = 100.0


class PriceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    price_per_hour: float = Field(gt=0)
    source: str
    as_of: str
    description: str = ""


class PriceTable(BaseModel):
    """prices.yaml: hardware key -> hourly price with its source and date.

    ```yaml
    version: 1
    currency: USD
    default_cpu: local-cpu
    default_gpu: local-gpu
    hardware:
      local-cpu: {price_per_hour: 0.08925, source: "AWS c7i.large on-demand", as_of: "2025"}
    ```
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = 1
    currency: str = "USD"
    default_cpu: str = "local-cpu"
    default_gpu: str = "local-gpu"
    hardware: dict[str, PriceEntry]


def load_prices(path: str | Path | None = None) -> PriceTable:
    """The shipped table, or the user's file (which replaces it); UserError naming file and field on bad entries."""
    if path is None:
        text, name = resources.files("slimserve.bench").joinpath("prices.yaml").read_text(), "prices.yaml (shipped)"
    else:
        p = Path(path)
        if not p.is_file():
            raise UserError("price table not found", file=str(p), field="--prices")
        text, name = p.read_text(encoding="utf-8"), str(p)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"not valid YAML ({exc})", file=name) from None
    try:
        return PriceTable.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise UserError(
            err["msg"].lower(),
            file=name,
            field=where,
            hint="every hardware entry needs price_per_hour > 0, source and as_of",
        ) from None


def resolve_price(
    table: PriceTable, hardware_key: str | None, price_per_hour: float | None, *, gpu: bool
) -> tuple[str, float, str]:
    """(hardware key, $/hour, where the price comes from). An explicit price wins over the table."""
    key = hardware_key or (table.default_gpu if gpu else table.default_cpu)
    if price_per_hour is not None:
        if not math.isfinite(price_per_hour) or price_per_hour <= 0:
            raise UserError(f"price per hour must be a positive number, got {price_per_hour}", field="--price-per-hour")
        return key, float(price_per_hour), "--price-per-hour"
    if key not in table.hardware:
        raise UserError(
            f"no price for hardware '{key}'",
            field="--hardware",
            allowed=sorted(table.hardware),
            hint=("add it to a ", flag("--prices"), " file or pass ", flag("--price-per-hour")),
        )
    e = table.hardware[key]
    return key, e.price_per_hour, f"price table '{key}': {e.source}, {e.as_of}"


def usd_per_million(price_per_hour: float, tok_s: float) -> float:
    """$ per 1M tokens for a machine at price_per_hour producing tok_s tokens per second."""
    if tok_s <= 0:
        raise ValueError("throughput must be positive")
    return price_per_hour / 3600.0 / tok_s * 1e6


def pick_batch(speed: SpeedResult, slo_ms: float) -> tuple[int, float, bool]:
    """(batch, decode tok/s, met_slo): the best-throughput batch whose p99 ITL <= slo_ms; if none meets it, the
    batch with the lowest p99 ITL (reported with met_slo=False)."""
    measured = [b for b in speed.batch_tok_s if b in speed.batch_itl_p99_ms]
    if not measured:
        raise ValueError("no batch throughput measured")
    ok = [b for b in measured if speed.batch_itl_p99_ms[b] <= slo_ms]
    if ok:
        b = max(ok, key=lambda k: (speed.batch_tok_s[k], -k))
        return b, speed.batch_tok_s[b], True
    b = min(measured, key=lambda k: (speed.batch_itl_p99_ms[k], k))
    return b, speed.batch_tok_s[b], False


def input_throughput(speed: SpeedResult) -> float:
    """Best median prefill tok/s over the measured prompt lengths."""
    if not speed.prefill_tok_s:
        raise ValueError("no prefill throughput measured")
    return max(s.p50 for s in speed.prefill_tok_s.values())


def cost_of(
    speed: SpeedResult, *, hardware_key: str, price_per_hour: float, price_source: str, slo_ms: float = DEFAULT_SLO_MS
) -> tuple[CostResult, str | None]:
    """CostResult from stored speed measurements, plus a note when no batch met the SLO."""
    if slo_ms <= 0:
        raise UserError(f"the latency SLO must be positive, got {slo_ms} ms", field="--slo-ms")
    in_tok_s = input_throughput(speed)
    batch, out_tok_s, met = pick_batch(speed, slo_ms)
    note = (
        None
        if met
        else (
            f"no batch met the p99 inter-token latency SLO of {slo_ms:g} ms; output cost is at batch {batch} "
            f"(p99 ITL {speed.batch_itl_p99_ms[batch]:.1f} ms)"
        )
    )
    cost = CostResult(
        hardware_key=hardware_key,
        price_per_hour=price_per_hour,
        price_source=price_source,
        usd_per_1m_input=usd_per_million(price_per_hour, in_tok_s),
        usd_per_1m_output=usd_per_million(price_per_hour, out_tok_s),
        batch=batch,
        slo_ms=slo_ms,
        input_tok_s=in_tok_s,
        output_tok_s=out_tok_s,
    )
    return cost, note
