"""An encoder-decoder with attention: read a source sequence, write a target sequence.

    source ids (S, B) -> src_embedding -> encoder (any cell, stacked, bidirectional, lengths)
        enc_out (S, B, H), final states -> bridge: tanh(W_s [h_fwd; h_bwd]) per layer and state
    target inputs <BOS> y_1 .. y_{n} (T, B) -> tgt_embedding -> decoder (teacher forcing)
        h_t -> attention over enc_out -> h~_t = tanh(W_c [c_t; h_t]) -> generator -> logits (T, B, V)

With ``input_feed`` (OpenNMT's and fairseq's default) the decoder's input at step t is
[embedding of y_{t-1}; h~_{t-1}], so the decoder runs one step at a time with a tape
(:meth:`seqnet.layers.Recurrent.steps`); otherwise the whole target goes through the
decoder in one call (the fused time loop where the backend has one) and attention covers
all steps at once. ``attention="none"`` feeds the decoder's outputs to the generator.
A bidirectional encoder has ``hidden_size // 2`` units per direction, so its outputs and
the decoder both have ``hidden_size`` (and "dot" scores need no projection).

Decoding lives in :mod:`seqnet.decoding`; the model offers :meth:`Seq2Seq.steps`, a
:class:`seqnet.decoding.SearchSteps` whose state (decoder states, input feed, memory)
re-indexes for beams, and :meth:`Seq2Seq.translate` for text.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import check_array, host_int64, to_numpy
from ..data.vocabulary import BOS_ID, EOS_ID, PAD_ID, SEQUENCE_SPECIALS, UNK_ID, Vocabulary
from ..decoding import beam_search, check_length_penalty, check_sampling, refuse_given, sample_search
from ..decoding.sampling import is_finite_number
from ..decoding.search import check_count
from ..errors import (ConfigError, ShapeError, check_bool, check_not_one_text, check_positive_int,
                      check_real)
from ..layers import RECURRENT_LAYERS, Attention, Embedding, Layer, Linear, softmax_cross_entropy
from ..layers.attention import check_attention_type
from ..layers.base import BackpropOnce
from ..layers.dropout import check_dropout, dropout_mask, stack_dropout
from ..layers.embedding import check_token_ids
from ..layers.loss import check_target_ids
from ..layers.masks import check_lengths
from ..random_state import check_seed, seed_sequence


def _check_vocab(name: str, vocab, size: int):
    """``vocab`` (None or a Vocabulary) when it is one of ``size`` symbols whose first four are the
    sequence specials, which the model writes and reads at ids 0-3; ConfigError naming ``name`` otherwise."""
    if vocab is None:
        return None
    if not isinstance(vocab, Vocabulary):
        raise ConfigError(f"{name}: expected a seqnet.data.Vocabulary (or None), received {type(vocab).__name__}")
    if vocab.symbols[:len(SEQUENCE_SPECIALS)] != SEQUENCE_SPECIALS:
        raise ConfigError(f"{name}: expected the specials {', '.join(SEQUENCE_SPECIALS)} at ids 0-3 "
                          f"(Vocabulary.fit(..., specials=SEQUENCE_SPECIALS)), received {list(vocab.specials)}")
    if vocab.vocab_size != size:
        raise ConfigError(f"{name}: expected {size} symbols (the model's {name}_size), received a vocabulary of "
                          f"{vocab.vocab_size}")
    return vocab


@dataclass
class Translation:
    """The n-best outputs of one source, best first: texts, model scores (log-probabilities,
    <EOS> included), the search's ranking scores, token ids, and attention weights (steps, S)
    per output (None without attention)."""

    outputs: list[str]
    scores: list[float]
    normalized: list[float]
    tokens: list[np.ndarray]
    attention: list[np.ndarray | None]


class Seq2Seq(Layer):
    """Encoder-decoder over ``src_vocab_size`` and ``tgt_vocab_size`` ids (see the module docstring).

    Specials follow :mod:`seqnet.data.vocab` (<PAD> 0, <UNK> 1, <BOS> 2, <EOS> 3).
    ``share_embeddings`` uses one table for both sides (equal vocabulary sizes).
    ``src_vocab`` / ``tgt_vocab`` (optional :class:`seqnet.data.Vocabulary`) let
    :meth:`translate` take and return text.
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, embed_size: int = 64, hidden_size: int = 128,
                 num_layers: int = 1, cell: str = "lstm", bidirectional: bool = True, attention: str = "general",
                 input_feed: bool = True, dropout: float = 0.0, layer_norm: bool = False,
                 share_embeddings: bool = False, dtype: Any = None, seed: int | None = None,
                 src_vocab=None, tgt_vocab=None):
        super().__init__(dtype)
        bidirectional, input_feed = check_bool("bidirectional", bidirectional), check_bool("input_feed", input_feed)
        layer_norm = check_bool("layer_norm", layer_norm)
        share_embeddings = check_bool("share_embeddings", share_embeddings)
        if cell not in RECURRENT_LAYERS:
            raise ConfigError(f"cell: expected one of {tuple(RECURRENT_LAYERS)}, received {cell!r}")
        if layer_norm and cell != "lstm":
            raise ConfigError(f"layer_norm: the layer-normalised cell is an LSTM; received cell={cell!r}")
        attention = check_attention_type(attention)
        hidden_size = check_positive_int("hidden_size", hidden_size)
        if bidirectional and hidden_size % 2:
            raise ConfigError(f"hidden_size: a bidirectional encoder splits it between two directions; expected an "
                              f"even number, received {hidden_size}")
        if check_positive_int("tgt_vocab_size", tgt_vocab_size) < len(SEQUENCE_SPECIALS):
            raise ConfigError(f"tgt_vocab_size: expected at least {len(SEQUENCE_SPECIALS)} ids (ids 0-3 are "
                              f"{', '.join(SEQUENCE_SPECIALS)}), received {tgt_vocab_size!r}")
        if share_embeddings and src_vocab_size != tgt_vocab_size:
            raise ConfigError(f"share_embeddings: needs one vocabulary for both sides, received sizes {src_vocab_size} "
                              f"and {tgt_vocab_size}")
        self.config = dict(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size, embed_size=embed_size,
                           hidden_size=hidden_size, num_layers=num_layers, cell=cell, bidirectional=bool(bidirectional),
                           attention=attention, input_feed=bool(input_feed), dropout=dropout,
                           layer_norm=bool(layer_norm), share_embeddings=bool(share_embeddings))
        self.hidden_size = hidden_size
        self.dropout = check_dropout(dropout)
        self.input_feed = bool(input_feed) and attention != "none"
        seeds = seed_sequence(seed).spawn(8)
        self.dropout_rng = np.random.default_rng(seeds[7])
        extra = {"layer_norm": True} if layer_norm else {}
        self.src_embedding = self.add("src_embedding", Embedding(src_vocab_size, embed_size, dtype=dtype, seed=seeds[0]))
        self.tgt_embedding = self.add("tgt_embedding", self.src_embedding if share_embeddings else
                                      Embedding(tgt_vocab_size, embed_size, dtype=dtype, seed=seeds[1]))
        per_direction = hidden_size // 2 if bidirectional else hidden_size
        self.encoder = self.add("encoder", RECURRENT_LAYERS[cell](embed_size, per_direction, num_layers,
                                                                  dropout=stack_dropout(dropout, num_layers),
                                                                  bidirectional=bidirectional,
                                                                  dtype=dtype, seed=seeds[2], **extra))
        self.bridge = {}
        names = self.encoder.cell.state_names
        for name, bridge_seed in zip(names, seeds[3].spawn(len(names))):
            self.bridge[name] = self.add(f"bridge_{name}", Linear(hidden_size, hidden_size, dtype=dtype, seed=bridge_seed))
        self.attention = None
        if attention != "none":
            self.attention = self.add("attention", Attention(attention, hidden_size, hidden_size, dtype=dtype,
                                                             seed=seeds[4]))
        feed = hidden_size if self.input_feed else 0
        self.decoder = self.add("decoder", RECURRENT_LAYERS[cell](embed_size + feed, hidden_size, num_layers,
                                                                  dropout=stack_dropout(dropout, num_layers),
                                                                  dtype=dtype, seed=seeds[5], **extra))
        self.generator = self.add("generator", Linear(hidden_size, tgt_vocab_size, dtype=dtype, seed=seeds[6]))
        self.encoder.dropout_rng = self.decoder.dropout_rng = self.dropout_rng
        self.src_vocab, self.tgt_vocab = src_vocab, tgt_vocab

    # -- vocabularies: optional, each with the sequence specials at ids 0-3 and the model's size
    @property
    def src_vocab(self):
        return self._src_vocab

    @src_vocab.setter
    def src_vocab(self, vocab) -> None:
        self._src_vocab = _check_vocab("src_vocab", vocab, self.src_vocab_size)

    @property
    def tgt_vocab(self):
        return self._tgt_vocab

    @tgt_vocab.setter
    def tgt_vocab(self, vocab) -> None:
        self._tgt_vocab = _check_vocab("tgt_vocab", vocab, self.tgt_vocab_size)

    @property
    def src_vocab_size(self) -> int:
        return self.src_embedding.num_embeddings

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt_embedding.num_embeddings

    # -- checks -------------------------------------------------------------------------
    def _check_batch(self, src, src_lengths, tgt_in=None):
        src = check_token_ids(self.backend, src, "src", self.src_vocab_size, ndim=2)
        steps, batch = src.shape
        lengths = check_lengths(src_lengths, batch, steps, name="src_lengths", steps_name="S")
        if tgt_in is not None:
            tgt_in = check_token_ids(self.backend, tgt_in, "tgt_in", self.tgt_vocab_size, ndim=2)
            if tgt_in.shape[1] != batch:
                raise ShapeError(f"tgt_in: expected {batch} columns (one per source), received shape "
                                 f"{tuple(tgt_in.shape)}")
        return src, lengths, tgt_in

    def _drop(self, shape, training: bool):
        if not training or self.dropout == 0:
            return None
        return dropout_mask(self.dropout_rng, tuple(shape), self.dropout, self.backend, self.dtype_name)

    # -- encoder and bridge -------------------------------------------------------------
    def _encode(self, src, lengths, training: bool):
        """-> (enc_out (S, B, H), h_n, backprop(d_enc_out or None, d_h_n))."""
        emb, emb_back = self.src_embedding.forward(src)
        drop = self._drop(emb.shape, training)
        if drop is not None:
            emb = emb * drop
        if not training:
            out, h_n = self.encoder(emb, None, lengths)
            return out, h_n, None
        (out, h_n), enc_back = self.encoder.forward(emb, None, lengths)

        def backprop(d_out, d_h_n):
            d_emb, _ = enc_back(d_out, d_h_n)
            emb_back(d_emb if drop is None else d_emb * drop)

        return out, h_n, backprop

    def _bridge(self, h_n):
        """Encoder final states (D*L, B, He) per state part -> the decoder's hx, with its backprop.

        Decoder layer l starts from tanh(W [h_l forward; h_l backward] + b), one Linear per
        state part (h, and c for LSTMs)."""
        xp = self.backend.xp
        parts = h_n if isinstance(h_n, tuple) else (h_n,)
        d = self.encoder.num_directions
        outs, backs = [], []
        for name, part in zip(self.encoder.cell.state_names, parts):
            layers = part.shape[0] // d
            joined = part if d == 1 else xp.stack([xp.concat([part[d * k + j, ...] for j in range(d)], axis=-1)
                                                   for k in range(layers)])      # (L, B, H)
            pre, back = self.bridge[name].forward(joined)
            outs.append(xp.tanh(pre))
            backs.append(back)
        state0 = tuple(outs) if len(outs) > 1 else outs[0]

        def backprop(d_state0):
            d_parts = d_state0 if isinstance(d_state0, tuple) else (d_state0,)
            grads = []
            for out, back, d_out in zip(outs, backs, d_parts):
                d_joined = back(d_out * (1 - out * out))                      # (L, B, H)
                if d > 1:
                    half = self.hidden_size // 2
                    d_joined = xp.stack([d_joined[k, :, j * half:(j + 1) * half]
                                         for k in range(d_joined.shape[0]) for j in range(d)])
                grads.append(d_joined)
            return tuple(grads) if len(grads) > 1 else grads[0]

        return state0, backprop

    # -- decoder ------------------------------------------------------------------------
    def _decode_whole(self, emb, state0, memory, training: bool):
        """Teacher forcing without input feeding: the whole target in one recurrent call."""
        if training:
            (dec_out, _), rnn_back = self.decoder.forward(emb, state0)
        else:
            (dec_out, _), rnn_back = self.decoder(emb, state0), None
        att_back = None
        out = dec_out
        if self.attention is not None:
            (out, _), att_back = self.attention.forward(dec_out, memory)
        drop = self._drop(out.shape, training)
        if drop is not None:
            out = out * drop

        def backprop(d_out):
            if drop is not None:
                d_out = d_out * drop
            d_memory = None
            if att_back is not None:
                d_out, d_memory = att_back(d_out)
            d_emb, d_state0 = rnn_back(d_out, None)
            return d_emb, d_state0, d_memory

        return out, backprop

    def _decode_stepped(self, emb, state0, memory, training: bool):
        """Teacher forcing with input feeding: step t reads [emb_t; h~_{t-1}] (h~_{-1} = 0)."""
        xp = self.backend.xp
        steps, batch, embed = emb.shape
        run = self.decoder.steps(batch, state0, training=training)
        feed = self.backend.zeros((batch, self.hidden_size), self.dtype)
        outs, backs, drops = [], [], []
        for t in range(steps):
            h = run.step(xp.concat([emb[t, ...], feed], axis=-1))
            (o, _), back = self.attention.forward(h, memory)
            drop = self._drop(o.shape, training)
            if drop is not None:
                o = o * drop
            outs.append(o)
            backs.append(back)
            drops.append(drop)
            feed = o

        def backprop(d_out):
            run.begin_backward()
            d_feed, d_memory, d_embs = None, None, [None] * steps
            for t in range(steps - 1, -1, -1):
                d_o = d_out[t, ...] if d_feed is None else d_out[t, ...] + d_feed
                if drops[t] is not None:
                    d_o = d_o * drops[t]
                d_h, d_mem = backs[t](d_o)
                d_memory = d_mem if d_memory is None else d_memory + d_mem
                d_x = run.backstep(d_h)
                d_embs[t], d_feed = d_x[:, :embed], d_x[:, embed:]
            return xp.stack(d_embs), run.end_backward(), d_memory

        return xp.stack(outs), backprop

    # -- the whole model ----------------------------------------------------------------
    def __call__(self, src, src_lengths, tgt_in):
        """Inference: src (S, B) ids, src_lengths (B,) host ints, tgt_in (T, B) ids -> logits (T, B, V)."""
        return self._run(src, src_lengths, tgt_in, training=False)[0]

    def forward(self, src, src_lengths, tgt_in):
        """Training forward (teacher forcing): -> (logits (T, B, V), backprop(d_logits) -> None)."""
        return self._run(src, src_lengths, tgt_in, training=True)

    def _run(self, src, src_lengths, tgt_in, training: bool):
        src, lengths, tgt_in = self._check_batch(src, src_lengths, tgt_in)
        enc_out, h_n, enc_back = self._encode(src, lengths, training)
        state0, bridge_back = self._bridge(h_n)
        memory, memory_back = (None, None) if self.attention is None else self.attention.memory(enc_out, lengths)
        emb, emb_back = self.tgt_embedding.forward(tgt_in)
        drop = self._drop(emb.shape, training)
        if drop is not None:
            emb = emb * drop
        decode = self._decode_stepped if self.input_feed else self._decode_whole
        out, dec_back = decode(emb, state0, memory, training)
        logits, gen_back = self.generator.forward(out)
        if not training:
            return logits, None
        guard = BackpropOnce("Seq2Seq backprop")
        logits_shape = tuple(logits.shape)

        def backprop(d_logits):
            guard.check()
            d_logits = check_array(self.backend, d_logits, "d_logits", dtype=self.dtype_name)
            if tuple(d_logits.shape) != logits_shape:
                raise ShapeError(f"d_logits: expected the shape of the logits {logits_shape}, "
                                 f"received {tuple(d_logits.shape)}")
            guard.consume()
            d_emb, d_state0, d_memory = dec_back(gen_back(d_logits))
            emb_back(d_emb if drop is None else d_emb * drop)
            d_enc_out = None if d_memory is None else memory_back(d_memory)
            enc_back(d_enc_out, bridge_back(d_state0))

        return logits, backprop

    def loss_and_grads(self, src, src_lengths, tgt_in, tgt_out, mask=None, *, grad_scale: float = 1.0):
        """Forward, mean cross-entropy over the target tokens where ``mask`` (T, B) is True
        (all when None), backward; gradients are *added* to ``param_grads``. Returns the loss
        (nats per target token, a 0-d device array). Targets where ``mask`` is False are not read."""
        tgt_out, mask = self._check_targets(tgt_in, tgt_out, mask)
        logits, backprop = self.forward(src, src_lengths, tgt_in)
        loss, loss_back = softmax_cross_entropy(logits, tgt_out, mask, xp=self.backend.xp)
        backprop(loss_back(check_real("grad_scale", grad_scale)))
        return loss

    def _check_targets(self, tgt_in, tgt_out, mask):
        """(tgt_out, mask) checked: ids of tgt_in's shape (T, B), the mask a bool array of it."""
        tgt_out, mask = check_target_ids(self.backend, tgt_out, self.tgt_vocab_size, mask, "tgt_out")
        shape = tuple(getattr(tgt_in, "shape", ()))
        if tuple(tgt_out.shape) != shape:
            raise ShapeError(f"tgt_out: expected the shape of tgt_in {shape} (T, B), received {tuple(tgt_out.shape)}")
        return tgt_out, mask

    def loss(self, src, src_lengths, tgt_in, tgt_out, mask=None):
        """Mean cross-entropy without dropout or gradients, as :meth:`loss_and_grads` computes it."""
        tgt_out, mask = self._check_targets(tgt_in, tgt_out, mask)
        loss, _ = softmax_cross_entropy(self(src, src_lengths, tgt_in), tgt_out, mask, xp=self.backend.xp)
        return loss

    # -- decoding ---------------------------------------------------------------------
    def device_ids(self, host_ids: np.ndarray):
        return self.backend.asarray(host_int64(host_ids), "int64")

    def steps(self, src: np.ndarray, src_lengths) -> "Seq2SeqSteps":
        """The decoding interface (:class:`seqnet.decoding.SearchSteps`) for host source ids
        (S, N) of lengths (N,): start it with a (1, N) column of <BOS>."""
        return Seq2SeqSteps(self, src, src_lengths)

    def translate(self, sources, *, beam: int = 1, n_best: int = 1, length_penalty: str = "none", alpha: float = 0.0,
                  max_len_a: float = 1.5, max_len_b: int = 10, min_len: int = 0, block_ngram: int = 0,
                  sample: bool = False, temperature: float | None = None, top_k: int | None = None,
                  top_p: float | None = None, seed: int | None = None, batch_size: int = 64,
                  keep_attention: bool = True) -> list[Translation]:
        """Translate a list of texts (or of (L,) host id arrays, when the model has no vocabularies).

        Beam search (:func:`seqnet.decoding.beam_search`) of width ``beam`` with ``n_best``,
        ``length_penalty`` / ``alpha``, ``block_ngram``; width 1 without a length penalty or
        n-gram blocking is greedy search (the same outputs, by a simpler loop). ``sample``
        draws with the language model's controls (``temperature``, ``top_k``, ``top_p``,
        ``seed``) instead; it takes no beam, length penalty or n-gram blocking. Each output has
        at most ``max(1, floor(max_len_a * source_length + max_len_b))`` tokens (<EOS>
        included) and at least ``min_len`` tokens before <EOS>: a ``min_len`` above some source's
        maximum is an error, as is a maximum of 0 for every source (``max_len_a`` = ``max_len_b`` =
        0) and a search that n-gram blocking leaves without any output of ``min_len`` tokens.
        <UNK>, <PAD> and <BOS> are never produced. Sources run in batches of ``batch_size``.
        """
        check_not_one_text("sources", sources, "a list of texts (or id arrays)")
        if not isinstance(sources, Iterable):
            raise ConfigError(f"sources: expected a list of texts (or id arrays), received {type(sources).__name__}")
        if isinstance(sources, np.ndarray) and sources.ndim < 2:
            raise ConfigError(f"sources: expected a list of texts (or id arrays), received one {sources.ndim}-D "
                              "array; wrap one source in a list")
        beam = check_count("beam", beam, low=1)
        n_best = check_count("n_best", n_best, low=1)
        if n_best > beam:
            raise ConfigError(f"n_best: expected at most beam = {beam} outputs per source, received {n_best}")
        check_length_penalty(length_penalty, alpha)
        block_ngram = check_count("block_ngram", block_ngram, low=0)
        min_len = check_count("min_len", min_len, low=0)
        if check_bool("sample", sample):
            for name, value, off in (("beam", beam, 1), ("block_ngram", block_ngram, 0),
                                     ("length_penalty", length_penalty, "none")):
                if value != off:
                    raise ConfigError(f"sample: sampling draws one output per source; it does not combine with "
                                      f"{name} = {value!r} (a beam search setting)")
        else:
            refuse_given("a sampling control; it needs sample=True (search does not sample)", temperature=temperature,
                         top_k=top_k, top_p=top_p, seed=seed)
        check_sampling(temperature, top_k, top_p)
        keep_attention = check_bool("keep_attention", keep_attention)
        if not (is_finite_number(max_len_a) and max_len_a >= 0):
            raise ConfigError(f"max_len_a: expected a finite number >= 0, received {max_len_a!r}")
        max_len_b = check_count("max_len_b", max_len_b, low=0)
        if max_len_a == 0 and max_len_b == 0:
            raise ConfigError("max_len_a, max_len_b: both 0 allow an output of at most 0 tokens; expected "
                              "max_len_a > 0 or max_len_b > 0")
        batch_size = check_count("batch_size", batch_size, low=1)
        encoded = [self._encode_source(s, k) for k, s in enumerate(sources)]
        limit_of = [max(1, int(np.floor(max_len_a * len(ids) + max_len_b))) for ids in encoded]
        short = [k for k, limit in enumerate(limit_of) if limit < min_len]
        if short:
            k, others = short[0], f" (and {len(short) - 1} other sources)" if len(short) > 1 else ""
            raise ConfigError(f"min_len: {min_len} is above the maximum output length {limit_of[k]} of sources[{k}]"
                              f"{others}: max_len_a * {len(encoded[k])} source tokens + max_len_b = {max_len_a} * "
                              f"{len(encoded[k])} + {max_len_b}; lower min_len or raise max_len_a / max_len_b")
        search = beam > 1 or block_ngram > 0 or length_penalty != "none"
        rng = np.random.default_rng(check_seed(seed))
        temperature = 1.0 if temperature is None else temperature
        results: list[Translation | None] = [None] * len(encoded)
        order = sorted(range(len(encoded)), key=lambda k: len(encoded[k]))       # similar lengths batch together
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            lengths = np.array([len(encoded[k]) for k in chunk], dtype=np.int64)
            src = np.full((int(lengths.max()), len(chunk)), PAD_ID, dtype=np.int64)
            for col, k in enumerate(chunk):
                src[:lengths[col], col] = encoded[k]
            limits = np.array([limit_of[k] for k in chunk], dtype=np.int64)
            steps = self.steps(src, lengths)
            prefix = np.full((1, len(chunk)), BOS_ID, dtype=np.int64)
            banned = (UNK_ID, PAD_ID, BOS_ID)
            if search:                           # width 1 with blocking or a length penalty: beam search too
                found = beam_search(steps, prefix, limits, beam=beam, n_best=n_best, min_len=min_len, eos_id=EOS_ID,
                                    banned_ids=banned, length_penalty=length_penalty, alpha=alpha,
                                    block_ngram=block_ngram, keep_attention=keep_attention)
            else:
                found = [[h] for h in sample_search(steps, prefix, limits, rng=rng, greedy=not sample,
                                                    temperature=temperature, top_k=top_k, top_p=top_p,
                                                    eos_id=EOS_ID, banned_ids=banned, min_len=min_len,
                                                    keep_attention=keep_attention)]
            for col, k in enumerate(chunk):
                hyps = found[col]
                if not hyps:                     # every continuation banned before min_len: nothing to return
                    raise ConfigError(f"min_len, block_ngram: no output of sources[{k}] reaches min_len = {min_len} "
                                      f"tokens without repeating a {block_ngram}-gram; lower min_len or block_ngram")
                results[k] = Translation(
                    [self._decode_target(h.tokens) for h in hyps], [h.score for h in hyps],
                    [h.normalized for h in hyps], [h.tokens for h in hyps],
                    [None if h.attention is None else h.attention[:, :lengths[col]] for h in hyps])
        return results

    def _encode_source(self, source, index: int) -> np.ndarray:
        if isinstance(source, str):
            if self.src_vocab is None:
                raise ConfigError("sources: this model has no source vocabulary; pass id arrays or set model.src_vocab")
            ids = self.src_vocab.encode(source)
        else:
            ids = np.asarray(source)
            if ids.ndim != 1 or ids.dtype.kind not in "iu":
                raise ConfigError(f"sources[{index}]: expected a text or a 1-D integer id array, received "
                                  f"{type(source).__name__}")
        if ids.shape[0] == 0:
            raise ConfigError(f"sources[{index}]: expected at least one token, received an empty source")
        if np.any(ids < 0) or np.any(ids >= self.src_vocab_size):
            raise ConfigError(f"sources[{index}]: expected ids in [0, {self.src_vocab_size}), received "
                              f"[{ids.min()}, {ids.max()}]")
        return ids

    def _decode_target(self, tokens: np.ndarray) -> str:
        return self.tgt_vocab.decode(tokens) if self.tgt_vocab is not None else " ".join(map(str, tokens.tolist()))


