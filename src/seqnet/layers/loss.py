"""Softmax cross-entropy over the last axis, averaged over valid (unmasked) tokens."""
from __future__ import annotations

from ..errors import ConfigError, ShapeError


def softmax_cross_entropy(logits, targets, mask=None, *, xp):
    """Mean negative log-likelihood of ``targets`` under softmax(``logits``).

    logits: (..., V) float; targets: (...) integer ids; mask: None or (...) bool, False at
    padded positions, where targets may hold anything (they are not read). Returns (loss, a
    0-d array on the logits' device; backprop() -> dlogits (..., V)). Stable: log-softmax is
    computed as z - logsumexp(z) with z = logits - max(logits). Targets outside [0, V) are an
    error (checked with one boolean read back from the device).
    """
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ShapeError(f"targets: expected shape {tuple(logits.shape[:-1])} (logits without the vocabulary axis), "
                         f"received {tuple(targets.shape)}")
    vocab = logits.shape[-1]
    targets = xp.astype(targets, xp.int64)
    if mask is not None:
        targets = xp.where(mask, targets, 0)
    if bool(xp.any((targets < 0) | (targets >= vocab))):
        raise ConfigError(f"targets: expected class ids in [0, {vocab}) (the size of the logits' last axis), "
                          f"received values in [{int(xp.min(targets))}, {int(xp.max(targets))}]")
    z = logits - xp.max(logits, axis=-1, keepdims=True)
    exp_z = xp.exp(z)
    sum_exp = xp.sum(exp_z, axis=-1, keepdims=True)
    target_z = xp.take_along_axis(z, targets[..., None], axis=-1)
    nll = (xp.log(sum_exp) - target_z)[..., 0]                   # (...)
    if mask is None:
        count = 1
        for n in nll.shape:
            count *= n
        loss = xp.sum(nll) / count
        weight = None
    else:
        weight = xp.astype(mask, logits.dtype)
        count = xp.maximum(xp.sum(weight), 1.0)
        loss = xp.sum(nll * weight) / count

    def backprop(d_loss=1.0):
        """dL/dlogits = (softmax - one_hot(targets)) * d_loss / count, zero where masked."""
        classes = xp.arange(vocab, dtype=xp.int64, device=logits.device)
        one_hot = xp.astype(targets[..., None] == classes, logits.dtype)
        grad = (exp_z / sum_exp - one_hot) * (d_loss / count)
        if weight is not None:
            grad = grad * weight[..., None]
        return grad

    return loss, backprop
