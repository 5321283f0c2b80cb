"""Network building blocks of the TD-MPC2-style world model (pure modules, no config objects)."""

from __future__ import annotations

import math
import types
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_EXP_20 = math.exp(20.0)  # beyond it n / (n + 2) is 1 in float32


def _mish_parts(x: Tensor) -> tuple[Tensor, Tensor]:
    """(e^x clamped, tanh(softplus(x))) = (e, n / (n + 2)) with n = e (e + 2).

    e^x is clamped at e^20 after the exponential, not x at 20 before it: the same values
    (t is 1 from there on either way), and inductor's kernel is 2.5x faster this way round.
    """
    e = torch.clamp(torch.exp(x), max=_EXP_20)
    n = e * (e + 2.0)
    return e, n / (n + 2.0)


class _MishFn(torch.autograd.Function):
    """Mish with a hand-written backward, d/dx = t + x (1 - t^2) sigmoid(x) with
    t = tanh(softplus(x)) and sigmoid(x) = e / (1 + e) from the forward's own e and t."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # noqa: D102
        e, t = _mish_parts(x)
        ctx.save_for_backward(x, e, t)
        return x * t

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # noqa: D102
        x, e, t = ctx.saved_tensors
        if torch.is_grad_enabled():
            # a double backward is wanted (create_graph, e.g. a gradient penalty): the saved
            # e and t carry no graph, so rebuild them from x for the derivative's derivative
            e, t = _mish_parts(x)
        return grad * _mish_slope(x, e, t)


def _mish_slope(x: Tensor, e: Tensor, t: Tensor) -> Tensor:
    """mish'(x) = t + x (1 - t^2) sigmoid(x) from :func:`_mish_parts` (e, t)."""
    return t + x * (1.0 - t * t) * (e / (1.0 + e))


def _mish_value_and_slope(x: Tensor) -> tuple[Tensor, Tensor]:
    """(mish(x), mish'(x)), for one fused kernel."""
    e, t = _mish_parts(x)
    return x * t, _mish_slope(x, e, t)


def _mish_value(x: Tensor) -> Tensor:
    return x * _mish_parts(x)[1]


class _FusedMishFn(torch.autograd.Function):
    """:class:`_MishFn` with its element-wise work in compiled kernels: the forward writes
    mish(x) and mish'(x) in one pass, the backward is one product. A double backward
    (create_graph) falls back to the differentiable formula of :class:`_MishFn`."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # noqa: D102
        y, slope = _FUSED["value_and_slope"]["value_and_slope"](x.reshape(-1))  # flat: any shape
        ctx.save_for_backward(x, slope.view(x.shape))
        return y.view(x.shape)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # noqa: D102
        x, slope = ctx.saved_tensors
        if torch.is_grad_enabled():
            return grad * _mish_value_and_slope(x)[1]
        return grad * slope


def _layer_norm_stats(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """(mean, 1 / std) of x over its last axis (kept as an axis of 1)."""
    mean = x.mean(-1, keepdim=True)
    xc = x - mean
    return mean, torch.rsqrt((xc * xc).mean(-1, keepdim=True) + eps)


def _ln_affine(x: Tensor, w: Tensor, b: Tensor, eps: float,
               scale: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(u = LayerNorm(scale x) w + b, mean, 1 / std)."""
    x = x * scale
    mean, rstd = _layer_norm_stats(x, eps)
    return (x - mean) * rstd * w + b, mean, rstd


def _ln_mish_value(x: Tensor, w: Tensor, b: Tensor, eps: float, scale: Tensor) -> Tensor:
    """mish(LayerNorm(scale x) w + b), for one fused kernel."""
    return _mish_value(_ln_affine(x, w, b, eps, scale)[0])


