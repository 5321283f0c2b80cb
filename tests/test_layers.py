"""Network layers: SimNorm, the batched Q ensemble against per-head modules, shift augmentation."""

import math

import pytest
import torch
from torch import nn

from wmil_core.nn.layers import QEnsemble, ShiftAug, simnorm


def test_simnorm_groups_sum_to_one():
    x = torch.randn(5, 16)
    y = simnorm(x, 8).view(5, 2, 8)
    assert torch.allclose(y.sum(-1), torch.ones(5, 2))
    assert (y > 0).all()


def test_simnorm_matches_softmax_and_its_first_and_second_derivatives():
    from wmil_core.nn import layers

    x = (torch.randn(6, 3, 32, dtype=torch.float64) * 4).requires_grad_(True)
    y = simnorm(x, 8)
    assert type(y.grad_fn).__name__ == "_SimNormFnBackward"  # the hand-written backward

    def ref(v):
        return nn.functional.softmax(v.view(6, 3, 4, 8), -1).view(v.shape)

    torch.testing.assert_close(y, ref(x))
    g = torch.randn_like(x)
    torch.testing.assert_close(torch.autograd.grad(y, x, g)[0],
                               torch.autograd.grad(ref(x), x, g)[0])
    assert torch.autograd.gradgradcheck(lambda v: layers.simnorm(v, 8), (x[:2, :1],))
    with torch.no_grad():  # planning: the plain group softmax
        torch.testing.assert_close(simnorm(x, 8), ref(x))
    big = torch.full((2, 16), 1e4)  # no overflow: the group maximum is subtracted
    assert torch.allclose(simnorm(big, 8), torch.full((2, 16), 1 / 8))


@pytest.mark.parametrize("members", [0, 3])
def test_fused_layer_norm_mish_matches_the_separate_operators(members):
    """One kernel for LayerNorm, affine and Mish, forward and backward: the same values and
    gradients as F.layer_norm + affine + mish (members 0: a (D,) affine; 3: per member)."""
    from wmil_core.nn import layers

    assert layers.FUSED_MISH
    lead = (members, 40) if members else (5, 40)
    torch.manual_seed(0)
    x = (torch.randn(*lead, 48) * 3 + 1).requires_grad_(True)
    shape = (members, 1, 48) if members else (48,)
    w = (torch.randn(shape) + 1).requires_grad_(True)
    b = torch.randn(shape).requires_grad_(True)
    g = torch.randn(*lead, 48)

    def ref(x, w, b):
        return nn.functional.mish(nn.functional.layer_norm(x, (48,), eps=1e-5) * w + b)

    y = layers.layer_norm_mish(x, w, b, 1e-5, 48)
    assert type(y.grad_fn).__name__ == "ViewBackward0"
    assert type(y.grad_fn.next_functions[0][0]).__name__ == "_FusedLayerNormMishFnBackward"
    torch.testing.assert_close(y, ref(x, w, b), rtol=1e-5, atol=1e-5)
    got = torch.autograd.grad(y, (x, w, b), g)
    want = torch.autograd.grad(ref(x, w, b), (x, w, b), g)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4)
    # frozen affine (the policy loss freezes the Q heads): the gradient of x alone
    (gx,) = torch.autograd.grad(layers.layer_norm_mish(x, w.detach(), b.detach(), 1e-5, 48), x, g)
    torch.testing.assert_close(gx, want[0], rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # planning: the forward-only kernel from FUSED_MISH_MIN_NUMEL on
        big = torch.randn(*lead[:-1], 1000, 48)
        assert big.numel() >= layers.FUSED_MISH_MIN_NUMEL
        torch.testing.assert_close(layers.layer_norm_mish(big, w, b, 1e-5, 48), ref(big, w, b),
                                   rtol=1e-5, atol=1e-5)
    for kernel, names in (("ln_forward", {"ln_forward", "ln_grads", "ln_grad_x"}),
                          ("ln_value", {"ln_value"})):  # one set per width, dtype, device
        assert set(layers._FUSED[(kernel, 48, torch.float32, "cpu")]) == names


@pytest.mark.parametrize("grad", [True, False])
def test_dropout_folded_into_the_fused_layer_norm_mish_drops_what_dropout_drops(
        monkeypatch, grad):
    """The Q heads' first layer: dropout's positions zeroed in place, its scale inside the
    kernels; the same output and gradients as Dropout then the separate operators."""
    from wmil_core.nn import layers

    drop = layers.Dropout(0.05).train()
    w = (torch.randn(2, 1, 64) + 1).requires_grad_(grad)
    b = torch.randn(2, 1, 64).requires_grad_(grad)
    x0 = torch.randn(2, 300, 64) * 2
    g = torch.randn(2, 300, 64)

    def run(fused: bool):
        monkeypatch.setattr(layers, "FUSED_MISH", fused)
        x = x0.clone().requires_grad_(grad)
        torch.manual_seed(3)  # the same dropped positions
        with torch.set_grad_enabled(grad):
            y = layers.layer_norm_mish(x.clone() if grad else x, w, b, 1e-5, 64, drop)
        return (y, *torch.autograd.grad(y, (x, w, b), g)) if grad else (y,)

    want, got = run(False), run(True)
    for a, e in zip(got, want):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4)
    torch.manual_seed(3)
    kept = torch.ones(x0.numel())
    kept[layers.drop_positions(x0.numel(), 0.05)] = 0.0
    assert 0.02 < 1 - kept.mean() < 0.08
    undropped = layers.layer_norm_mish(x0, w, b, 1e-5, 64)  # dropout off: a different output
    assert not torch.allclose(undropped, got[0], atol=1e-3)
    if grad:  # the input's gradient is exactly 0 where it was dropped, and only there
        assert torch.equal(got[1].reshape(-1) == 0, kept == 0)


