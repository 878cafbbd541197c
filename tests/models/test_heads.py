"""Projection and classification heads."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from vidssl.models import LinearHead, MLPHead


def layer_types(head: nn.Module) -> list[str]:
    return [type(m).__name__ for m in head]


def test_mlp_head_layers_follow_the_dims():
    head = MLPHead([16, 32, 24, 8])
    assert layer_types(head) == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert head[0].bias is None and head[-1].bias is not None  # BN makes the hidden bias redundant
    assert (head.in_dim, head.out_dim) == (16, 8)
    assert head(torch.randn(4, 16)).shape == (4, 8)


def test_mlp_head_without_bn_is_moco_v2_style():
    head = MLPHead([16, 32, 8], bn=False, l2_normalize=True)
    assert layer_types(head) == ["Linear", "ReLU", "Linear", "L2Normalize"]
    assert head[0].bias is not None


def test_cmd_head_ends_with_bn_then_l2():
    head = MLPHead([16, 32, 8], norm_last=True, l2_normalize=True)
    assert layer_types(head)[-3:] == ["Linear", "BatchNorm1d", "L2Normalize"]
    out = head(torch.randn(6, 16) * 5 + 3)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(6))
    # BN before the normalisation: in training mode each output channel has zero batch mean
    # before L2, so the normalised outputs cannot all point the same way.
    assert (out.mean(0).abs() < out.abs().mean(0)).all()


def test_l2_normalised_output_is_fp32_unit_norm_under_bf16_autocast():
    head = MLPHead([16, 32, 8], l2_normalize=True)
    x = torch.randn(4, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4), rtol=1e-5, atol=1e-5)
    out[:, 0].sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_single_linear_head_and_bad_dims():
    head = MLPHead([16, 128], l2_normalize=True)  # DSM: GAP -> Linear 128 -> L2
    assert layer_types(head) == ["Linear", "L2Normalize"]
    with pytest.raises(ValueError, match="at least two"):
        MLPHead([16])
    with pytest.raises(ValueError, match=r"expects \[N, 16\]"):
        head(torch.randn(4, 15))


def test_linear_head():
    head = LinearHead(64, 10, dropout=0.5)
    x = torch.randn(8, 64)
    assert head(x).shape == (8, 10)
    head.eval()
    torch.testing.assert_close(head(x), head.fc(x))  # dropout is off in eval
    assert head.fc.weight.std().item() == pytest.approx(0.01, rel=0.2)
    assert (head.fc.bias == 0).all()
    with pytest.raises(ValueError, match="dropout"):
        LinearHead(64, 10, dropout=1.0)
    with pytest.raises(ValueError, match=r"expects \[N, 64\]"):
        head(torch.randn(8, 64, 1))
