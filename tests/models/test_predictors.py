"""CMD's encoder-decoder predictors (Transformer, ConvGRU) and the feature-grid helper that sizes them."""
from __future__ import annotations

import pytest
import torch

from vidssl.models import ConvGRUPredictor, TransformerPredictor, build_backbone, feature_grid


@pytest.mark.parametrize("src,tgt", [((1, 4, 4), (1, 4, 4)), ((2, 2, 3), (3, 1, 2)), ((1, 1, 1), (2, 2, 2))])
def test_transformer_maps_one_grid_onto_another(src, tgt):
    pred = TransformerPredictor(16, 12, src, tgt, d_model=32, nhead=4, num_encoder_layers=1, num_decoder_layers=2,
                                dim_feedforward=64, dropout=0.0)
    x = torch.randn(3, 16, *src, requires_grad=True)
    out = pred(x)
    assert out.shape == (3, 12, *tgt)
    out.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # Learned position embeddings over T1*H1*W1 input tokens and T3*H3*W3 output queries.
    assert pred.src_pos.shape == (1, src[0] * src[1] * src[2], 32)
    assert pred.queries.shape == (1, tgt[0] * tgt[1] * tgt[2], 32)
    assert len(pred.transformer.encoder.layers) == 1 and len(pred.transformer.decoder.layers) == 2


def test_transformer_paper_sizes_and_token_order():
    pred = TransformerPredictor(64, 64, (2, 2, 2), (1, 2, 2))
    assert len(pred.transformer.encoder.layers) == 2 and len(pred.transformer.decoder.layers) == 4
    assert pred.transformer.d_model == 512 and pred.transformer.nhead == 8
    # Output token n is point (t, y, x) in row-major order, as the pointwise loss flattens the M-network map.
    pred = TransformerPredictor(4, 3, (1, 1, 2), (1, 2, 3), d_model=8, nhead=2, num_encoder_layers=1,
                                num_decoder_layers=1, dim_feedforward=8, dropout=0.0).eval()
    x = torch.randn(1, 4, 1, 1, 2)
    with torch.no_grad():
        tokens = pred.output(pred.transformer(pred.input(x.flatten(2).transpose(1, 2)) + pred.src_pos, pred.queries))
        torch.testing.assert_close(pred(x)[0, :, 0, 1, 2], tokens[0, 5])


def test_transformer_refuses_another_grid():
    pred = TransformerPredictor(8, 8, (1, 2, 2), (1, 2, 2), d_model=16, nhead=2, num_encoder_layers=1,
                                num_decoder_layers=1, dim_feedforward=16)
    with pytest.raises(ValueError, match=r"\[B, 8, 1, 2, 2\]"):
        pred(torch.randn(2, 8, 1, 3, 3))


@pytest.mark.parametrize("src,tgt,layers", [((2, 4, 4), (1, 4, 4), 1), ((3, 4, 4), (2, 2, 2), 2),
                                             ((1, 2, 2), (3, 3, 3), 1)])
def test_convgru_rolls_out_the_target_steps(src, tgt, layers):
    pred = ConvGRUPredictor(6, 5, tgt, hidden_dim=8, num_layers=layers)
    x = torch.randn(2, 6, *src, requires_grad=True)
    out = pred(x)
    assert out.shape == (2, 5, *tgt)
    out.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_convgru_future_depends_on_every_input_step():
    pred = ConvGRUPredictor(4, 3, (2, 2, 2), hidden_dim=8).eval()
    x = torch.randn(1, 4, 3, 2, 2)
    y = x.clone()
    y[:, :, 0] += 1.0  # the first (oldest) step only
    with torch.no_grad():
        assert not torch.allclose(pred(x), pred(y))


@pytest.mark.parametrize("name,depth,channels,frames,size", [("r3d", 10, 3, 8, 56), ("r3d", 10, 2, 8, 28),
                                                              ("r2d", 10, 3, 1, 56), ("c3d", None, 3, 16, 32)])
def test_feature_grid_is_the_p5_map_without_computing_it(name, depth, channels, frames, size):
    net = build_backbone(name, width=4, depth=depth, in_channels=channels)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    grid = feature_grid(net, channels, frames, (size, size))
    with torch.no_grad():
        p5 = net.eval().forward_features(torch.zeros(1, channels, frames, size, size), "p5")["p5"]
    assert grid == tuple(p5.shape[2:])
    for key, value in net.state_dict().items():  # BN running statistics untouched
        assert torch.equal(value, before[key]), key
