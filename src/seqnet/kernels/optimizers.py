"""Reference kernels of the optimizers' update rules: one parameter at a time, written against ``xp``.

Each takes the parameter, its gradient and its state arrays (positional, in the order the
optimizer's ``slot_order`` names them) and returns the new parameter and new state arrays.
Hyper-parameters, the step count and the bias corrections are Python numbers, so an update
never reads a value back from the device. PyTorch's update rules, equation by equation.
"""
from __future__ import annotations

import math


def sgd_update(p, g, momentum_buffer=None, *, lr, momentum, nesterov, weight_decay, xp):
    """SGD as torch.optim.SGD with dampening 0; ``momentum_buffer`` is None when momentum is 0.

    g <- g + wd p;  b <- mu b + g;  d = g + mu b (nesterov) or b;  p <- p - lr d.
    The buffer starts at zero, so the first step gives b = g, as in PyTorch.
    """
    if weight_decay:
        g = g + weight_decay * p
    if momentum:
        momentum_buffer = momentum * momentum_buffer + g
        g = g + momentum * momentum_buffer if nesterov else momentum_buffer
    return p - lr * g, momentum_buffer


def adagrad_update(p, g, state_sum, *, lr, lr_decay, eps, step, weight_decay, xp):
    """Adagrad as torch.optim.Adagrad with initial_accumulator_value 0.

    g <- g + wd p;  s <- s + g^2;  p <- p - lr / (1 + (step - 1) lr_decay) * g / (sqrt(s) + eps).
    """
    if weight_decay:
        g = g + weight_decay * p
    state_sum = state_sum + g * g
    clr = lr / (1.0 + (step - 1) * lr_decay)
    return p - clr * g / (xp.sqrt(state_sum) + eps), state_sum


def rmsprop_update(p, g, square_avg, momentum_buffer=None, grad_avg=None, *, lr, alpha, eps, weight_decay, momentum, centered, xp):
    """RMSprop as torch.optim.RMSprop; unused buffers (no momentum, not centered) are None.

    g <- g + wd p;  v <- alpha v + (1 - alpha) g^2;  a <- alpha a + (1 - alpha) g (centered);
    d = sqrt(v - a^2) + eps (centered) or sqrt(v) + eps;
    b <- mu b + g / d, p <- p - lr b (momentum) or p <- p - lr g / d.
    """
    if weight_decay:
        g = g + weight_decay * p
    square_avg = alpha * square_avg + (1.0 - alpha) * (g * g)
    if centered:
        grad_avg = alpha * grad_avg + (1.0 - alpha) * g
        denom = xp.sqrt(square_avg - grad_avg * grad_avg) + eps
    else:
        denom = xp.sqrt(square_avg) + eps
    if momentum:
        momentum_buffer = momentum * momentum_buffer + g / denom
        return p - lr * momentum_buffer, square_avg, momentum_buffer, grad_avg
    return p - lr * g / denom, square_avg, momentum_buffer, grad_avg


def adam_update(p, g, m, v, *, lr, beta1, beta2, eps, step, weight_decay, xp):
    """Adam as torch.optim.Adam (weight decay as L2: added to the gradient), ``step`` counts from 1.

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;
    p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps),
    evaluated as p - c * m / (sqrt(v) + eps sqrt(1 - b2^t)) with the Python float
    c = lr sqrt(1 - b2^t) / (1 - b1^t).
    """
    if weight_decay:
        g = g + weight_decay * p
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * (g * g)
    bias_correction2_sqrt = math.sqrt(1.0 - beta2**step)
    step_size = lr * bias_correction2_sqrt / (1.0 - beta1**step)
    return p - step_size * m / (xp.sqrt(v) + eps * bias_correction2_sqrt), m, v


def adamw_update(p, g, m, v, *, lr, beta1, beta2, eps, step, weight_decay, xp):
    """AdamW as torch.optim.AdamW: decoupled decay p <- p (1 - lr wd), then Adam without L2."""
    p = p * (1.0 - lr * weight_decay) if weight_decay else p
    return adam_update(p, g, m, v, lr=lr, beta1=beta1, beta2=beta2, eps=eps, step=step, weight_decay=0.0, xp=xp)
