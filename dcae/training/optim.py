"""Muon for weight matrices and conv kernels, AdamW for everything else.

``torch.optim.Muon`` accepts only 2-D parameters. A conv kernel ``(out, in, kh, kw)`` is handed to
it as a 2-D *alias* ``(out, in*kh*kw)`` that shares the kernel's storage: before each step the
alias receives the kernel's gradient (a view, no copy) and Muon's in-place update lands in the
kernel itself.

Which optimizer gets a parameter:

* Muon: weights of ``Linear`` / ``Conv*`` layers, including the direction ``original1`` of a
  weight-norm parametrization.
* AdamW: biases, norm scales, embeddings, the weight-norm magnitude ``original0`` ``(out, 1, 1, 1)``
  and any other parameter with fewer than two non-trivial dimensions.

Step sizes follow the reference trainer: a Muon update moves a ``(A, B)`` matrix by
``lr * sqrt(max(A, B))`` times its orthogonalized momentum, with decoupled weight decay
``lr * weight_decay``; AdamW uses betas (0.9, 0.95). ``state_dict()`` has the reference's layout
``{"optimizer_0": muon, "optimizer_1": adamw}``.

Muon orthogonalizes each update with a Newton-Schulz iteration that torch runs in bf16. On a CPU
without native bf16 (AVX2) that is emulated and dominates the step (~45 s per step of the tiny
config, 79% in the iteration), so ``ns_dtype`` chooses the iteration's dtype: by default the
faster one on the parameters' device (:func:`dcae.precision.fast_matmul_dtype`).
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from dcae.precision import fast_matmul_dtype

# torch's "match_rms_adamw" scales the step by 0.2 * sqrt(max(A, B)); the reference uses sqrt(max(A, B)).
_MUON_LR_SCALE = 5.0
ADAMW_BETAS = (0.9, 0.95)


def _uses_muon(name: str, param: nn.Parameter, module: nn.Module) -> bool:
    if isinstance(module, nn.Embedding) or param.ndim < 2:
        return False
    if name.endswith("original0"):  # weight-norm magnitude (out, 1, 1, 1)
        return False
    return sum(d > 1 for d in param.shape) >= 2


def split_parameters(models: Iterable[nn.Module]) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(muon_params, adamw_params)`` of the trainable parameters of ``models``, each listed once."""
    muon, adamw, seen = [], [], set()
    for model in models:
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                if not p.requires_grad or id(p) in seen:
                    continue
                seen.add(id(p))
                (muon if _uses_muon(name, p, module) else adamw).append(p)
    return muon, adamw


def newton_schulz(grad: torch.Tensor, ns_coefficients: tuple[float, float, float], ns_steps: int, eps: float,
                  dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """torch.optim.Muon's quintic Newton-Schulz orthogonalization of a 2-D ``grad`` (A, B), run in
    ``dtype`` (torch hard-codes bf16). Same iteration: normalise to spectral norm <= 1, then
    ``X <- a X + (b G + c G^2) X`` with ``G = X X^T`` on the wide orientation."""
    a, b, c = ns_coefficients
    x = grad.to(dtype)
    tall = grad.size(0) > grad.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(ns_steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


@contextlib.contextmanager
def newton_schulz_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Inside the block, torch's Muon orthogonalizes in ``dtype`` (nothing changes for bf16)."""
    import torch.optim._muon as muon_impl

    original = getattr(muon_impl, "_zeropower_via_newtonschulz", None)
    if dtype == torch.bfloat16 or original is None:
        yield
        return
    muon_impl._zeropower_via_newtonschulz = lambda g, coefficients, steps, eps: newton_schulz(
        g, coefficients, steps, eps, dtype)
    try:
        yield
    finally:
        muon_impl._zeropower_via_newtonschulz = original


class MuonAdamW:
    """Muon on matrix/conv weights plus AdamW on the rest, stepped as one optimizer.

    ``optimizers`` lists ``[muon, adamw]`` (each a real ``torch.optim.Optimizer``) so that LR
    schedulers can drive each of them.
    """

    def __init__(self, models: Iterable[nn.Module], lr: float, weight_decay: float = 0.1,
                 ns_dtype: torch.dtype | None = None):
        muon_params, adamw_params = split_parameters(models)
        if not muon_params:
            raise ValueError("MuonAdamW: the models have no matrix or conv weights")
        self.ns_dtype = ns_dtype or fast_matmul_dtype(muon_params[0].device)
        self._pairs = [(p, nn.Parameter(p.detach().view(p.shape[0], -1))) for p in muon_params]
        self.muon = torch.optim.Muon([alias for _, alias in self._pairs],
                                     lr=lr * _MUON_LR_SCALE, weight_decay=weight_decay / _MUON_LR_SCALE,
                                     adjust_lr_fn="match_rms_adamw")
        self.adamw = torch.optim.AdamW(adamw_params, lr=lr, betas=ADAMW_BETAS, weight_decay=weight_decay)
        self.optimizers: list[torch.optim.Optimizer] = [self.muon, self.adamw]

    @property
    def num_muon_params(self) -> int:
        return len(self._pairs)

    def zero_grad(self) -> None:
        """Drop every gradient (set to ``None``)."""
        self.adamw.zero_grad(set_to_none=True)
        for p, alias in self._pairs:
            p.grad = alias.grad = None

    @torch.no_grad()
    def step(self) -> None:
        for p, alias in self._pairs:
            if alias.data_ptr() != p.data_ptr():
                raise RuntimeError("a Muon parameter was moved after the optimizer was built; "
                                   "build MuonAdamW after .to(device)")
            alias.grad = None if p.grad is None else p.grad.view(alias.shape)
        with newton_schulz_dtype(self.ns_dtype):
            self.muon.step()
        self.adamw.step()

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer_0": self.muon.state_dict(), "optimizer_1": self.adamw.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Load :meth:`state_dict` output; raises ``ValueError`` when the parameter layout differs."""
        if set(state) != {"optimizer_0", "optimizer_1"}:
            raise ValueError(f"expected keys optimizer_0/optimizer_1, got {sorted(state)}")
        self.muon.load_state_dict(state["optimizer_0"])
        self.adamw.load_state_dict(state["optimizer_1"])


class Schedulers:
    """One LR scheduler per optimizer of a :class:`MuonAdamW`, stepped together."""

    def __init__(self, schedulers: list[torch.optim.lr_scheduler.LRScheduler]):
        self.schedulers = schedulers

    def step(self) -> None:
        for s in self.schedulers:
            s.step()

    def last_lr(self) -> float:
        """Current base learning rate (AdamW's, equal to Muon's before the Muon step-size scaling)."""
        return self.schedulers[-1].get_last_lr()[0]

    def fast_forward(self, step: int) -> None:
        """Set the schedule to ``step`` (resuming from a checkpoint that has no scheduler state)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "lr_scheduler.step() before optimizer.step()"
            for s in self.schedulers:
                s.last_epoch = step - 1
                s.step()

    def state_dict(self) -> list[dict[str, Any]]:
        return [s.state_dict() for s in self.schedulers]

    def load_state_dict(self, states: list[dict[str, Any]]) -> None:
        for s, st in zip(self.schedulers, states):
            s.load_state_dict(st)
