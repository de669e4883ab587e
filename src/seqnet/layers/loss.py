"""Losses over logits: softmax cross-entropy (optionally class-weighted) and sigmoid binary cross-entropy."""
from __future__ import annotations

from ..backend.registry import _array_library, _device_of, _dtype_to_name, _same_device, describe_array
from ..backend import check_array
from ..errors import ConfigError, DTypeError, ShapeError
from .embedding import check_token_ids
from .masks import check_mask


def check_d_loss(d_loss, loss):
    """The upstream gradient of a scalar ``loss``: a Python number (returned as a float) or a
    0-d array of the loss's library, device and dtype. Anything else is refused, naming ``d_loss``."""
    if isinstance(d_loss, (int, float)) and not isinstance(d_loss, bool):
        return float(d_loss)
    expected = (f"a number or a 0-d {_dtype_to_name(loss.dtype)} array on {_device_of(loss)!s} "
                f"(the gradient of the loss)")
    lib = _array_library(d_loss)
    if lib != _array_library(loss) or not _same_device(_device_of(d_loss), _device_of(loss)) or d_loss.ndim != 0:
        raise ConfigError(f"d_loss: expected {expected}, received {describe_array(d_loss)}")
    if _dtype_to_name(d_loss.dtype) != _dtype_to_name(loss.dtype):
        raise DTypeError(f"d_loss: expected {expected}, received {describe_array(d_loss)}")
    return d_loss


def check_target_ids(backend, targets, vocab_size: int, mask=None, name: str = "targets"):
    """(targets, mask) of a sequence model's loss: ids (T, B) of ``backend`` and None or a
    bool mask of their shape (:func:`seqnet.layers.masks.check_mask`); only the targets where
    the mask is True are range-checked (padding may hold anything, e.g. -100)."""
    shape = tuple(check_array(backend, targets, name).shape)
    mask = check_mask(backend, mask, shape, of=name)
    return check_token_ids(backend, targets, name, vocab_size, ndim=2, mask=mask), mask


def softmax_cross_entropy(logits, targets, mask=None, *, xp, class_weights=None):
    """Mean negative log-likelihood of ``targets`` under softmax(``logits``).

    logits: (..., V) float; targets: (...) integer ids; mask: None or (...) bool on the logits'
    device (checked by the caller: :func:`check_target_ids`), False at padded positions, where
    targets may hold anything (they are not read). Returns (loss, a
    0-d array on the logits' device; backprop() -> dlogits (..., V)). Stable: log-softmax is
    computed as z - logsumexp(z) with z = logits - max(logits). Targets outside [0, V) are an
    error (checked with one boolean read back from the device).

    ``class_weights`` (V,) weighs each position by the weight of its target class, as
    torch.nn.CrossEntropyLoss(weight=w) does: loss = sum_i w[y_i] nll_i / sum_i w[y_i].
    """
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ShapeError(f"targets: expected shape {tuple(logits.shape[:-1])} (logits without the vocabulary axis), "
                         f"received {tuple(targets.shape)}")
    vocab = logits.shape[-1]
    if not xp.isdtype(targets.dtype, "integral"):
        raise DTypeError(f"targets: expected integer class ids, received {describe_array(targets)}")
    if mask is not None and (tuple(mask.shape) != tuple(targets.shape) or not xp.isdtype(mask.dtype, "bool")):
        raise ShapeError(f"mask: expected a bool array of the targets' shape {tuple(targets.shape)} (True where a "
                         f"position counts), received {describe_array(mask)}")
    targets = xp.astype(targets, xp.int64)
    if mask is not None:
        targets = xp.where(mask, targets, 0)
    if class_weights is not None and tuple(class_weights.shape) != (vocab,):
        raise ShapeError(f"class_weights: expected shape ({vocab},) (one weight per class), "
                         f"received {tuple(class_weights.shape)}")
    bad_targets = xp.any((targets < 0) | (targets >= vocab))
    bad = bad_targets if class_weights is None else bad_targets | ~xp.all(class_weights >= 0)
    if bool(bad):                                 # one read back from the device for both checks
        if bool(bad_targets):
            raise ConfigError(f"targets: expected class ids in [0, {vocab}) (the size of the logits' last axis), "
                              f"received values in [{int(xp.min(targets))}, {int(xp.max(targets))}]")
        raise ConfigError("class_weights: expected weights >= 0 (one per class), received a negative or NaN one")
    z = logits - xp.max(logits, axis=-1, keepdims=True)
    exp_z = xp.exp(z)
    sum_exp = xp.sum(exp_z, axis=-1, keepdims=True)
    target_z = xp.take_along_axis(z, targets[..., None], axis=-1)
    nll = (xp.log(sum_exp) - target_z)[..., 0]                   # (...)
    weight = None if mask is None else xp.astype(mask, logits.dtype)
    if class_weights is not None:
        per_target = xp.reshape(xp.take(class_weights, xp.reshape(targets, (-1,)), axis=0), tuple(targets.shape))
        weight = per_target if weight is None else weight * per_target
    if weight is None:
        count = 1
        for n in nll.shape:
            count *= n
        loss = xp.sum(nll) / count
    else:
        count = xp.sum(weight)
        count = xp.where(count > 0, count, xp.ones_like(count))  # every position masked (or weight 0): loss 0
        loss = xp.sum(nll * weight) / count

    def backprop(d_loss=1.0):
        """dL/dlogits = (softmax - one_hot(targets)) * weight * d_loss / count, zero where masked."""
        d_loss = check_d_loss(d_loss, loss)
        classes = xp.arange(vocab, dtype=xp.int64, device=logits.device)
        one_hot = xp.astype(targets[..., None] == classes, logits.dtype)
        grad = (exp_z / sum_exp - one_hot) * (d_loss / count)
        if weight is not None:
            grad = grad * weight[..., None]
        return grad

    return loss, backprop


def sigmoid_binary_cross_entropy(logits, targets, *, xp):
    """Mean binary cross-entropy of independent labels, as torch.nn.BCEWithLogitsLoss:

        loss = mean(max(z, 0) - z y + log(1 + exp(-|z|)))     (stable for any z)

    logits, targets: (...) float, targets in [0, 1]. Returns (loss (0-d); backprop(d_loss=1.0) ->
    dlogits = (sigmoid(z) - y) * d_loss / N), with sigmoid(z) = (tanh(z / 2) + 1) / 2.
    """
    if tuple(targets.shape) != tuple(logits.shape):
        raise ShapeError(f"targets: expected the shape of the logits {tuple(logits.shape)}, "
                         f"received {tuple(targets.shape)}")
    count = 1
    for n in logits.shape:
        count *= n
    loss = xp.sum(xp.maximum(logits, 0.0) - logits * targets + xp.log1p(xp.exp(-xp.abs(logits)))) / count

    def backprop(d_loss=1.0):
        d_loss = check_d_loss(d_loss, loss)
        return (0.5 * (xp.tanh(0.5 * logits) + 1.0) - targets) * (d_loss / count)

    return loss, backprop
