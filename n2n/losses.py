"""Losses whose optimum is the mean (L2), median (L1) or mode (annealed L0) of the targets.

All take `denoised` and `noisy_target` tensors (B, C, H, W) and a mask (B, 1, H, W)
that is 1 where the target pixel carries information (Bernoulli noise), and `fraction`, the fraction of
the run done (0 at the start, 1 at the end: annealed L0 follows it), and return a scalar.
"""
from __future__ import annotations

import torch


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weight = mask.expand_as(values)
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def l2(denoised, noisy_target, mask, fraction=0.0):
    """Mean squared error: optimum is the mean of the targets."""
    return _masked_mean((denoised - noisy_target) ** 2, mask)


def l1(denoised, noisy_target, mask, fraction=0.0):
    """Mean absolute error: optimum is the median of the targets (text overlay)."""
    return _masked_mean((denoised - noisy_target).abs(), mask)


def l0_gamma(fraction: float) -> float:
    """The annealed exponent γ: 2 at the start of the run, falling linearly to 0 at the end."""
    return 2.0 * (1.0 - min(max(fraction, 0.0), 1.0))


def l0(denoised, noisy_target, mask, fraction=0.0):
    """Annealed L0: `(|d| + 1e-8)^γ` with γ from 2 down to 0; optimum tends to the mode (impulse noise)."""
    gamma = l0_gamma(fraction)
    return _masked_mean((denoised - noisy_target).abs().add(1e-8).pow(gamma), mask)


def masked_l2(denoised, noisy_target, mask, fraction=0.0):
    """L2 on the pixels that survived in the target (multiplicative Bernoulli noise)."""
    return l2(denoised, noisy_target, mask)


LOSSES = {"l2": l2, "l1": l1, "l0": l0, "masked_l2": masked_l2}


def get_loss(name: str):
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
    return LOSSES[name]


def neighbor2neighbor_regulariser(denoised_sub1, noisy_sub2, denoised_full_sub1, denoised_full_sub2):
    """Neighbor2Neighbor's consistency term (Huang et al. 2021), without its weight γ:
    `mean((f(g1(y)) - g2(y) - (g1(f(y)) - g2(f(y))))^2)` where f(y) is computed without gradient."""
    return torch.mean((denoised_sub1 - noisy_sub2 - (denoised_full_sub1 - denoised_full_sub2)) ** 2)
