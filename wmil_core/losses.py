"""IQ-MPC losses as pure functions of tensors and scalars.

Shapes: B batch, H horizon, L latent size. ``is_expert`` marks the expert half of a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor


def rho_weights(n: int, rho: float, device: torch.device | None = None) -> Tensor:
    """(rho^0, rho^1, ..., rho^(n-1)): temporal weights of multi-step losses."""
    return torch.pow(torch.as_tensor(rho, dtype=torch.float32, device=device),
                     torch.arange(n, device=device, dtype=torch.float32))


def consistency_loss(z_pred: Tensor, z_target: Tensor, rho: float) -> Tensor:
    """Latent consistency: (1/H) sum_t rho^t mean((d-rollout_t - sg(h(o_{t+1})))^2).

    z_pred, z_target: (H, B, L); z_target carries no gradient (the caller detaches it).
    """
    h = z_pred.shape[0]
    per_step = (z_pred.float() - z_target.float()).pow(2).mean(dim=(1, 2))  # (H,)
    return (per_step * rho_weights(h, rho, z_pred.device)).sum() / h


def decoded_reward(q: Tensor, v_next: Tensor, gamma: float,
                   done: Tensor | None = None) -> Tensor:
    """Inverse Bellman operator: r(z, a) = Q(z, a) - gamma V(z') (V' = 0 after termination)."""
    if done is not None:
        v_next = v_next * (1.0 - done)
    return q - gamma * v_next


#: value terms of :func:`iq_loss`
VALUE_TERMS = ("v0", "td", "mix", "expert")
#: the rows over which the row forms average V(z) - gamma V(z'): behaviour, all or expert
VALUE_ROWS = {"td": "behaviour", "mix": "all", "expert": "expert"}


def check_value_term(value_term: str) -> None:
    """Raise a one-line ValueError unless ``value_term`` is one of :data:`VALUE_TERMS`."""
    if value_term not in VALUE_TERMS:
        raise ValueError(f"value_term: must be one of {', '.join(VALUE_TERMS)}, "
                         f"got {value_term!r}")


def offline_value_term(value_term: str) -> str:
    """The value term on expert batches alone (offline pre-training): a form's expert rows
    where it has them (mix, expert: "expert"), else v0 (td reads behaviour rows only)."""
    return "expert" if VALUE_ROWS.get(value_term) in ("all", "expert") else "v0"


def value_rows(value_term: str, n_exp: int, b: int) -> slice:
    """The rows of an expert-first batch (``n_exp`` expert rows of ``b``) whose V the value
    term reads: the expert rows for v0 (at t = 0) and expert, the rest for td, all for mix."""
    rows = VALUE_ROWS.get(value_term, "expert")
    return {"behaviour": slice(n_exp, b), "all": slice(0, b), "expert": slice(0, n_exp)}[rows]


def chi2_term(r: Tensor, alpha: float) -> Tensor:
    """The chi-squared regulariser 1/(4 alpha) mean(r^2) over the last two (batch) axes."""
    return r.pow(2).mean(dim=(-2, -1)) / (4.0 * alpha)


def iq_loss(
    q: Tensor,
    v: Tensor,
    v_next: Tensor,
    is_expert: Tensor,
    gamma: float,
    alpha: float,
    value_term: Literal["v0", "td", "mix", "expert"] = "v0",
    v0: Tensor | None = None,
    done: Tensor | None = None,
    v0_coef: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Inverse soft-Q loss with the chi-squared regulariser (IQ-Learn).

    loss = -mean_expert(Q - gamma V') + value term + 1/(4 alpha) mean_all((Q - gamma V')^2)

    The value term is ``(1 - gamma) mean(V(z0))`` over expert latents ``v0`` at the start of
    the sampled expert sub-trajectories (``value_term="v0"``, the paper code's default; a
    ``v0_coef`` other than None replaces 1 - gamma), or
    ``mean(V(z) - gamma V(z'))`` over the behaviour rows (``"td"``, the paper code's other
    form), over every row (``"mix"``, IQ-Learn's online "value" form) or over the expert rows
    (``"expert"``, IQ-Learn's "value_expert"). V' comes from the target heads. With the expert
    rows in it the value term lowers V(z_E) = Q(z_E, pi) - beta log pi where the soft-Q term
    raises Q(z_E, a_E), pulling the critic's optimum at expert states towards the expert's
    action. With V' from the target heads the row forms push every V(z) they read down by
    a constant gradient (IQ-Learn differentiates V(z') too, and the sum telescopes to a
    1 - gamma weight); on reacher td and mix drove the behaviour Q down and expert the
    expert Q (docs/iqmpc-results.md).

    q, v_next: (..., B, 1), e.g. (num_q, H, B, 1) for every head and step at once; v: same
    batch shape (broadcast); is_expert: (B,) bool. Returns the loss reduced over the batch
    axis, shape (...), and its three parts.
    """
    r = decoded_reward(q, v_next, gamma, done)  # (..., B, 1)
    w_exp = is_expert.to(r.dtype).unsqueeze(-1)  # (B, 1)
    n_exp = w_exp.sum()
    if n_exp == 0:
        raise ValueError("iq_loss needs expert samples in the batch")
    softq = -(r * w_exp).sum(dim=(-2, -1)) / n_exp
    if value_term == "v0":
        if v0 is None:
            raise ValueError("value_term 'v0' needs v0, the values of expert initial latents")
        coef = 1.0 - gamma if v0_coef is None else v0_coef
        value = (coef * v0.mean()).expand_as(softq)
    elif value_term in VALUE_ROWS:
        w_val = {"behaviour": 1.0 - w_exp, "all": torch.ones_like(w_exp),
                 "expert": w_exp}[VALUE_ROWS[value_term]]
        if w_val.sum() == 0:
            raise ValueError(f"value_term {value_term!r} needs behaviour samples in the batch")
        y = gamma * (v_next if done is None else v_next * (1.0 - done))
        value = ((v - y) * w_val).sum(dim=(-2, -1)) / w_val.sum()
        value = value.expand_as(softq)
    else:
        raise ValueError(f"value_term must be one of {VALUE_TERMS}, got {value_term!r}")
    chi2 = chi2_term(r, alpha)
    loss = softq + value + chi2
    return loss, {"softq_loss": softq.detach().mean(), "value_loss": value.detach().mean(),
                  "chi2_loss": chi2.detach().mean()}


