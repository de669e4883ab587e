"""Linear-chain CRF recursions, written against ``xp``: forward algorithm, marginals, Viterbi.

Shapes: emissions (T, B, K) scores of tag k at step t; mask (T, B) bool, True on each
row's first L_b steps (``mask[0]`` all True); ``start`` (K,), ``end`` (K,) and
``transitions`` (K, K) with ``transitions[i, j]`` the score of tag j right after tag i.

The score of a tag path y of length L is

    s(y) = start[y_0] + sum_{t<L} e_t[y_t] + sum_{1<=t<L} trans[y_{t-1}, y_t] + end[y_{L-1}]

and log Z = logsumexp over all K^L paths of s(y), computed by the forward recursion

    alpha_0 = start + e_0,   alpha_t[j] = logsumexp_i(alpha_{t-1}[i] + trans[i, j]) + e_t[j]
    log Z = logsumexp_j(alpha_{L-1}[j] + end[j])

(at padded steps alpha is carried unchanged, so alpha_{T-1} = alpha_{L-1}). The backward
recursion beta_{L-1} = end, beta_{t-1}[i] = logsumexp_j(trans[i, j] + e_t[j] + beta_t[j])
gives the marginals that are the gradients of log Z:

    d logZ / d e_t[j]        = P(y_t = j)              = exp(alpha_t[j] + beta_t[j] - log Z)
    d logZ / d trans[i, j]   = sum_t P(y_{t-1} = i, y_t = j)
                             = sum_t exp(alpha_{t-1}[i] + trans[i, j] + e_t[j] + beta_t[j] - log Z)
    d logZ / d start, d end  = P(y_0 = .), P(y_{L-1} = .)
"""
from __future__ import annotations


def logsumexp(x, axis: int, *, xp):
    """log(sum(exp(x), axis)) without overflow (finite inputs)."""
    top = xp.max(x, axis=axis, keepdims=True)
    return xp.squeeze(top, axis=axis) + xp.log(xp.sum(xp.exp(x - top), axis=axis))


def crf_forward(emissions, mask, start, end, transitions, *, xp):
    """The forward recursion: (log Z (B,), alphas (T, B, K))."""
    alpha = start + emissions[0, ...]
    alphas = [alpha]
    for t in range(1, emissions.shape[0]):
        new = logsumexp(alpha[:, :, None] + transitions, axis=1, xp=xp) + emissions[t, ...]
        alpha = xp.where(mask[t, :, None], new, alpha)
        alphas.append(alpha)
    return logsumexp(alpha + end, axis=1, xp=xp), xp.stack(alphas)


def crf_marginals(emissions, mask, end, transitions, log_z, alphas, *, xp):
    """Gradients of sum_b w_b log Z_b are the marginals weighted by w: with ``log_z`` (B,) and
    ``alphas`` from :func:`crf_forward`, returns (unary (T, B, K), zero at padded steps;
    pairwise (K, K) summed over steps and rows; first (B, K) = P(y_0); last (B, K) = P(y_{L-1}))."""
    steps = emissions.shape[0]
    dtype = emissions.dtype
    weight = xp.astype(mask, dtype)[..., None]                     # (T, B, 1)
    log_z = log_z[:, None]
    beta = xp.zeros_like(alphas[0, ...]) + end                     # beta_{T-1} = end for every row
    unary = [None] * steps
    pairwise = xp.zeros_like(transitions)
    for t in range(steps - 1, 0, -1):
        unary[t] = xp.exp(alphas[t, ...] + beta - log_z) * weight[t, ...]
        ahead = emissions[t, ...] + beta                           # (B, K): e_t[j] + beta_t[j]
        joint = xp.exp(alphas[t - 1, :, :, None] + transitions + ahead[:, None, :] - log_z[:, :, None])
        pairwise = pairwise + xp.sum(joint * weight[t, :, :, None], axis=0)
        beta = xp.where(mask[t, :, None], logsumexp(transitions + ahead[:, None, :], axis=2, xp=xp), beta)
    unary[0] = xp.exp(alphas[0, ...] + beta - log_z)
    last = xp.exp(alphas[steps - 1, ...] + end - log_z)
    return xp.stack(unary), pairwise, unary[0], last


def crf_viterbi(emissions, mask, start, end, transitions, *, xp):
    """Max-product recursion: (best path score (B,), best last tag (B,), back-pointers (T-1, B, K)).

    ``pointers[t - 1][b, j]`` is the best tag at step t-1 given tag j at step t; at padded
    steps it is j itself, so walking back from T-1 keeps the last valid tag until step L-1.
    """
    delta = start + emissions[0, ...]
    tags = emissions.shape[-1]
    identity = xp.zeros(delta.shape, dtype=xp.int64, device=delta.device) + xp.arange(
        tags, dtype=xp.int64, device=delta.device)
    pointers = []
    for t in range(1, emissions.shape[0]):
        scores = delta[:, :, None] + transitions                   # (B, K_prev, K)
        keep = mask[t, :, None]
        pointers.append(xp.where(keep, xp.astype(xp.argmax(scores, axis=1), xp.int64), identity))
        delta = xp.where(keep, xp.max(scores, axis=1) + emissions[t, ...], delta)
    final = delta + end
    stacked = xp.stack(pointers) if pointers else xp.zeros((0,) + tuple(delta.shape), dtype=xp.int64,
                                                              device=delta.device)
    return xp.max(final, axis=1), xp.argmax(final, axis=1), stacked
