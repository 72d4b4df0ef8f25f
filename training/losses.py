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


def instance_dice(prob: torch.Tensor, truth: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Mean over the images that show gas of 1 - that image's Dice (0 when none does).

    Why: the batch-level Dice is dominated by the large plumes; a small or faint plume (1-3 % of the
    frame) barely moves it, and the thermal run 3 missed exactly those (rendered select clips with a
    plume under ~2,200 px: the leak probability stayed near 0). Per image, every plume counts the same."""
    has = truth.flatten(1).sum(1) > 0
    if not bool(has.any()):
        return prob.sum() * 0.0
    p, t = prob[has].flatten(1), truth[has].flatten(1)
    return (1.0 - (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 1.0,
                      leak_weight: float = 1.0, instance_weight: float = 0.0) -> torch.Tensor:
    """Partial-label NLL + Dice on gas-smoke (+ per-image Dice with ``instance_weight``, + Dice on
    machine where machines are labelled)."""
    prob = F.softmax(logits, dim=1)
    loss = partial_nll(logits, target, leak_weight)
    loss = loss + dice_weight * soft_dice(prob[:, LEAK], (target == LEAK).float())
    if instance_weight:
        loss = loss + instance_weight * instance_dice(prob[:, LEAK], (target == LEAK).float())
    labelled = target != NOT_LEAK
    if bool((target == 2).any()):
        m = labelled.float()
        loss = loss + 0.5 * dice_weight * soft_dice(prob[:, 2] * m, (target == 2).float())
    return loss
