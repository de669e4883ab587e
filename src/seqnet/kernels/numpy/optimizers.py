"""numpy override of :func:`seqnet.kernels.optimizers.adam_update`."""
from __future__ import annotations

import numpy as np


def adam_update(p, g, m, v, *, lr, beta1, beta2, eps, step, weight_decay, xp):
    """The moments are updated in place and one scratch buffer serves every pass, instead of a
    fresh array per operation (for large parameters each fresh array costs page faults).
    ``p`` itself is not modified: the new parameter is a new array."""
    if weight_decay:
        g = g + weight_decay * p
    scratch = np.multiply(g, 1.0 - beta1)
    m *= beta1
    m += scratch                                     # m = b1 m + (1 - b1) g
    np.multiply(g, g, out=scratch)
    scratch *= 1.0 - beta2
    v *= beta2
    v += scratch                                     # v = b2 v + (1 - b2) g^2
    bias_correction2_sqrt = (1.0 - beta2 ** step) ** 0.5
    step_size = lr * bias_correction2_sqrt / (1.0 - beta1 ** step)
    np.sqrt(v, out=scratch)
    scratch += eps * bias_correction2_sqrt
    np.divide(m, scratch, out=scratch)
    scratch *= step_size
    return np.subtract(p, scratch, out=scratch), m, v
