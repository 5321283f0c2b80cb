"""Each IQ-MPC loss on tiny hand-computed tensors."""

import math

import pytest
import torch

from wmil_core.losses import (
    action_rank_loss,
    bc_loss,
    bc_mse_loss,
    consistency_loss,
    decoded_reward,
    gradient_penalty,
    iq_loss,
    pearson,
    policy_loss,
)


def col(*v):
    return torch.tensor(v, dtype=torch.float32).reshape(-1, 1)


def test_consistency_loss_weights_steps_by_rho():
    z_pred = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]]])  # (H=2, B=1, L=2)
    z_tgt = torch.zeros(2, 1, 2)
    # step 0: mean(1, 0) = 0.5, weight 1; step 1: mean(0, 4) = 2, weight 0.5; divided by H
    assert consistency_loss(z_pred, z_tgt, rho=0.5).item() == pytest.approx((0.5 + 1.0) / 2)


def test_decoded_reward_is_inverse_bellman():
    r = decoded_reward(col(1.0, 2.0), col(4.0, 4.0), gamma=0.5, done=col(0.0, 1.0))
    assert r.flatten().tolist() == [-1.0, 2.0]


def test_iq_loss_v0_variant_by_hand():
    q, v_next = col(1, 2, 3, 4), col(1, 1, 1, 1)
    is_expert = torch.tensor([True, True, False, False])
    loss, parts = iq_loss(q, torch.zeros(4, 1), v_next, is_expert, gamma=0.5, alpha=0.5,
                          value_term="v0", v0=col(2, 4))
    # r = q - 0.5 = (0.5, 1.5, 2.5, 3.5); softq = -mean(0.5, 1.5) = -1
    # value = (1 - 0.5) * mean(2, 4) = 1.5; chi2 = mean(r^2) / (4 * 0.5) = 5.25 / 2
    assert parts["softq_loss"].item() == pytest.approx(-1.0)
    assert parts["value_loss"].item() == pytest.approx(1.5)
    assert parts["chi2_loss"].item() == pytest.approx(2.625)
    assert loss.item() == pytest.approx(3.125)


def test_iq_loss_td_variant_uses_behaviour_samples():
    q, v_next = col(1, 2, 3, 4), col(1, 1, 1, 1)
    v = col(100, 100, 2, 3)  # expert values must not enter the td value term
    is_expert = torch.tensor([True, True, False, False])
    loss, parts = iq_loss(q, v, v_next, is_expert, gamma=0.5, alpha=0.5, value_term="td")
    assert parts["value_loss"].item() == pytest.approx(2.0)  # mean(2 - 0.5, 3 - 0.5)
    assert loss.item() == pytest.approx(-1.0 + 2.0 + 2.625)


def test_iq_loss_gradient_raises_expert_q_and_lowers_behaviour_q():
    q = torch.zeros(4, 1, requires_grad=True)
    is_expert = torch.tensor([True, True, False, False])
    loss, _ = iq_loss(q, q, torch.zeros(4, 1), is_expert, gamma=0.9, alpha=0.5,
                      value_term="td")
    loss.backward()
    assert (q.grad[:2] < 0).all()  # descending the loss raises expert Q
    assert (q.grad[2:] > 0).all()  # ... and lowers behaviour values


def test_iq_loss_bad_arguments():
    q = col(1, 2)
    with pytest.raises(ValueError, match="needs v0"):
        iq_loss(q, q, q, torch.tensor([True, False]), 0.9, 0.5, "v0")
    with pytest.raises(ValueError, match="expert samples"):
        iq_loss(q, q, q, torch.tensor([False, False]), 0.9, 0.5, "td")


@pytest.mark.parametrize("norm, expected", [(1.0, 0.0), (2.0, 1.0), (0.5, 0.25)])
def test_gradient_penalty_of_linear_q(norm, expected):
    w = torch.tensor([0.6, 0.8, 0.0]) * norm  # ||w|| = norm everywhere
    pen = gradient_penalty(lambda x: x @ w, torch.randn(16, 3), torch.randn(16, 3), lam=1.0)
    assert pen.item() == pytest.approx(expected, abs=1e-6)


def test_gradient_penalty_interpolates_between_inputs():
    seen = {}

    def q_fn(x):
        seen["x"] = x.detach().clone()
        return x.sum(-1, keepdim=True)

    xe, xb = torch.ones(2, 2), torch.zeros(2, 2)
    gradient_penalty(q_fn, xe, xb, lam=3.0, mix=col(0.25, 1.0))
    assert torch.equal(seen["x"], torch.tensor([[0.25, 0.25], [1.0, 1.0]]))


def test_policy_loss_by_hand():
    log_pi = torch.tensor([[1.0, 1.0], [2.0, 2.0]]).unsqueeze(-1)
    q = torch.tensor([[3.0, 3.0], [0.0, 0.0]]).unsqueeze(-1)
    # step 0: 0.5*1 - 3 = -2.5 (weight 1); step 1: 0.5*2 - 0 = 1 (weight 0.5); mean over T
    assert policy_loss(log_pi, q, beta=0.5, rho=0.5).item() == pytest.approx(-1.0)


def test_bc_loss_by_hand():
    log_pi = torch.tensor([[1.0, 3.0], [-2.0, -2.0]]).unsqueeze(-1)
    # step 0: -(1 + 3)/2 = -2 (weight 1); step 1: 2 (weight 0.5); mean over T: (-2 + 1) / 2
    assert bc_loss(log_pi, rho=0.5).item() == pytest.approx(-0.5)