def test_layer_norm_mish_applies_a_dropout_it_cannot_fold(monkeypatch):
    """nn.Dropout's per-element masks (p > 0.1, or sparse dropout off) run before the fused
    kernels, and eval mode drops nothing."""
    from wmil_core.nn import layers

    w, b = torch.ones(1, 1, 64), torch.zeros(1, 1, 64)
    x = torch.randn(1, 400, 64, requires_grad=True)
    for p, sparse in ((0.5, True), (0.05, False)):
        monkeypatch.setattr(layers, "SPARSE_DROPOUT", sparse)
        drop = layers.Dropout(p).train()
        assert not drop.draws_positions()
        torch.manual_seed(4)
        y = layers.layer_norm_mish(x, w, b, 1e-5, 64, drop)
        torch.manual_seed(4)
        ref = layers.layer_norm_mish(nn.functional.dropout(x, p), w, b, 1e-5, 64)
        torch.testing.assert_close(y, ref)
        assert not torch.allclose(y, layers.layer_norm_mish(x, w, b, 1e-5, 64))
        torch.testing.assert_close(layers.layer_norm_mish(x, w, b, 1e-5, 64, drop.eval()),
                                   layers.layer_norm_mish(x, w, b, 1e-5, 64))


def test_single_output_ensemble_layer_backward_matches_the_batched_matmul():
    from wmil_core.nn import layers

    h = torch.randn(2, 7, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 5, 1, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 1, 1, dtype=torch.float64, requires_grad=True)
    y = layers.ensemble_linear(h, w, b)
    assert type(y.grad_fn).__name__ == "_ToScalarFnBackward"
    torch.testing.assert_close(y, torch.baddbmm(b, h, w))
    assert torch.autograd.gradcheck(layers.ensemble_linear, (h, w, b))
    assert torch.autograd.gradgradcheck(layers.ensemble_linear, (h, w, b))


def test_fused_layer_norm_mish_second_derivatives():
    """Gradient penalties differentiate dQ/dx again: the fused backward is differentiable."""
    from wmil_core.nn import layers

    x = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    w = (torch.randn(2, 1, 6, dtype=torch.float64) + 1).requires_grad_(True)
    b = torch.randn(2, 1, 6, dtype=torch.float64, requires_grad=True)
    fn = lambda x, w, b: layers.layer_norm_mish(x, w, b, 1e-5, 6)  # noqa: E731
    assert type(fn(x, w, b).grad_fn.next_functions[0][0]).__name__ == (
        "_FusedLayerNormMishFnBackward")
    assert torch.autograd.gradcheck(fn, (x, w, b))
    assert torch.autograd.gradgradcheck(fn, (x, w, b))


