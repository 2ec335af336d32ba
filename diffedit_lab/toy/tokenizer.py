"""A CLIP byte-pair tokenizer generated offline for a small word list.

CLIP's tokenizer splits a word into characters, marks the last one with ``</w>``, and then
repeatedly applies the *lowest-ranked* merge among the adjacent pairs present. A word becomes
a single token only if, at every step, the merge that builds it is the best one available —
so the merges are generated in the order the tokenizer itself applies them: for each word we
run the current tokenizer and, while it yields more than one piece, append the merge of the
first two pieces (a new merge has the highest rank, so it can never change a word that was
already a single token).
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Iterable

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
BASE_CHARS = string.ascii_lowercase + string.digits + string.punctuation


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply CLIP's merge rule to one word: always merge the lowest-ranked adjacent pair."""
    pieces = list(word[:-1]) + [word[-1] + "</w>"]
    while len(pieces) > 1:
        pairs = [(ranks.get(p, 1 << 30), i) for i, p in enumerate(zip(pieces, pieces[1:]))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        pieces[i : i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def bpe_vocab(words: Iterable[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocab and ordered merges such that every word in ``words`` is exactly one token."""
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in dict.fromkeys(w.lower() for w in words):
        while len(pieces := _bpe(word, ranks)) > 1:
            ranks[(pieces[0], pieces[1])] = len(merges)
            merges.append((pieces[0], pieces[1]))
    tokens = [BOS, EOS] + list(BASE_CHARS) + [c + "</w>" for c in BASE_CHARS]
    tokens += ["".join(m) for m in merges]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return vocab, merges


def build_clip_tokenizer(words: Iterable[str], folder: str | Path, model_max_length: int = 77):
    """Write ``vocab.json``/``merges.txt`` for ``words`` into ``folder`` and return a ``CLIPTokenizer``.

    The folder is also saved with ``save_pretrained`` so that both older (slow, vocab/merges)
    and newer (``tokenizer.json``) transformers can load it.
    """
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = bpe_vocab(words)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("".join(f"{a} {b}\n" for a, b in [("#version:", "0.2"), *merges]))
    tokenizer = CLIPTokenizer(
        vocab=str(folder / "vocab.json"),
        merges=str(folder / "merges.txt"),
        model_max_length=model_max_length,
    )
    tokenizer.save_pretrained(folder)
    return CLIPTokenizer.from_pretrained(folder)