def test_bc_mse_loss_by_hand():
    mean = torch.tensor([[[0.5, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])  # (T 2, B 2, A 2)
    expert = torch.zeros(2, 2, 2)
    # step 0: mean of (0.25, 0, 0, 0) = 0.0625 (weight 1); step 1: 1 (weight 0.5); mean over T
    assert bc_mse_loss(mean, expert, rho=0.5).item() == pytest.approx((0.0625 + 0.5) / 2)


def test_action_rank_loss_by_hand():
    # row 0: expert Q 2, negatives 0 and 0 -> -log(e^2 / (e^2 + 2)); row 1: all equal -> log 3
    q_pos = torch.tensor([[2.0], [1.0]])
    q_neg = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    row0 = -math.log(math.exp(2) / (math.exp(2) + 2))
    expected = (row0 + math.log(3)) / 2
    assert action_rank_loss(q_pos, q_neg, 1.0).item() == pytest.approx(expected, rel=1e-6)
    # the temperature divides the Q gaps: T = 2 turns row 0's gap of 2 into 1
    row0_t2 = -math.log(math.e / (math.e + 2))
    assert action_rank_loss(q_pos, q_neg, 2.0).item() == pytest.approx(
        (row0_t2 + math.log(3)) / 2, rel=1e-6)
    # leading axes (heads, steps) are kept; the gradient raises the expert's Q
    q_pos = torch.zeros(2, 3, 4, 1, requires_grad=True)
    loss = action_rank_loss(q_pos, torch.zeros(2, 3, 4, 5), 1.0)
    assert loss.shape == (2, 3)
    loss.sum().backward()
    assert (q_pos.grad < 0).all()


def test_pearson():
    x = torch.tensor([1.0, 2.0, 3.0])
    assert pearson(x, 2 * x + 1).item() == pytest.approx(1.0)
    assert pearson(x, -x).item() == pytest.approx(-1.0)
    assert pearson(x, torch.ones(3)).item() == 0.0


def test_iq_loss_batches_heads_and_steps_like_a_loop():
    torch.manual_seed(0)
    q = torch.randn(3, 2, 6, 1)  # (num_q, H, B, 1)
    v = torch.randn(2, 6, 1)
    v_next = torch.randn(2, 6, 1)
    is_expert = torch.tensor([1, 1, 1, 0, 0, 0], dtype=torch.bool)
    for term in ("v0", "td"):
        v0 = torch.randn(3, 1)
        batched, _ = iq_loss(q, v, v_next, is_expert, 0.9, 0.5, term, v0)
        assert batched.shape == (3, 2)
        for i in range(3):
            for t in range(2):
                one, _ = iq_loss(q[i, t], v[t], v_next[t], is_expert, 0.9, 0.5, term, v0)
                assert torch.allclose(batched[i, t], one)


@pytest.mark.parametrize("value_term,rows", [("mix", [0, 1, 2, 3]), ("expert", [0, 1])])
def test_iq_loss_value_forms_over_every_row_or_the_expert_rows(value_term, rows):
    q, v_next = col(1, 2, 3, 4), col(1, 1, 1, 1)
    v = col(5, 7, 2, 3)
    is_expert = torch.tensor([True, True, False, False])
    loss, parts = iq_loss(q, v, v_next, is_expert, gamma=0.5, alpha=0.5, value_term=value_term)
    want = sum(v[i].item() - 0.5 for i in rows) / len(rows)  # mean of V - gamma V'
    assert parts["value_loss"].item() == pytest.approx(want)
    assert loss.item() == pytest.approx(-1.0 + want + 2.625)


@pytest.mark.parametrize("value_term", ["mix", "expert"])
def test_iq_loss_expert_value_rows_contrast_expert_and_policy_actions(value_term):
    # at expert states, Q(z_E, a_E) (q) is raised and V(z_E) = Q(z_E, pi) (v) is lowered:
    # the critic's optimum there is pulled towards the expert's action. td and v0 leave
    # V at expert states (other than starts) alone.
    q = torch.zeros(4, 1, requires_grad=True)
    v = torch.zeros(4, 1, requires_grad=True)
    is_expert = torch.tensor([True, True, False, False])
    loss, _ = iq_loss(q, v, torch.zeros(4, 1), is_expert, gamma=0.9, alpha=0.5,
                      value_term=value_term)
    loss.backward()
    assert (q.grad[:2] < 0).all() and (v.grad[:2] > 0).all()
    td_loss, _ = iq_loss(q, v, torch.zeros(4, 1), is_expert, 0.9, 0.5, "td")
    v.grad = None
    td_loss.backward()
    assert (v.grad[:2] == 0).all()


def test_iq_loss_unknown_value_term():
    q = col(1, 2)
    with pytest.raises(ValueError, match="value_term must be one of"):
        iq_loss(q, q, q, torch.tensor([True, False]), 0.9, 0.5, "bogus")


def test_offline_value_term_keeps_a_forms_expert_rows():
    from wmil_core.losses import offline_value_term
    assert offline_value_term("mix") == offline_value_term("expert") == "expert"
    assert offline_value_term("td") == offline_value_term("v0") == "v0"


def test_iq_loss_v0_coef_replaces_one_minus_gamma():
    q, v_next = col(1, 2, 3, 4), col(1, 1, 1, 1)
    is_expert = torch.tensor([True, True, False, False])
    _, parts = iq_loss(q, torch.zeros(4, 1), v_next, is_expert, gamma=0.5, alpha=0.5,
                       value_term="v0", v0=col(2, 4), v0_coef=0.25)
    assert parts["value_loss"].item() == pytest.approx(0.25 * 3.0)


def test_value_rows_of_an_expert_first_batch():
    from wmil_core.losses import value_rows
    assert value_rows("v0", 2, 5) == value_rows("expert", 2, 5) == slice(0, 2)
    assert value_rows("td", 2, 5) == slice(2, 5) and value_rows("mix", 2, 5) == slice(0, 5)