def test_q_ensemble_matches_independent_heads():
    torch.manual_seed(0)
    q = QEnsemble(3, 6, 8, dropout=0.0)
    for p in q.parameters():  # the output layer starts at zero: randomise everything
        nn.init.normal_(p, std=0.3)
    x = torch.randn(4, 6)
    out = q(x)
    assert out.shape == (3, 4, 1)
    for i in range(3):
        h = x @ q.l1.weight[i] + q.l1.bias[i]
        h = nn.functional.mish(nn.functional.layer_norm(h, (8,)) * q.ln1.weight[i] + q.ln1.bias[i])
        h = h @ q.l2.weight[i] + q.l2.bias[i]
        h = nn.functional.mish(nn.functional.layer_norm(h, (8,)) * q.ln2.weight[i] + q.ln2.bias[i])
        ref = h @ q.out.weight[i] + q.out.bias[i]
        assert torch.allclose(out[i], ref, atol=1e-5)
    heads = torch.tensor([2, 0])
    assert torch.allclose(q(x, heads), out[heads], atol=1e-6)


def test_q_ensemble_starts_at_zero():
    assert torch.equal(QEnsemble(2, 5, 8)(torch.randn(3, 5)), torch.zeros(2, 3, 1))


def test_shift_aug_translates_whole_images():
    torch.manual_seed(1)
    aug = ShiftAug(pad=2).train()
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    y = aug(x)
    assert y.shape == x.shape
    padded = nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    for i in range(2):  # each output is some crop of its own padded image
        crops = [padded[i, :, r:r + 6, c:c + 6] for r in range(5) for c in range(5)]
        assert any(torch.equal(y[i], crop) for crop in crops)
    assert torch.equal(aug.eval()(x), x)  # no augmentation outside training


def test_mish_identity_matches_torch_mish_and_its_gradient():
    from wmil_core.nn.layers import mish

    x = torch.linspace(-30, 30, 2001, dtype=torch.float64, requires_grad=True)
    ref = nn.functional.mish(x)
    got = mish(x)
    assert torch.allclose(got, ref, atol=1e-12, rtol=1e-10)
    (g_ref,) = torch.autograd.grad(ref.sum(), x)
    (g_got,) = torch.autograd.grad(got.sum(), x)
    assert torch.allclose(g_got, g_ref, atol=1e-9)
    x32 = torch.tensor([-100.0, -5.0, 0.0, 5.0, 25.0, 1e4])
    assert torch.allclose(mish(x32), nn.functional.mish(x32), atol=1e-6)


def test_tanh_log_det_is_exact_and_stays_finite_where_tanh_saturates():
    from wmil_core.world_model import tanh_log_det

    u = torch.linspace(-6, 6, 101, dtype=torch.float64).reshape(-1, 1)
    ref = torch.log(1 - torch.tanh(u).pow(2))
    assert torch.allclose(tanh_log_det(u), ref, atol=1e-10)
    big = torch.tensor([[30.0, -40.0]])  # 1 - tanh^2 underflows in float32 here
    out = tanh_log_det(big)
    assert torch.isfinite(out).all()
    assert out.item() == pytest.approx(2 * (math.log(2) - 30) + 2 * (math.log(2) - 40), rel=1e-5)


def test_conv_encoder_names_too_small_images():
    from wmil_core.nn.layers import ConvEncoder

    assert ConvEncoder((39, 39, 6)).d_out > 0
    with pytest.raises(ValueError, match="image size 32x32 is too small"):
        ConvEncoder((32, 32, 6))


