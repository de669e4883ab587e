"""Host-side data layer: tokenizers, corpus files, BPTT batches, labelled data files, length buckets.

Pure Python + numpy; nothing here touches a backend array.
"""

from seqnet.data.batching import StreamBatcher, iter_eval_batches
from seqnet.data.buckets import BucketBatcher, pad_batch
from seqnet.data.labeled import read_classification, read_conll, read_generation
from seqnet.data.vocabulary import LabelSet, Vocabulary
from seqnet.data.corpus import (
    TokenStream,
    encode_corpus,
    iter_byte_chunks,
    iter_text_chunks,
    load_token_ids,
    resolve_corpus,
    split_train_val,
)
from seqnet.data.stdlib import python_stdlib_files
from seqnet.data.tokenizers import (
    ByteTokenizer,
    CharTokenizer,
    Tokenizer,
    WordTokenizer,
    make_tokenizer,
    tokenizer_from_json,
)

__all__ = [
    "BucketBatcher",
    "LabelSet",
    "Vocabulary",
    "pad_batch",
    "read_classification",
    "read_conll",
    "read_generation",
    "ByteTokenizer",
    "CharTokenizer",
    "StreamBatcher",
    "TokenStream",
    "Tokenizer",
    "WordTokenizer",
    "encode_corpus",
    "iter_byte_chunks",
    "iter_eval_batches",
    "iter_text_chunks",
    "load_token_ids",
    "make_tokenizer",
    "python_stdlib_files",
    "resolve_corpus",
    "split_train_val",
    "tokenizer_from_json",
    "Vocabulary",
]
