"""BatchNorm statistics during adaptation (an open choice: the paper does not say).

Why it matters: a source model's BatchNorm running statistics describe *source* activations. On an
appearance shift they are the largest single cause of the source model's failure on the target
(on the synthetic benchmark, re-estimating them on target images alone roughly doubles its mIoU).
Two switches, both source-free (target images only):

* ``bn_init = "target"``: before adaptation, re-estimate every BN layer's running mean/variance on
  the target training images (AdaBN, Li et al. 2016); teacher and student start from that model.
* ``bn_mode = "frozen"``: the student normalises with those running statistics throughout instead
  of with each batch's (and does not update them), so photometric noise and pasted patches
  (which are not the target distribution) never leak into the statistics the evaluated network uses
  -- the usual DeepLabV2 practice of frozen BN at batch size 2.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that track running statistics."""
    return [m for m in model.modules() if isinstance(m, _BN) and m.track_running_stats]


@torch.no_grad()
def reestimate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace the running mean/variance of every BN layer by the average of their per-batch values
    over ``batches`` (already normalised network inputs; with equal batch sizes the mean is the mean
    over all images); nothing else changes. Returns the number of images seen.

    Why: AdaBN -- the source statistics do not describe target activations. The average is the
    cumulative one (``momentum=None``), so the result does not depend on the batch order.
    """
    layers = bn_layers(model)
    saved = [(m.momentum, m.training) for m in layers]
    was_training = model.training
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    seen = 0
    for x in batches:
        model(x)
        seen += x.shape[0]
    for m, (momentum, training) in zip(layers, saved, strict=True):
        m.momentum = momentum
        m.train(training)
    model.train(was_training)
    if seen == 0:
        raise ValueError("reestimate_bn needs at least one batch")
    return seen


def freeze_bn(model: nn.Module) -> None:
    """Put every BN layer in eval mode (normalise with the running statistics, do not update them);
    call after ``model.train()``, which turns them back on."""
    for m in bn_layers(model):
        m.eval()
