"""Cost arithmetic, batch choice under the latency SLO, and price tables."""

import pytest

from slimserve.bench.cost import cost_of, load_prices, pick_batch, resolve_price, usd_per_million
from slimserve.bench.record import LatencyStats, SpeedResult
from slimserve.errors import UserError


def _stats(v: float) -> LatencyStats:
    return LatencyStats(count=3, mean=v, stdev=0.0, p50=v, p90=v, p99=v, min=v, max=v)


def _speed(batch_tok_s, batch_p99, prefill=None) -> SpeedResult:
    return SpeedResult(
        loop="x",
        prefill_tok_s={n: _stats(v) for n, v in (prefill or {128: 400.0, 512: 500.0}).items()},
        batch_tok_s=batch_tok_s,
        batch_itl_p99_ms=batch_p99,
    )


def test_usd_per_million_arithmetic():
    # $0.36/h = $0.0001/s; at 100 tok/s one token costs $1e-6, so 1M tokens cost $1
    assert usd_per_million(0.36, 100.0) == pytest.approx(1.0)
    assert usd_per_million(1.006, 25.0) == pytest.approx(1.006 / 3600 / 25 * 1e6)
    with pytest.raises(ValueError):
        usd_per_million(1.0, 0.0)


def test_best_batch_under_slo():
    s = _speed({1: 20.0, 4: 60.0, 16: 100.0}, {1: 50.0, 4: 90.0, 16: 250.0})
    assert pick_batch(s, 100.0) == (4, 60.0, True)
    assert pick_batch(s, 300.0) == (16, 100.0, True)
    assert pick_batch(s, 10.0) == (1, 20.0, False)  # none meets it: the lowest-latency batch, flagged


def test_cost_of_uses_best_prefill_and_slo_batch():
    s = _speed({1: 20.0, 4: 60.0}, {1: 50.0, 4: 90.0})
    cost, note = cost_of(s, hardware_key="k", price_per_hour=0.36, price_source="test", slo_ms=100.0)
    assert note is None
    assert cost.batch == 4 and cost.slo_ms == 100.0
    assert cost.input_tok_s == 500.0 and cost.output_tok_s == 60.0
    assert cost.usd_per_1m_input == pytest.approx(0.2)  # $1 per 1M at 100 tok/s -> 0.2 at 500 tok/s
    assert cost.usd_per_1m_output == pytest.approx(1 / 0.6)
    cost2, note2 = cost_of(s, hardware_key="k", price_per_hour=0.36, price_source="test", slo_ms=20.0)
    assert cost2.batch == 1 and "no batch met" in note2
    with pytest.raises(UserError):
        cost_of(s, hardware_key="k", price_per_hour=0.36, price_source="t", slo_ms=0)


def test_shipped_price_table():
    t = load_prices()
    assert t.hardware["aws-c7i.xlarge"].price_per_hour == 0.1785
    assert t.hardware["aws-g5.xlarge"].price_per_hour == 1.006
    assert t.hardware["aws-g6.xlarge"].price_per_hour == 0.8048
    assert t.hardware["aws-inf2.xlarge"].price_per_hour == 0.7582
    assert all(e.source and e.as_of for e in t.hardware.values())
    key, price, src = resolve_price(t, None, None, gpu=False)
    assert key == t.default_cpu and price == t.hardware[key].price_per_hour and key in src
    assert resolve_price(t, None, None, gpu=True)[0] == t.default_gpu
    assert resolve_price(t, "aws-g5.xlarge", 2.5, gpu=True) == ("aws-g5.xlarge", 2.5, "--price-per-hour")


@pytest.mark.parametrize("price", [-1.0, 0.0, float("nan")])
def test_bad_price_flag(price):
    with pytest.raises(UserError, match="price per hour"):
        resolve_price(load_prices(), None, price, gpu=False)


def test_unknown_hardware_lists_keys():
    with pytest.raises(UserError) as e:
        resolve_price(load_prices(), "my-box", None, gpu=False)
    assert "aws-c7i.xlarge" in str(e.value)


def _table(tmp_path, body: str):
    p = tmp_path / "prices.yaml"
    p.write_text(body)
    return p


def test_price_table_negative_price(tmp_path):
    p = _table(tmp_path, "hardware:\n  box: {price_per_hour: -0.5, source: me, as_of: '2026'}\n")
    with pytest.raises(UserError) as e:
        load_prices(p)
    assert "hardware.box.price_per_hour" in str(e.value) and str(p) in str(e.value)


def test_price_table_missing_price(tmp_path):
    p = _table(tmp_path, "hardware:\n  box: {source: me, as_of: '2026'}\n")
    with pytest.raises(UserError, match="price_per_hour"):
        load_prices(p)


def test_price_table_unknown_field_and_missing_file(tmp_path):
    p = _table(tmp_path, "hardware:\n  box: {price_per_hour: 1, source: me, as_of: '2026', cost: 2}\n")
    with pytest.raises(UserError, match="cost"):
        load_prices(p)
    with pytest.raises(UserError, match="not found"):
        load_prices(tmp_path / "nope.yaml")


def test_user_price_table_replaces_shipped(tmp_path):
    p = _table(tmp_path, "default_cpu: box\nhardware:\n  box: {price_per_hour: 0.5, source: invoice, as_of: '2026'}\n")
    assert resolve_price(load_prices(p), None, None, gpu=False)[:2] == ("box", 0.5)
