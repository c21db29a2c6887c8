"""The shipped text of the time-to-quality preview, as byte tokens.

`data/lincoln.txt`: Abraham Lincoln's Gettysburg Address (the Bliss copy, 1863) and Second
Inaugural Address (1865), public domain, 5.6 kB. Tokens are its UTF-8 bytes (ids 0..255), so no
tokenizer is needed and any model with a vocabulary of at least 256 can learn it. The last
`eval_fraction` of the bytes is held out: the target loss is reached on text never trained on.
"""

from __future__ import annotations

from importlib import resources

import torch
from torch import Tensor

TEXT_FILE = "lincoln.txt"
BYTE_VOCAB = 256


def shipped_text(name: str = TEXT_FILE) -> bytes:
    """The bytes of a text shipped as package data (aibench/models/data/)."""
    return resources.files("aibench.models").joinpath("data", name).read_bytes()


def byte_tokens(text: bytes) -> Tensor:
    """[N] int64 token ids, one per byte."""
    return torch.frombuffer(bytearray(text), dtype=torch.uint8).to(torch.int64)


def split_text(tokens: Tensor, eval_fraction: float) -> tuple[Tensor, Tensor]:
    """(train, held-out) by position: the held-out part is the end of the text."""
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    cut = int(len(tokens) * (1 - eval_fraction))
    return tokens[:cut], tokens[cut:]


def random_windows(tokens: Tensor, batch: int, seq: int, gen: torch.Generator) -> Tensor:
    """[batch, seq + 1] windows at random offsets (inputs and their next-byte labels)."""
    if len(tokens) < seq + 1:
        raise ValueError(f"text of {len(tokens)} tokens is shorter than a window of {seq + 1}")
    starts = torch.randint(0, len(tokens) - seq, (batch,), generator=gen)
    return torch.stack([tokens[s : s + seq + 1] for s in starts.tolist()])


def tiling_windows(tokens: Tensor, seq: int) -> Tensor:
    """[n, seq + 1] consecutive windows covering the text (the held-out set, evaluated whole)."""
    n = (len(tokens) - 1) // seq
    if n < 1:
        raise ValueError(f"text of {len(tokens)} tokens is shorter than a window of {seq + 1}")
    return torch.stack([tokens[i * seq : i * seq + seq + 1] for i in range(n)])
