"""Losses that are honest about partial labels and robust to smoke's ~9 % pixel share.

Label codes: 0 background, 1 gas-smoke, 2 machine, 3 = "not gas-smoke" (binary smoke data,
where a pixel could be background *or* machine). For code 3 the target is
p(background) + p(machine), so real smoke photos never teach the model that machines do not
exist. A soft Dice term on p(gas-smoke) counters the class imbalance that made plain
cross-entropy settle on predicting little smoke.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from training.data import NOT_LEAK

LEAK = 1


def partial_nll(logits: torch.Tensor, target: torch.Tensor, leak_weight: float = 1.0) -> torch.Tensor:
    """Per-pixel negative log-likelihood with the 'not leak' code handled as a merged class."""
    logp = F.log_softmax(logits, dim=1)
    not_leak = torch.logsumexp(logp[:, [0, 2]], dim=1)
    full = target.clamp(max=2).long()
    nll = -torch.gather(logp, 1, full.unsqueeze(1)).squeeze(1)
    nll = torch.where(target == NOT_LEAK, -not_leak, nll)
    weight = torch.where(target == LEAK, leak_weight, 1.0)
    return (nll * weight).mean()


def soft_dice(prob: torch.Tensor, truth: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - Dice over the whole batch (batch-level Dice is stable when some crops lack smoke)."""
    inter = (prob * truth).sum()
    return 1.0 - (2 * inter + eps) / (prob.sum() + truth.sum() + eps)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0,
                      leak_weight: float = 1.0) -> torch.Tensor:
    """Partial-label NLL + Dice on gas-smoke (+ Dice on machine where machines are labelled)."""
    prob = F.softmax(logits, dim=1)
    loss = partial_nll(logits, target, leak_weight)
    loss = loss + dice_weight * soft_dice(prob[:, LEAK], (target == LEAK).float())
    labelled = target != NOT_LEAK
    if bool((target == 2).any()):
        m = labelled.float()
        loss = loss + 0.5 * dice_weight * soft_dice(prob[:, 2] * m, (target == 2).float())
    return loss
