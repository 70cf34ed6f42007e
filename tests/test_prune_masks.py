"""Pure pruning math: N:M and unstructured masks, importance, least-squares refit."""

import pytest
import torch

from slimserve.prune.masks import channel_importance, least_squares_refit, nm_mask, unstructured_mask, wanda_score


def test_two_four_mask_zeroes_exactly_two_of_every_four():
    score = torch.rand(16, 64, generator=torch.Generator().manual_seed(0))
    keep = nm_mask(score, 2, 4)
    blocks = keep.reshape(16, 16, 4)
    assert (blocks.sum(-1) == 2).all()
    # The kept ones are the two largest scores of each block.
    sb = score.reshape(16, 16, 4)
    assert (sb[blocks].reshape(16, 16, 2).min(-1).values >= sb[~blocks].reshape(16, 16, 2).max(-1).values).all()


def test_nm_mask_rejects_width_not_divisible():
    with pytest.raises(ValueError, match="not divisible by M=8"):
        nm_mask(torch.rand(4, 12), 4, 8)


def test_unstructured_mask_prunes_the_fraction_in_every_row():
    score = torch.rand(8, 100)
    keep = unstructured_mask(score, 0.3)
    assert (keep.sum(1) == 70).all()


def test_wanda_score_weights_by_input_norm():
    w = torch.ones(2, 3)
    s = wanda_score(w, torch.tensor([1.0, 5.0, 0.1]))
    assert s[0].argmin() == 2 and s[0].argmax() == 1


def test_channel_importance_is_activation_aware():
    w = torch.ones(4, 3)
    imp = channel_importance(torch.tensor([1.0, 0.0, 4.0]), w)
    assert imp.tolist() == [4.0, 0.0, 16.0]


def test_least_squares_refit_recovers_redundant_channels():
    g = torch.Generator().manual_seed(0)
    xk = torch.randn(500, 6, generator=g)
    x = torch.cat([xk, xk[:, :2] @ torch.tensor([[1.0], [2.0]])], dim=1)  # channel 6 = x0 + 2 x1
    w = torch.randn(5, 7, generator=g)
    keep = torch.tensor([True] * 6 + [False])
    w_new = least_squares_refit(w, x.T @ x, keep, damp=1e-8)
    torch.testing.assert_close(xk @ w_new.T, x @ w.T, atol=1e-4, rtol=1e-4)
    # Dropping without refit loses the channel's contribution.
    assert float(((xk @ w[:, :6].T - x @ w.T) ** 2).mean()) > 1e-2