def test_mish_hand_written_backward_passes_gradcheck():
    from wmil_core.nn.layers import mish

    x = (torch.randn(64, dtype=torch.float64) * 6).requires_grad_(True)
    assert "MishFn" in type(mish(x).grad_fn).__name__  # the hand-written backward is used
    assert torch.autograd.gradcheck(mish, (x,))
    # second derivatives too: gradient penalties differentiate the gradient (create_graph)
    assert torch.autograd.gradgradcheck(mish, (x,))
    with torch.no_grad():  # no autograd (planning, export): the plain identity
        assert mish(x).grad_fn is None
        assert torch.allclose(mish(x), nn.functional.mish(x), atol=1e-12)


def test_fused_mish_kernels_compute_what_the_eager_ops_do():
    from wmil_core.nn import layers

    assert layers.FUSED_MISH  # on by default where torch.compile can build kernels
    x = (torch.randn(96, 384) * 8).requires_grad_(True)  # above the no-grad size threshold
    g = torch.randn(96, 384)
    y = layers.mish(x)
    assert type(y.grad_fn).__name__ == "_FusedMishFnBackward"
    (dx,) = torch.autograd.grad(y, x, g)
    ref = nn.functional.mish(x)
    (dref,) = torch.autograd.grad(ref, x, g)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(dx, dref, rtol=1e-5, atol=1e-5)
    assert "value_and_slope" in layers._FUSED  # each kernel is built when first used
    with torch.no_grad():
        big, small = torch.randn(4, 96, 384) * 8, torch.randn(3, 5)
        torch.testing.assert_close(layers.mish(big), nn.functional.mish(big), rtol=1e-5,
                                   atol=1e-6)
    assert {"value", "value_and_slope"} <= set(layers._FUSED)
    with torch.no_grad():
        assert layers.mish(big).shape == big.shape
        torch.testing.assert_close(layers.mish(small), nn.functional.mish(small))


def test_fused_mish_falls_back_to_eager_ops_when_kernels_cannot_be_built(monkeypatch):
    from wmil_core.nn import layers

    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C++ compiler found\nlong details")

    monkeypatch.setattr(layers, "_FUSED", {})
    monkeypatch.setattr(layers, "FUSED_MISH", True)
    monkeypatch.setattr(torch, "compile", no_compiler)
    x = (torch.randn(96, 384) * 8).requires_grad_(True)
    with pytest.warns(UserWarning, match="fused Mish kernels unavailable.*no C\\+\\+ compiler"):
        y = layers.mish(x)
    assert not layers.FUSED_MISH and layers._FUSED == {}
    assert type(y.grad_fn).__name__ == "_MishFnBackward"
    torch.testing.assert_close(y, nn.functional.mish(x), rtol=1e-5, atol=1e-6)