class Seq2SeqSteps:
    """One target token at a time through a :class:`Seq2Seq` (inference: no dropout, no tape).

    The encoder runs once, here. State: (per-layer decoder states, input feed h~ (N, H) or
    None, attention memory, last attention weights (N, S) or None); ``reorder`` re-indexes
    every part along the batch axis, so beams share nothing and finished sources drop out.
    """

    def __init__(self, model: Seq2Seq, src: np.ndarray, src_lengths):
        self.model = model
        xp = model.backend.xp
        src_dev, lengths, _ = model._check_batch(model.device_ids(src), src_lengths)
        enc_out, h_n, _ = model._encode(src_dev, lengths, training=False)
        state0, _ = model._bridge(h_n)
        memory = None if model.attention is None else model.attention.memory(enc_out, lengths)[0]
        batch = src.shape[1]
        feed = model.backend.zeros((batch, model.hidden_size), model.dtype) if model.input_feed else None
        self._initial = (model.decoder.step_states(state0, batch), feed, memory, None)
        self._rnn_step = model.decoder.stepper()
        self._embed = model.tgt_embedding.weight.value
        self._generator_weight = xp.matrix_transpose(model.generator.parameter("weight").value)   # (H, V)
        self._generator_bias = model.generator.parameter("bias").value

    def start(self, prefix: np.ndarray):
        logits, state = None, self._initial
        for t in range(prefix.shape[0]):
            logits, state = self.step(prefix[t], state)
        return logits, state

    def step(self, ids: np.ndarray, state):
        model, xp = self.model, self.model.backend.xp
        states, feed, memory, _ = state
        x = xp.take(self._embed, model.device_ids(ids), axis=0)
        if feed is not None:
            x = xp.concat([x, feed], axis=-1)
        h, states = self._rnn_step(x, states)
        weights = None
        if model.attention is not None:
            h, weights = model.attention(h, memory)
        logits = xp.matmul(h, self._generator_weight) + self._generator_bias
        return to_numpy(logits), (states, h if feed is not None else None, memory, weights)

    def reorder(self, state, rows: np.ndarray):
        xp, idx = self.model.backend.xp, self.model.device_ids(rows)
        states, feed, memory, weights = state
        take = lambda a: None if a is None else xp.take(a, idx, axis=0)  # noqa: E731
        return ([tuple(take(part) for part in layer) for layer in states], take(feed),
                None if memory is None else memory.take(idx, xp), take(weights))

    def attention(self, state) -> np.ndarray | None:
        weights = state[3]
        return None if weights is None else to_numpy(weights)
