"""Quantize/dequantize math: SQNR bounds per bit width and group size, exact packing round trips."""

import pytest
import torch

from slimserve.quant.math import (
    compute_qparams,
    dequantize,
    fake_quantize,
    pack_int4,
    qrange,
    quantize,
    sqnr_db,
    unpack_int4,
)


@pytest.fixture(scope="module")
def weight():
    torch.manual_seed(0)
    return torch.randn(256, 512) * 0.02


# Gaussian weights: each bit adds ~6 dB; smaller groups track the range more tightly.
@pytest.mark.parametrize(
    "bits,group,sym,min_db",
    [
        (8, None, True, 35.0),
        (8, 128, False, 40.0),
        (4, 128, False, 17.0),
        (4, 128, True, 15.0),
        (4, 32, False, 19.0),
        (4, 64, True, 16.0),
    ],
)
def test_sqnr_bounds(weight, bits, group, sym, min_db):
    qp = compute_qparams(weight, bits, group, sym)
    q = quantize(weight, qp)
    lo, hi = qrange(bits)
    assert q.dtype == torch.int8 and int(q.min()) >= lo and int(q.max()) <= hi
    assert sqnr_db(weight, dequantize(q, qp)) > min_db


def test_smaller_groups_are_more_accurate(weight):
    db = [
        sqnr_db(weight, dequantize(quantize(weight, qp := compute_qparams(weight, 4, g, False)), qp))
        for g in (128, 64, 32)
    ]
    assert db[0] < db[1] < db[2]


def test_grid_values_round_trip_exactly():
    torch.manual_seed(1)
    qp = compute_qparams(torch.randn(8, 64), 4, 32, False)
    codes = torch.randint(-8, 8, (8, 64), dtype=torch.int8)
    w = dequantize(codes, qp)
    assert torch.equal(quantize(w, qp), codes)


def test_asymmetric_handles_all_positive_group():
    w = torch.rand(4, 32) + 1.0  # min > 0: zero must still be representable
    qp = compute_qparams(w, 4, 32, False)
    assert sqnr_db(w, dequantize(quantize(w, qp), qp)) > 20


def test_group_must_divide_input():
    with pytest.raises(ValueError, match="not divisible by group size 128"):
        compute_qparams(torch.randn(4, 96), 4, 128, True)


def test_pack_unpack_int4_exact_round_trip():
    codes = torch.arange(-8, 8, dtype=torch.int8).repeat(3, 4)  # every int4 value, [3, 64]
    packed = pack_int4(codes)
    assert packed.dtype == torch.uint8 and packed.shape == (3, 32)  # two values per byte
    assert torch.equal(unpack_int4(packed), codes)
    assert packed[0, 0].item() == ((-8 & 0xF) | ((-7 & 0xF) << 4))  # low nibble first


def test_pack_rejects_odd_length():
    with pytest.raises(ValueError, match="even"):
        pack_int4(torch.zeros(3, dtype=torch.int8))


@pytest.mark.parametrize("bits,group,sym", [(4, 32, False), (4, 64, True), (8, 32, True), (4, None, False)])
def test_searched_grid_is_never_worse_and_usually_better(bits, group, sym):
    from slimserve.quant.search import search_qparams, weighted_error

    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 128, generator=g) * torch.rand(1, 128, generator=g)
    w[:, :2] *= 6  # outlier channels, as in real weights
    base, found = compute_qparams(w, bits, group, sym), search_qparams(w, bits, group, sym)
    e0, e1 = weighted_error(w, base), weighted_error(w, found)
    assert (e1 <= e0 * (1 + 1e-6)).all()
    assert e1.sum() < 0.97 * e0.sum()
    # a valid grid: integer zero points in range, codes round-trip exactly
    if not sym:
        assert torch.equal(found.zero_point, found.zero_point.round()) and found.zero_point.abs().max() <= 2**bits
    wq = fake_quantize(w, found)
    assert torch.equal(fake_quantize(wq, found), wq)


def test_search_uses_the_importance_it_is_given():
    from slimserve.quant.search import search_qparams, weighted_error

    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    imp = torch.ones(64)
    imp[:8] = 100.0  # the first channels matter most (an activation statistic)
    plain, weighted = search_qparams(w, 4, 32, False), search_qparams(w, 4, 32, False, importance=imp)
    assert weighted_error(w, weighted, imp).sum() <= weighted_error(w, plain, imp).sum()


def test_allocate_spends_the_budget_by_sensitivity_per_weight():
    from slimserve.quant.mixed import Unit, allocate

    units = [
        Unit("big", ["big"], 1000, sensitivity=0.5),  # 5e-4 per weight
        Unit("small-sharp", ["a"], 100, sensitivity=0.2),  # 2e-3 per weight: first
        Unit("small-dull", ["b"], 100, sensitivity=0.001),
        Unit("flat", ["c"], 100, sensitivity=0.0),  # never promoted: nothing to gain
    ]
    bpw = allocate(units, 4 + 4 * 1100 / 1300, 4, 8)  # room for exactly big + small-sharp
    assert {u.name for u in units if u.bits == 8} == {"big", "small-sharp"}
    assert bpw == pytest.approx(4 + 4 * 1100 / 1300)
    assert [u.name for u in sorted(units, key=lambda u: u.rank)][:2] == ["small-sharp", "big"]
    assert allocate(units, 4.0, 4, 8) == 4.0 and all(u.bits == 4 for u in units)
    tight = allocate(units, 4 + 4 * 150 / 1300, 4, 8)  # big does not fit; the smaller ones still may
    assert {u.name for u in units if u.bits == 8} == {"small-sharp"} and tight <= 4 + 4 * 150 / 1300