def test_gradient_penalty_update_is_the_same_with_either_mish_backward(monkeypatch):
    """The penalty differentiates dQ/dx: the hand-written backward must be differentiable."""
    from wmil_core.agents.iqmpc import IQMPC, IQMPCConfig
    from wmil_core.buffer import Batch
    from wmil_core.config import from_dict
    from wmil_core.nn import layers

    shapes = {"joints": (4,), "features": (3,)}
    cfg = from_dict(IQMPCConfig, {
        "model": {"latent_dim": 16, "mlp_dim": 32, "enc_dim": 32, "num_q": 2},
        "batch_size": 8, "grad_pen": 10.0,
        "planner": {"num_samples": 32, "num_pi_trajs": 4, "num_elites": 8, "iterations": 2}})

    def batch(g):
        return Batch({k: torch.randn(4, 8, s[0], generator=g) for k, s in shapes.items()},
                     torch.rand(3, 8, 2, generator=g) * 2 - 1, torch.zeros(3, 8, 1))

    def train(hand: bool) -> dict[str, torch.Tensor]:
        monkeypatch.setattr(layers, "HAND_MISH_BACKWARD", hand)
        torch.manual_seed(0)
        agent = IQMPC(shapes, 2, 500, cfg)
        g = torch.Generator().manual_seed(1)
        for i in range(4):  # the Q heads' last layer starts at zero: later steps see dQ/dx
            expert, behaviour = batch(g), batch(g)
            torch.manual_seed(10 + i)
            stats = agent.update(expert, behaviour)
        assert stats["grad_pen"] > 0
        return agent.model.state_dict()

    ref, got = train(False), train(True)
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.parametrize("rows", [1, 4])
def test_q_ensemble_at_shares_the_latent_part_of_the_first_layer(rows):
    """``at``: Q at latents (1 row, shared, or N) for several action batches equals the
    ensemble on the whole rows [z; a], gathered by ``heads`` or, unrolled, both heads."""
    torch.manual_seed(0)
    for num_q in (2, 3):
        q = QEnsemble(num_q, 6, 8, dropout=0.0, latent_dim=4).eval()
        for p in q.parameters():
            nn.init.normal_(p, std=0.3)
        z = torch.randn(rows, 4)
        a1, a2 = torch.randn(4, 2), torch.randn(4, 2)
        whole = torch.cat([torch.cat([z.expand(4, -1)] * 2), torch.cat([a1, a2])], -1)
        heads = torch.tensor([num_q - 1, 0])
        with torch.no_grad():
            torch.testing.assert_close(q.at(z, [a1, a2], heads), q(whole, heads),
                                       atol=1e-5, rtol=1e-5)
            if num_q == 2:  # both heads in index order, whatever order heads gives
                torch.testing.assert_close(q.at(z, [a1, a2], heads, unrolled=True), q(whole),
                                           atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(q.every_head(whole), q(whole), atol=1e-5, rtol=1e-5)
            else:
                with pytest.raises(ValueError, match="two Q heads, got 3"):
                    q.at(z, [a1], heads, unrolled=True)
    with pytest.raises(ValueError, match="needs latent_dim"):
        QEnsemble(2, 6, 8).at(z, [a1], heads)


def test_drop_positions_are_independent_bernoulli_draws():
    from wmil_core.nn.layers import drop_positions

    torch.manual_seed(0)
    n, p, rounds = 40, 0.05, 6000
    hits = torch.zeros(rounds, n)
    for r in range(rounds):
        pos = drop_positions(n, p)
        assert pos.numel() == pos.unique().numel() and (pos >= 0).all() and (pos < n).all()
        hits[r, pos] = 1.0
    sd = math.sqrt(p * (1 - p) / rounds)
    freq = hits.mean(0)  # every position dropped with probability p
    assert (freq - p).abs().max() < 5 * sd
    both = (hits[:, :-1] * hits[:, 1:]).mean()  # neighbours independent: p^2, not p
    assert abs(both.item() - p * p) < 5 * math.sqrt(p * p / (rounds * (n - 1)))
    count = hits.sum(1)  # binomial count per draw
    assert abs(count.var().item() - n * p * (1 - p)) < 0.1 * n * p * (1 - p)
    big = drop_positions(2_000_000, 0.01)  # several rounds of gaps are joined correctly
    assert abs(big.numel() - 20_000) < 6 * math.sqrt(20_000 * 0.99)
    assert torch.all(big[1:] > big[:-1])


def test_sparse_dropout_masks_scales_and_differentiates_like_dropout():
    from wmil_core.nn.layers import Dropout

    torch.manual_seed(1)
    drop = Dropout(0.02).train()
    x = (torch.rand(3, 200, 64) + 0.5).requires_grad_(True)  # no zeros of its own
    y = drop(x)
    kept = y != 0
    assert 0.01 < 1 - kept.float().mean().item() < 0.03
    torch.testing.assert_close(y[kept], (x / 0.98)[kept])
    g = torch.randn_like(y).requires_grad_(True)
    (dx,) = torch.autograd.grad(y, x, g, create_graph=True)
    torch.testing.assert_close(dx, g * kept / 0.98)
    # differentiable again (gradient penalties differentiate through the Q heads)
    (ddx,) = torch.autograd.grad((dx * x).sum(), g)
    torch.testing.assert_close(ddx, x * kept / 0.98)
    assert torch.equal(drop.eval()(x), x)
    dense = Dropout(0.5).train()(x)  # large p: nn.Dropout's own mask
    assert 0.4 < (dense == 0).float().mean().item() < 0.6
