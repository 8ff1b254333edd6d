"""A slow, obviously-correct model of the official optimizers, per parameter.

Written line by line from shared/reference-semantics.md with Python lists and
Python floats, in the operations the official code uses (mul_/add_, not
lerp), and nothing shared with cmrepro.optim. The tests hold cmrepro's
optimizers to its trajectories.
"""

from __future__ import annotations

import math
from functools import partialmethod

import torch


class ListBuffer:
    """A list of [key, tensor] pairs, capacity C, mean over stored elements."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: list[list] = []
        self.replacements = 0

    def mean(self) -> torch.Tensor:
        total = self.items[0][1].clone()
        for _, t in self.items[1:]:
            total = total + t
        return total / len(self.items)

    def offer(self, value: torch.Tensor, key: float) -> None:
        if len(self.items) < self.capacity:
            self.items.append([key, value.clone()])
            return
        smallest = min(range(len(self.items)), key=lambda i: self.items[i][0])  # first minimum
        if key > self.items[smallest][0]:
            self.items[smallest] = [key, value.clone()]
            self.replacements += 1

    def decay(self, factor: float) -> None:
        for item in self.items:
            item[0] *= factor


class Oracle:
    """``variant`` in {"adam_cm", "adam_cg", "sgd_cg", "sgd_cm"} (official weight decay), or
    "adam_cg_decoupled", "sgd_cg_decoupled", "adam_cm_coupled", "sgd_cm_coupled" (the other form);
    groups as dicts with every hyperparameter."""

    def __init__(self, variant: str, groups: list[dict]) -> None:
        self.variant = variant
        self.groups = groups
        self.state: dict[int, dict] = {}

    @torch.no_grad()
    def step(self) -> None:
        for group in self.groups:
            live = [p for p in group["params"] if p.grad is not None]
            if not live:
                continue
            key = 0.0
            for p in live:
                key += float(torch.linalg.vector_norm(p.grad))
            for p in live:
                getattr(self, "_" + self.variant)(p, group, key)

    def _new_state(self, p, group) -> dict:
        return {
            "t": 0,
            "m": torch.zeros_like(p),
            "v": torch.zeros_like(p),
            "buf": ListBuffer(group["topC"]),
            "momentum_buffer": None,
        }

    def _adam_cm(self, p, group, key, coupled: bool = False) -> None:
        beta1, beta2 = group["betas"]
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        g = p.grad + wd * p if coupled and wd else p.grad
        first = id(p) not in self.state
        if first:
            self.state[id(p)] = s = self._new_state(p, group)
            s["buf"].offer(g, key)  # the raw gradient, not a momentum
            aggr = torch.zeros_like(p)  # m is not updated: zero direction
        else:
            s = self.state[id(p)]
            s["m"].mul_(beta1).add_(g, alpha=1 - beta1)
            aggr = s["m"] + s["buf"].mean()
            s["buf"].offer(s["m"], key)
            s["v"].mul_(beta2).addcmul_(aggr, aggr, value=1 - beta2)
        s["t"] += 1
        s["buf"].decay(group["decay"])
        if wd and not coupled:
            p.mul_(1 - lr * wd)
        if not first:
            t = s["t"]
            denom = s["v"].sqrt() / math.sqrt(1 - beta2**t) + eps
            p.add_(-(lr / (1 - beta1**t)) * aggr / denom)

    def _adam_cg(self, p, group, key, decoupled: bool = False) -> None:
        beta1, beta2 = group["betas"]
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        if id(p) not in self.state:
            self.state[id(p)] = s = self._new_state(p, group)
            s["buf"].offer(p.grad, key)
            d = p.grad.clone()
        else:
            s = self.state[id(p)]
            d = p.grad + s["buf"].mean()
            s["buf"].offer(p.grad, key)
        if wd and not decoupled:
            d = d + wd * p
        s["t"] += 1
        s["m"].mul_(beta1).add_(d, alpha=1 - beta1)
        s["v"].mul_(beta2).addcmul_(d, d, value=1 - beta2)
        s["buf"].decay(group["decay"])
        if wd and decoupled:
            p.mul_(1 - lr * wd)
        t = s["t"]
        denom = s["v"].sqrt() / math.sqrt(1 - beta2**t) + eps
        p.add_(-(lr / (1 - beta1**t)) * s["m"] / denom)

    def _sgd_cg(self, p, group, key, decoupled: bool = False) -> None:
        lr, wd = group["lr"], group["weight_decay"]
        d = p.grad + wd * p if wd and not decoupled else p.grad.clone()
        if id(p) not in self.state:
            self.state[id(p)] = s = self._new_state(p, group)
            s["buf"].offer(d, key)
        else:
            s = self.state[id(p)]
            aggr = d + s["buf"].mean()
            s["buf"].offer(d, key)
            d = aggr
        if group["decay"] != 0:
            s["buf"].decay(group["decay"])
        momentum = group["momentum"]
        if momentum:
            if s["momentum_buffer"] is None:
                s["momentum_buffer"] = d.clone()
            else:
                s["momentum_buffer"].mul_(momentum).add_(d, alpha=1 - group["dampening"])
            d = s["momentum_buffer"]
        s["t"] += 1
        if wd and decoupled:
            p.mul_(1 - lr * wd)
        p.add_(d, alpha=-lr)

    def _sgd_cm(self, p, group, key, coupled: bool = False) -> None:
        lr, wd, beta = group["lr"], group["weight_decay"], group["momentum"]
        g = p.grad + wd * p if coupled and wd else p.grad
        first = id(p) not in self.state
        if first:
            self.state[id(p)] = s = self._new_state(p, group)
            s["buf"].offer(g, key)
        else:
            s = self.state[id(p)]
            s["m"].mul_(beta).add_(g, alpha=1 - beta)
            aggr = s["m"] + s["buf"].mean()
            s["buf"].offer(s["m"], key)
        s["t"] += 1
        s["buf"].decay(group["decay"])
        if wd and not coupled:
            p.mul_(1 - lr * wd)
        if not first:
            p.add_(aggr, alpha=-lr)

    def replacements(self) -> int:
        return sum(s["buf"].replacements for s in self.state.values())

    # ---- the other weight-decay form of each variant (optimizer.weight_decay_form) ----
    # Not in the official package: Adam+CG and SGD+CG with AdamW-style decay
    # (``theta *= 1 - lr * wd`` before the update, the buffer and moments never see
    # ``wd * theta``), and Adam+CM and SGD+CM with coupled L2 (``g + wd * theta`` in place
    # of ``g`` everywhere, also in the buffer on the first step). The key stays the raw
    # gradient's, as in every variant.

    _adam_cg_decoupled = partialmethod(_adam_cg, decoupled=True)
    _sgd_cg_decoupled = partialmethod(_sgd_cg, decoupled=True)
    _adam_cm_coupled = partialmethod(_adam_cm, coupled=True)
    _sgd_cm_coupled = partialmethod(_sgd_cm, coupled=True)