def action_rank_loss(q_pos: Tensor, q_neg: Tensor, temperature: float) -> Tensor:
    """Softmax cross-entropy ranking the demonstrated action first among negatives:
    mean over rows of -log softmax([Q(z, a_E), Q(z, a_1..K)] / T)[0].

    q_pos: (..., n, 1) Q at the expert's actions; q_neg: (..., n, K) Q at K other actions
    at the same latents; ``temperature`` T in Q units. Returns the loss per leading index,
    shape (...): log(K + 1) where Q cannot tell the actions apart, 0 where it ranks the
    expert's far above every negative.
    """
    logits = torch.cat([q_pos, q_neg], -1).float() / temperature
    return (torch.logsumexp(logits, -1) - logits[..., 0]).mean(-1)


def gradient_penalty(
    q_fn: Callable[[Tensor], Tensor],
    x_expert: Tensor,
    x_behaviour: Tensor,
    lam: float,
    mix: Tensor | None = None,
    center: float = 1.0,
) -> Tensor:
    """Wasserstein-1 gradient penalty lam * mean((||grad_x Q(x)|| - 1)^2) at points between
    expert and behaviour inputs x = [z, a]: x = mix * x_expert + (1 - mix) * x_behaviour.

    ``q_fn`` maps (B, D) inputs to (..., B, 1) values (heads are summed); ``mix``: (B, 1).
    ``center`` 0 gives the zero-centred penalty lam * mean(||grad||^2) (GAIL's discriminator).
    """
    if mix is None:
        mix = torch.rand(x_expert.shape[0], 1, device=x_expert.device, dtype=x_expert.dtype)
    x = (mix * x_expert + (1.0 - mix) * x_behaviour).detach().requires_grad_(True)
    q = q_fn(x)
    (grad,) = torch.autograd.grad(q.sum(), x, create_graph=True)
    return lam * (grad.norm(2, dim=-1) - center).pow(2).mean()


def policy_loss(log_pi: Tensor, q: Tensor, beta: float, rho: float) -> Tensor:
    """Maximum-entropy policy objective mean_t rho^t mean_B(beta log pi - Q); (T, B, 1) inputs."""
    per_step = (beta * log_pi - q).mean(dim=(1, 2))  # (T,)
    return (per_step * rho_weights(per_step.shape[0], rho, q.device)).mean()


def bc_loss(log_pi_expert: Tensor, rho: float) -> Tensor:
    """Behaviour-cloning term mean_t rho^t mean_B(-log pi(a_E|z_E)); (T, B, 1) input."""
    per_step = -log_pi_expert.mean(dim=(1, 2))  # (T,)
    return (per_step * rho_weights(per_step.shape[0], rho, log_pi_expert.device)).mean()


def bc_mse_loss(mean_action: Tensor, expert_action: Tensor, rho: float) -> Tensor:
    """Behaviour-cloning term mean_t rho^t mean_{B,A} (mu(z_E) - a_E)^2 on the policy's mean
    action; (T, B, A) inputs. Unlike -log pi it weighs every expert row alike, where the
    likelihood weighs rows by 1/std^2 and so favours the states the policy is surest of."""
    per_step = (mean_action - expert_action).pow(2).mean(dim=(1, 2))  # (T,)
    return (per_step * rho_weights(per_step.shape[0], rho, mean_action.device)).mean()


def pearson(x: Tensor, y: Tensor) -> Tensor:
    """Pearson correlation of two equally long 1-D tensors (0 when either is constant)."""
    x = x.reshape(-1).double()
    y = y.reshape(-1).double()
    xc, yc = x - x.mean(), y - y.mean()
    den = xc.norm() * yc.norm()
    return (xc @ yc / den).float() if den > 0 else torch.zeros((), dtype=torch.float32)