def _ln_mish_forward(x: Tensor, w: Tensor, b: Tensor, eps: float,
                     scale: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(mish(u), mish'(u), mean, 1 / std) with u = LayerNorm(scale x) w + b."""
    u, mean, rstd = _ln_affine(x, w, b, eps, scale)
    return (*_mish_value_and_slope(u), mean, rstd)


def _ln_input_grad(gxh: Tensor, xhat: Tensor, rstd: Tensor, scale: Tensor) -> Tensor:
    """LayerNorm's backward to ``scale x``'s owner x from the gradient ``gxh`` of x-hat."""
    return rstd * (gxh - gxh.mean(-1, keepdim=True)
                   - xhat * (gxh * xhat).mean(-1, keepdim=True)) * scale


def _ln_mish_grads(g: Tensor, slope: Tensor, x: Tensor, mean: Tensor, rstd: Tensor,
                   w: Tensor, scale: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of mish(LayerNorm(scale x) w + b) for x (E, R, D) and w, b (E, 1, D), given
    the output's gradient ``g``, x and :func:`_ln_mish_forward`'s slope, mean and 1 / std."""
    xhat = (x * scale - mean) * rstd
    gu = g * slope
    return (_ln_input_grad(gu * w, xhat, rstd, scale), (gu * xhat).sum(1, keepdim=True),
            gu.sum(1, keepdim=True))


def _ln_mish_grad_x(g: Tensor, slope: Tensor, x: Tensor, mean: Tensor, rstd: Tensor,
                    w: Tensor, scale: Tensor) -> Tensor:
    """:func:`_ln_mish_grads` for x alone (the affine parameters are frozen)."""
    return _ln_input_grad(g * slope * w, (x * scale - mean) * rstd, rstd, scale)


class _FusedLayerNormMishFn(torch.autograd.Function):
    """mish(LayerNorm(x) w + b) in compiled kernels: one forward pass writes the output and
    what the backward needs, one backward pass returns the gradients. Inputs x (E, R, D),
    w and b (E, 1, D). A double backward (create_graph) rebuilds the differentiable formula.

    With ``drop`` (positions, scale), dropout before the normalisation: x's dropped
    positions must already be zero (the caller zeroes them in place), the kernels scale the
    rest, and x's gradient is zeroed at the same positions.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, w: Tensor, b: Tensor, eps: float,  # noqa: D102
                drop: tuple[Tensor, float] | None, kernels: dict[str, Any]) -> Tensor:
        scale = _scale(1.0 if drop is None else drop[1], x)
        y, slope, mean, rstd = kernels["ln_forward"](x, w, b, eps, scale)
        ctx.save_for_backward(x, w, b, slope, mean, rstd, scale,
                              *(() if drop is None else (drop[0],)))
        ctx.eps, ctx.kernels = eps, kernels
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # noqa: D102
        x, w, b, slope, mean, rstd, scale, *pos = ctx.saved_tensors
        grad = grad.contiguous()
        if torch.is_grad_enabled():  # a double backward: the saved tensors carry no graph
            if pos:  # the dropped positions' zeros as a function of x (no gradient there)
                x = x.reshape(-1).index_fill(0, pos[0], 0.0).view(x.shape)
            u, mean, rstd = _ln_affine(x, w, b, ctx.eps, scale)
            slope = _mish_slope(u, *_mish_parts(u))
            gx, gw, gb = _ln_mish_grads(grad, slope, x, mean, rstd, w, scale)
            if pos:
                gx = gx.reshape(-1).index_fill(0, pos[0], 0.0).view(gx.shape)
            return gx, gw, gb, None, None, None
        k = ctx.kernels
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            gx, gw, gb = k["ln_grads"](grad, slope, x, mean, rstd, w, scale)
        else:
            gx, gw, gb = k["ln_grad_x"](grad, slope, x, mean, rstd, w, scale), None, None
        if pos:  # a fresh tensor from the kernel
            gx.view(-1).index_fill_(0, pos[0], 0.0)
        return gx, gw, gb, None, None, None


def _fusable() -> bool:
    """Whether :func:`layer_norm_mish` may take its compiled kernels here and now."""
    return (FUSED_MISH and not torch.onnx.is_in_onnx_export()
            and not torch.compiler.is_compiling())


def layer_norm_mish(x: Tensor, weight: Tensor, bias: Tensor, eps: float, d: int,
                    dropout: nn.Module | None = None) -> Tensor:
    """mish(LayerNorm(dropout(x)) weight + bias) over x's last axis, of width ``d`` (a
    Python int, which the ONNX export records as a constant).

    ``weight`` and ``bias``: (D,), or (E, 1, D) per ensemble member for x (E, ..., D).
    Outside tracing, where the fused Mish runs (``FUSED_MISH``), normalisation, affine and
    Mish are one compiled kernel forward and one backward (with a gradient, or without one
    from ``FUSED_MISH_MIN_NUMEL`` elements); otherwise ``F.layer_norm``, the affine and
    :func:`mish` as separate operators (what the ONNX export records). A :class:`Dropout`
    that would draw its positions is folded into the kernels: it zeroes x's dropped
    positions in place (x must be the caller's own fresh pre-activation) and the kernels
    scale the rest, two passes fewer each way.
    """
    if x.dtype != weight.dtype and torch.is_autocast_enabled(x.device.type):
        # reduced-precision activations stay so (the next matmul reads them): the affine
        # follows x's dtype, as autocast casts a linear layer's weight
        weight, bias = weight.to(x.dtype), bias.to(x.dtype)
    if _fusable():
        e = 1 if weight.dim() == 1 else weight.shape[0]
        grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                            or bias.requires_grad)
        kernel = "ln_forward" if grad else "ln_value"
        # with a gradient, HAND_MISH_BACKWARD off asks for autograd's chain (benchmarks)
        if ((HAND_MISH_BACKWARD if grad else x.numel() >= FUSED_MISH_MIN_NUMEL)
                and (k := _fused(x, kernel))):
            drop = None
            if isinstance(dropout, Dropout) and dropout.draws_positions():
                x = x.contiguous()
                drop = (drop_positions(x.numel(), dropout.p, x.device), 1.0 / (1.0 - dropout.p))
                # zeroed before any view of x is taken (else autograd replays the view)
                x.detach().view(-1).index_fill_(0, drop[0], 0.0)
            elif dropout is not None:  # any other dropout (or none in eval mode) runs apart
                x = dropout(x)
            x3, w3, b3 = x.reshape(e, -1, d), weight.view(e, 1, d), bias.view(e, 1, d)
            if grad:
                return _FusedLayerNormMishFn.apply(x3, w3, b3, eps, drop, k).view(x.shape)
            scale = _scale(1.0 if drop is None else drop[1], x)
            return k["ln_value"](x3, w3, b3, eps, scale).view(x.shape)
    if dropout is not None:
        x = dropout(x)
    if weight.dim() == 1:
        return mish(F.layer_norm(x, (d,), weight, bias, eps))
    return mish(F.layer_norm(x, (d,), eps=eps) * weight + bias)


HAND_MISH_BACKWARD = True  # False: autograd's chain through the identity (benchmarks compare)
FUSED_MISH = True  # False: eager ops for Mish and LayerNorm-Mish (benchmarks; off on failure)
FUSED_MISH_MIN_NUMEL = 32768  # without a gradient, smaller tensors are faster eagerly
_FUSED: dict[Any, dict[str, Callable[..., Any]]] = {}  # see _fused_key


def _members_rows_dynamic(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (compiled without dynamic shapes) with the first two axes of its (E, R, D)
    tensor arguments marked dynamic: a kernel specialised to the feature width D (which
    vectorises the row reductions; 1.7x faster than fully dynamic shapes for a
    (2, 1024, 384) forward) that serves every batch size and ensemble size."""
    def call(*args: Any) -> Any:
        args = tuple(a.detach() if isinstance(a, Tensor) else a for a in args)  # no variants
        for t in args:  # by requires_grad (the caller's autograd.Function differentiates)
            if isinstance(t, Tensor) and t.dim() == 3:
                for dim in (0, 1):
                    if t.shape[dim] > 1:
                        torch._dynamo.maybe_mark_dynamic(t, dim)
        return fn(*args)
    return call


def _own_code(f: Callable[..., Any]) -> Callable[..., Any]:
    """A copy of function ``f`` with a code object of its own: ``torch.compile`` keeps its
    compiled variants (and counts them against its recompile limit) per code object."""
    return types.FunctionType(f.__code__.replace(), f.__globals__, f.__name__, f.__defaults__,
                              f.__closure__)


_KERNELS: dict[str, dict[str, Callable[..., Any]]] = {
    "value": {"value": _mish_value},
    "value_and_slope": {"value_and_slope": _mish_value_and_slope},
    "ln_value": {"ln_value": _ln_mish_value},
    "ln_forward": {"ln_forward": _ln_mish_forward, "ln_grads": _ln_mish_grads,
                   "ln_grad_x": _ln_mish_grad_x},
}


def _fused_key(x: Tensor, kernel: str) -> Any:
    """Mish kernels are one per name (flat, dynamic shapes); LayerNorm-Mish kernels one set
    per feature width, dtype and device, so that no set meets the recompile limit."""
    return kernel if not kernel.startswith("ln_") else (kernel, x.shape[-1], x.dtype,
                                                        x.device.type)


def _scale(value: float, like: Tensor) -> Tensor:
    """A 0-d tensor holding ``value`` (a dropout scale): a kernel argument that is not
    specialised on, unlike a Python float."""
    key = (value, like.dtype, like.device)
    if key not in _SCALES:
        _SCALES[key] = torch.tensor(value, dtype=like.dtype, device=like.device)
    return _SCALES[key]


_SCALES: dict[Any, Tensor] = {}


def _fused(x: Tensor, kernel: str) -> dict[str, Callable[..., Any]] | None:
    """The compiled functions of ``kernel`` (a key of ``_KERNELS``; the LayerNorm-Mish
    backward kernels come with its forward) for tensors like x, built and probed on first
    use; None (and fusion off for good, with a warning) where ``torch.compile`` cannot
    build them, e.g. without a C++ compiler."""
    global FUSED_MISH
    key = _fused_key(x, kernel)
    if key in _FUSED:
        return _FUSED[key]
    try:
        with torch.no_grad():
            if kernel.startswith("ln_"):  # (E, R, D): D static, E and R dynamic
                fns = {k: _members_rows_dynamic(torch.compile(_own_code(f), dynamic=False))
                       for k, f in _KERNELS[kernel].items()}
                v = torch.linspace(-3.0, 3.0, 8 * x.shape[-1], device=x.device,
                                   dtype=x.dtype).view(2, 4, -1)
                w, one = v[:, :1].contiguous(), _scale(1.0, x)
                out = fns[kernel](v, w, w, 1e-5, one)
                if kernel == "ln_forward":
                    fns["ln_grads"](v, out[1], v, *out[2:], w, one)
                    fns["ln_grad_x"](v, out[1], v, *out[2:], w, one)
            else:
                fns = {k: torch.compile(f, dynamic=True) for k, f in _KERNELS[kernel].items()}
                fns[kernel](torch.linspace(-3.0, 3.0, 64, device=x.device, dtype=x.dtype))
    except Exception as exc:  # noqa: BLE001 - any failure to build means: stay eager
        FUSED_MISH = False
        warnings.warn(f"fused Mish kernels unavailable, using eager ops ({type(exc).__name__}: "
                      f"{str(exc).splitlines()[0] if str(exc) else ''})", stacklevel=3)
        return None
    _FUSED[key] = fns
    return fns


def mish(x: Tensor) -> Tensor:
    """Mish, x tanh(softplus(x)), computed as x n / (n + 2) with n = e^x (e^x + 2).

    The same function (an identity), in vectorised exp/mul/div: faster than ``F.mish`` on
    the CPU, and exported to ONNX without Softplus, which onnxruntime runs as scalar code.
    Beyond x = 20 the ratio is 1 in float32, so e^x is clamped there (no inf / inf).
    When a gradient is needed, a hand-written backward replaces autograd's chain through
    the identity (``wmil bench speed --autograd-mish`` measures what it gains). Outside
    ``torch.compile`` and ONNX export the element-wise ops run as ``torch.compile``'d
    kernels (``FUSED_MISH``; ``wmil bench speed --eager-mish`` measures what they gain):
    one pass over x instead of seven, and with a gradient a one-product backward. After a
    LayerNorm, :func:`layer_norm_mish` fuses the two.
    """
    export = torch.onnx.is_in_onnx_export()
    # traced (export, or inside an enclosing compile): the tracer sees the plain ops
    may_fuse = FUSED_MISH and not export and not torch.compiler.is_compiling()
    if x.requires_grad and torch.is_grad_enabled():
        if HAND_MISH_BACKWARD and not export:
            return (_FusedMishFn.apply(x) if may_fuse and _fused(x, "value_and_slope")
                    else _MishFn.apply(x))
    elif may_fuse and x.numel() >= FUSED_MISH_MIN_NUMEL and (k := _fused(x, "value")):
        return k["value"](x.reshape(-1)).view(x.shape)
    return _mish_value(x)


class Mish(nn.Module):
    """:func:`mish` as a module."""

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return mish(x)


def _group_softmax(x: Tensor, group: int) -> Tensor:
    """Softmax over consecutive groups of ``group`` features, in five element-wise passes."""
    g = x.reshape(*x.shape[:-1], x.shape[-1] // group, group)  # (..., L/g, g)
    e = torch.exp(g - g.amax(-1, keepdim=True))
    return (e / e.sum(-1, keepdim=True)).reshape(x.shape)


class _SimNormFn(torch.autograd.Function):
    """:func:`_group_softmax` with the softmax backward s (g - sum_group(g s)) written out."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, group: int) -> Tensor:  # noqa: D102
        s = _group_softmax(x, group)
        ctx.save_for_backward(x, s)
        ctx.group = group
        return s

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # noqa: D102
        x, s = ctx.saved_tensors
        if torch.is_grad_enabled():  # a double backward: rebuild s with a graph
            s = _group_softmax(x, ctx.group)
        shape = (*s.shape[:-1], s.shape[-1] // ctx.group, ctx.group)
        sg, gg = s.reshape(shape), grad.reshape(shape)
        return (sg * (gg - (gg * sg).sum(-1, keepdim=True))).reshape(s.shape), None


def simnorm(x: Tensor, group: int) -> Tensor:
    """Simplicial normalisation: softmax over consecutive groups of ``group`` features.

    Outside tracing (ONNX export, ``torch.compile``) it runs as max, exp, sum and divide over
    the groups with a hand-written backward: aten's softmax over a last axis of 8 took 6x as
    long on the CPU (a (768, 128) latent: 1.5 against 0.24 ms; forward and backward 2.2
    against 0.5 ms).
    """
    if torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling():
        shape = x.shape
        return F.softmax(x.reshape(*shape[:-1], shape[-1] // group, group), -1).reshape(shape)
    if x.requires_grad and torch.is_grad_enabled():
        return _SimNormFn.apply(x, group)
    return _group_softmax(x, group)


class SimNorm(nn.Module):
    """:func:`simnorm` as a module (latent states live on a product of simplices)."""

    def __init__(self, group: int = 8) -> None:
        super().__init__()
        self.group = group

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        return simnorm(x, self.group)

    def extra_repr(self) -> str:  # noqa: D102
        return f"group={self.group}"


def drop_positions(n: int, p: float, device: torch.device | str = "cpu") -> Tensor:
    """Indices of [0, n), each in independently with probability ``p`` (sorted).

    The gaps between successive successes of a Bernoulli(p) process are independent
    geometric variables, so about n p of them are drawn instead of n uniforms: exactly the
    distribution of a dropout mask, at a fraction of its random numbers when p is small.
    """
    mean = n * p
    draws = int(mean + 6.0 * math.sqrt(mean) + 16.0)  # enough in one round but rarely
    parts, last = [], -1
    while last < n:
        gaps = torch.empty(draws, dtype=torch.float64, device=device).geometric_(p)
        steps = last + torch.cumsum(gaps, 0).long()  # successes at last + G1, + G1 + G2, ...
        parts.append(steps)
        last = int(steps[-1])
    pos = torch.cat(parts)
    return pos[pos < n]


class _SparseDropoutFn(torch.autograd.Function):
    """Dropout whose zeros are written at :func:`drop_positions` (differentiable twice)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, p: float) -> Tensor:  # noqa: D102
        pos = drop_positions(x.numel(), p, x.device)
        ctx.save_for_backward(pos)
        ctx.scale = 1.0 / (1.0 - p)
        out = x * ctx.scale  # a new contiguous tensor
        out.view(-1).index_fill_(0, pos, 0.0)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # noqa: D102
        (pos,) = ctx.saved_tensors
        g = (grad * ctx.scale).contiguous()  # a new tensor: zero its dropped positions in place
        g.view(-1).index_fill_(0, pos, 0.0)
        return g, None


SPARSE_DROPOUT = True  # False: nn.Dropout's per-element masks (tests comparing with compile)


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same mask distribution, same module state) that, for small p in eager
    training, draws the dropped positions (:func:`drop_positions`) instead of a uniform per
    element: TD-MPC2's 1% dropout in the Q heads drew as many random numbers as the layer
    has activations. Under ``torch.compile`` and for p > 0.1 it is ``nn.Dropout``."""

    def draws_positions(self) -> bool:
        """Whether the next forward drops :func:`drop_positions` (else ``nn.Dropout``'s)."""
        return (SPARSE_DROPOUT and self.training and 0.0 < self.p <= 0.1 and not self.inplace
                and not torch.compiler.is_compiling() and not torch.onnx.is_in_onnx_export())

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        if not self.draws_positions():
            return super().forward(x)
        return _SparseDropoutFn.apply(x, self.p)


class NormedLinear(nn.Sequential):
    """Linear -> (dropout) -> LayerNorm -> activation (Mish unless given)."""

    def __init__(self, d_in: int, d_out: int, dropout: float = 0.0,
                 act: nn.Module | None = None) -> None:
        layers: list[nn.Module] = [nn.Linear(d_in, d_out)]
        if dropout > 0:
            layers.append(Dropout(dropout))
        layers += [nn.LayerNorm(d_out), act if act is not None else Mish()]
        super().__init__(*layers)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        if type(self[-1]) is not Mish:
            return super().forward(x)
        for layer in list(self)[:-2]:
            x = layer(x)
        ln = self[-2]
        return layer_norm_mish(x, ln.weight, ln.bias, ln.eps, ln.normalized_shape[0])


def mlp(d_in: int, hidden: list[int], d_out: int, act: nn.Module | None = None,
        dropout: float = 0.0) -> nn.Sequential:
    """MLP of NormedLinear layers; the output layer is plain Linear, or NormedLinear with ``act``.

    ``dropout`` applies to the first hidden layer only, as in TD-MPC2's Q functions.
    """
    dims = [d_in, *hidden]
    layers: list[nn.Module] = [
        NormedLinear(dims[i], dims[i + 1], dropout=dropout if i == 0 else 0.0)
        for i in range(len(hidden))
    ]
    layers.append(NormedLinear(dims[-1], d_out, act=act) if act is not None
                  else nn.Linear(dims[-1], d_out))
    return nn.Sequential(*layers)


class _ToScalarFn(torch.autograd.Function):
    """(E, B, D) @ (E, D, 1) + (E, 1, 1), whose input gradient is a broadcast product: as a
    batched matmul with an inner size of 1 it took 3-4x as long (0.8 ms for 2 x 1024 x 384).
    The backward is made of differentiable operators (double backward works)."""

    @staticmethod
    def forward(ctx: Any, h: Tensor, w: Tensor, b: Tensor) -> Tensor:  # noqa: D102
        ctx.save_for_backward(h, w)
        return torch.baddbmm(b, h, w)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # noqa: D102
        h, w = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad
        return (grad * w.transpose(1, 2) if need_h else None,
                torch.bmm(h.transpose(1, 2), grad) if need_w else None,
                grad.sum(1, keepdim=True) if need_b else None)


def scalar_head(h: Tensor, layer: Callable[[Tensor], Tensor]) -> Tensor:
    """``layer(h)`` for a layer with a single output (a Q value), in float32 even under a
    reduced-precision autocast: bfloat16 spaces values between 128 and 256 a whole unit
    apart, coarser than the decoded rewards (Q - gamma V') the critic is trained on."""
    if torch.is_autocast_enabled(h.device.type):
        with torch.autocast(h.device.type, enabled=False):
            return layer(h.float())
    return layer(h)


def ensemble_linear(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """x (E, B, in) or (B, in) shared by every member, w (E, in, out), b (E, 1, out) ->
    (E, B, out) as one batched matmul (a single output: :class:`_ToScalarFn`)."""
    if x.dim() == 2:
        x = x.unsqueeze(0).expand(w.shape[0], -1, -1)
    if (w.shape[-1] == 1 and torch.is_grad_enabled() and not torch.onnx.is_in_onnx_export()
            and not torch.compiler.is_compiling()):
        return _ToScalarFn.apply(x, w, b)
    return torch.baddbmm(b, x, w)


class EnsembleLinear(nn.Module):
    """``E`` independent linear layers applied as one batched matmul: (E, B, in) -> (E, B, out)."""

    def __init__(self, num: int, d_in: int, d_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num, d_in, d_out))
        self.bias = nn.Parameter(torch.empty(num, 1, d_out))
        bound = 1.0 / math.sqrt(d_in)
        # same distribution as nn.Linear's default init, per member
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        # x: (E, B, in), or (B, in) shared by every member
        return ensemble_linear(x, self.weight, self.bias)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last axis with separate affine parameters per ensemble member."""

    def __init__(self, num: int, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num, 1, dim))
        self.bias = nn.Parameter(torch.zeros(num, 1, dim))
        self.eps = eps
        self.dim = dim  # a Python int: traced as a constant by the ONNX export

    def norm_mish(self, x: Tensor, heads: Tensor | int | None = None,
                  dropout: nn.Module | None = None) -> Tensor:
        """:func:`layer_norm_mish` of x with every member's affine (x: (E, B, D)), that of
        the members ``heads`` (a tensor of indices; x: (K, B, D)) or of one member (an int;
        x: (B, D))."""
        if heads is None:
            w, b = self.weight, self.bias
        elif isinstance(heads, int):
            w, b = self.weight[heads, 0], self.bias[heads, 0]
        else:
            w, b = self.weight[heads], self.bias[heads]
        return layer_norm_mish(x, w, b, self.eps, self.dim, dropout)


class QEnsemble(nn.Module):
    """``num_q`` Q functions Q_i(z, a) -> scalar, evaluated together with batched matmuls.

    Each member is Linear -> dropout -> LN -> Mish -> Linear -> LN -> Mish -> Linear(1),
    the last layer zero-initialised (Q starts at 0 everywhere).

    ``latent_dim``: the width of z in the input x = [z; a], needed by the evaluation-only
    methods that take the first layer in parts (:meth:`at`).
    """

    def __init__(self, num_q: int, d_in: int, hidden: int, dropout: float = 0.01,
                 latent_dim: int | None = None) -> None:
        super().__init__()
        self.num_q = num_q
        self.hidden = hidden  # Python ints: traced as constants by the ONNX export
        self.latent_dim = latent_dim
        self.l1 = EnsembleLinear(num_q, d_in, hidden)
        self.ln1 = EnsembleLayerNorm(num_q, hidden)
        self.l2 = EnsembleLinear(num_q, hidden, hidden)
        self.ln2 = EnsembleLayerNorm(num_q, hidden)
        self.out = EnsembleLinear(num_q, hidden, 1)
        self.dropout = Dropout(dropout) if dropout > 0 else nn.Identity()
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, heads: Tensor | None = None) -> Tensor:
        """x: (B, in) -> (num_q, B, 1), or only the members ``heads`` -> (len(heads), B, 1)."""
        if heads is None:
            h = self.ln1.norm_mish(self.l1(x), dropout=self.dropout)  # (num_q, B, hidden)
            h = self.ln2.norm_mish(self.l2(h))
            return scalar_head(h, self.out)

        def lin(layer: EnsembleLinear, v: Tensor) -> Tensor:
            return ensemble_linear(v, layer.weight[heads], layer.bias[heads])

        h = self.ln1.norm_mish(lin(self.l1, x), heads, self.dropout)
        h = self.ln2.norm_mish(lin(self.l2, h), heads)
        return scalar_head(h, lambda v: lin(self.out, v))

    # -- evaluation only (no dropout): the first layer in parts, W [z; a] + b = W_z z + (W_a a
    # + b), so that a latent shared by many rows is multiplied once (MPPI's start, and Q(z, a)
    # beside Q(z, pi(z))) ------------------------------------------------------------------------
    def _z_width(self) -> int:
        if self.latent_dim is None:
            raise ValueError("QEnsemble: the split first layer needs latent_dim")
        return self.latent_dim

    # the weights are sliced before the heads are gathered, so that the ONNX export folds the
    # slices into constants and each call gathers only the part it multiplies
    def first_z(self, z: Tensor, heads: Tensor) -> Tensor:
        """W_z z of the first layer of ``heads``: (R, L) -> (K, R, hidden), without the bias."""
        return torch.matmul(z, self.l1.weight[:, : self._z_width()][heads])

    def first_a(self, a: Tensor, heads: Tensor) -> Tensor:
        """W_a a + b of the first layer of ``heads``: (B, A) -> (K, B, hidden)."""
        w = self.l1.weight[:, self._z_width():][heads]
        return torch.matmul(a, w) + self.l1.bias[heads]

    def rest(self, pre: Tensor, heads: Tensor) -> Tensor:
        """Q of ``heads`` from their first layer's pre-activation (K, B, hidden) -> (K, B, 1)."""
        h = self.ln1.norm_mish(pre, heads)
        h = self.ln2.norm_mish(torch.matmul(h, self.l2.weight[heads]) + self.l2.bias[heads],
                               heads)
        w, b = self.out.weight[heads], self.out.bias[heads]
        return scalar_head(h, lambda v: torch.matmul(v, w) + b)

    # one head at a time: the linear layers as F.linear with the bias inside and the
    # normalisations with the head's affine inside (fused operators once exported)
    def head_z(self, z: Tensor, k: int) -> Tensor:
        """W_z z of head ``k``'s first layer: (R, L) -> (R, hidden), without the bias."""
        return F.linear(z, self.l1.weight[k, : self._z_width()].t())

    def head_a(self, a: Tensor, k: int) -> Tensor:
        """W_a a + b of head ``k``'s first layer: (B, A) -> (B, hidden)."""
        return F.linear(a, self.l1.weight[k, self._z_width():].t(), self.l1.bias[k, 0])

    def head_rest(self, pre: Tensor, k: int) -> Tensor:
        """Q of head ``k`` from its first layer's pre-activation: (B, hidden) -> (B, 1)."""
        h = self.ln1.norm_mish(pre, k)
        h = F.linear(h, self.l2.weight[k].t(), self.l2.bias[k, 0])
        h = self.ln2.norm_mish(h, k)
        return scalar_head(h, lambda v: F.linear(v, self.out.weight[k].t(), self.out.bias[k, 0]))

    def every_head(self, x: Tensor) -> Tensor:
        """Q of every head, one head at a time, at x = [z; a]: (B, in) -> (num_q, B, 1)."""
        return torch.stack([
            self.head_rest(F.linear(x, self.l1.weight[k].t(), self.l1.bias[k, 0]), k)
            for k in range(self.num_q)])

    def at(self, z: Tensor, actions: Sequence[Tensor], heads: Tensor,
           unrolled: bool = False) -> Tensor:
        """Q of ``heads`` at latents z (R, L), R = 1 (shared by every row) or N, for each
        (N, A) batch of ``actions``, the batches one after the other: (K, len(actions) N, 1).

        z's share of the first layer is computed once for all batches. ``unrolled`` (an
        ensemble of two): both heads in index order, one at a time, whatever order ``heads``
        names them in; for callers that take their min or mean, which do not depend on it.
        """
        a = torch.cat(list(actions))
        if unrolled:
            if self.num_q != 2:
                raise ValueError(f"unrolled: needs an ensemble of two Q heads, got {self.num_q}")
            out = []
            for k in range(2):
                pre = self.head_a(a, k)  # (len(actions) N, hidden)
                zq = self.head_z(z, k)  # (R, hidden)
                pre = (pre.reshape(len(actions), -1, self.hidden) + zq).reshape(pre.shape)
                out.append(self.head_rest(pre, k))
            return torch.stack(out)
        zq = self.first_z(z, heads).unsqueeze(1)  # (K, 1, R, hidden)
        pa = self.first_a(a, heads)  # (K, len(actions) N, hidden)
        k = pa.shape[0]
        pre = (pa.reshape(k, len(actions), -1, self.hidden) + zq).reshape(k, -1, self.hidden)
        return self.rest(pre, heads)


class ShiftAug(nn.Module):
    """Random translation by up to ``pad`` whole pixels per image (edges replicated).

    Implemented as an integer crop of the padded batch, one random offset per image.
    """

    def __init__(self, pad: int = 4) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:  # noqa: D102
        if not self.training or self.pad == 0:
            return x
        n, _, h, w = x.shape
        p = self.pad
        padded = F.pad(x, (p, p, p, p), mode="replicate").permute(0, 2, 3, 1)  # (n, H', W', c)
        off = torch.randint(0, 2 * p + 1, (2, n, 1), device=x.device)
        rows = (off[0] + torch.arange(h, device=x.device)).unsqueeze(2)  # (n, h, 1)
        cols = (off[1] + torch.arange(w, device=x.device)).unsqueeze(1)  # (n, 1, w)
        batch = torch.arange(n, device=x.device).view(n, 1, 1)
        return padded[batch, rows, cols].permute(0, 3, 1, 2)  # (n, c, h, w)


class ConvEncoder(nn.Module):
    """Shallow conv net for frame-stacked uint8 images (B, H, W, 3F) -> (B, d_out) features."""

    MIN_SIZE = 39  # pixels: the smallest image the four convolutions accept

    def __init__(self, image_shape: tuple[int, int, int], channels: int = 32,
                 augment: bool = True) -> None:
        super().__init__()
        h, w, c = image_shape
        if min(h, w) < self.MIN_SIZE:
            raise ValueError(f"image size {h}x{w} is too small for the conv encoder "
                             f"(at least {self.MIN_SIZE}x{self.MIN_SIZE})")
        self.aug = ShiftAug(4) if augment else nn.Identity()
        self.net = nn.Sequential(
            nn.Conv2d(c, channels, 7, stride=2), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 5, stride=2), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, stride=2), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, stride=1), nn.Flatten(),
        )
        with torch.no_grad():
            self.d_out = int(self.net(torch.zeros(1, c, h, w)).shape[-1])

    def forward(self, img: Tensor) -> Tensor:  # noqa: D102
        x = img.permute(0, 3, 1, 2).float() * (1.0 / 255.0) - 0.5  # (B, 3F, H, W) in [-0.5, 0.5]
        return self.net(self.aug(x))
