"""The prompts of a serving run, as vLLM `bench serve`'s datasets make them (vllm/benchmarks/datasets.py):

- random: prompts of random token ids (sent as a token list, so every server sees exactly
  input_len tokens, whatever its tokenizer), lengths uniform in [len * (1 - range_ratio),
  len * (1 + range_ratio)]; the client sets `ignore_eos` so each request generates output_len tokens;
- sharegpt: a ShareGPT-format JSON file (a list of {"conversations": [{"from": "human", "value": ..},
  {"from": "gpt", "value": ..}, ..]}): the first turn is the prompt; the output length is the
  tokenizer's count of the second turn when a tokenizer is given, else the fixed output_len;
- prefix: `num_prefixes` shared prefixes of prefix_len random tokens, each request one prefix plus
  its own suffix_len random tokens (prefix caching's benefit shows up in TTFT).
For chat endpoints a token-id prompt becomes text: one lowercase word per token (no tokenizer
maps it back exactly; the server's usage.prompt_tokens gives the true count).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aibench.core.errors import UsageError


@dataclass(frozen=True)
class Prompt:
    id: int
    prompt: str | tuple[int, ...]
    prompt_len: int  # expected input tokens (the server's usage replaces it)
    output_len: int  # max_tokens asked for


def _length(base: int, ratio: float, rng: random.Random) -> int:
    lo, hi = max(1, int(base * (1 - ratio))), max(1, int(base * (1 + ratio)))
    return rng.randint(lo, hi)


def random_prompts(num: int, input_len: int, output_len: int, vocab_size: int, *, range_ratio: float = 0.0,
                   seed: int = 0) -> list[Prompt]:
    if input_len < 1 or output_len < 1 or vocab_size < 1:
        raise UsageError("random dataset: input_len, output_len and vocab_size must be >= 1")
    if not 0 <= range_ratio < 1:
        raise UsageError(f"range_ratio must be in [0, 1), got {range_ratio}")
    rng = random.Random(seed)
    out = []
    for i in range(num):
        n_in, n_out = _length(input_len, range_ratio, rng), _length(output_len, range_ratio, rng)
        out.append(Prompt(i, tuple(rng.randrange(vocab_size) for _ in range(n_in)), n_in, n_out))
    return out


def prefix_prompts(num: int, prefix_len: int, suffix_len: int, output_len: int, vocab_size: int, *,
                   num_prefixes: int = 1, seed: int = 0) -> list[Prompt]:
    if prefix_len < 1 or suffix_len < 0 or output_len < 1 or num_prefixes < 1:
        raise UsageError("prefix dataset: prefix_len, output_len, num_prefixes >= 1 and suffix_len >= 0")
    rng = random.Random(seed)
    prefixes = [tuple(rng.randrange(vocab_size) for _ in range(prefix_len)) for _ in range(num_prefixes)]
    out = []
    for i in range(num):
        tokens = prefixes[i % num_prefixes] + tuple(rng.randrange(vocab_size) for _ in range(suffix_len))
        out.append(Prompt(i, tokens, len(tokens), output_len))
    return out


def sharegpt_prompts(path: str | Path, num: int, *, output_len: int = 0,
                     count_tokens: Callable[[str], int] | None = None, seed: int = 0) -> list[Prompt]:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read ShareGPT file {str(p)!r}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{p}: not JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, list):
        raise UsageError(f"{p}: a ShareGPT file is a JSON list of conversations")
    pairs: list[tuple[str, str]] = []
    for entry in data:
        conv = entry.get("conversations") if isinstance(entry, dict) else None
        if not isinstance(conv, list) or len(conv) < 2:
            continue  # vLLM filters conversations with fewer than two turns
        first, second = conv[0], conv[1]
        if isinstance(first, dict) and isinstance(second, dict) and isinstance(first.get("value"), str) \
                and isinstance(second.get("value"), str) and first["value"]:
            pairs.append((first["value"], second["value"]))
    if not pairs:
        raise UsageError(f"{p}: no conversation with two turns")
    if count_tokens is None and output_len < 1:
        raise UsageError("ShareGPT output lengths need a tokenizer or a fixed output_len >= 1")
    random.Random(seed).shuffle(pairs)  # vLLM samples the file in a seeded random order
    out = []
    for i in range(num):
        prompt, reply = pairs[i % len(pairs)]
        n_in = count_tokens(prompt) if count_tokens else len(prompt.encode("utf-8"))
        n_out = output_len if output_len >= 1 else max(1, count_tokens(reply))  # type: ignore[misc]
        out.append(Prompt(i, prompt, n_in, n_out))
    return out


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def as_text(tokens: tuple[int, ...]) -> str:
    """A token-id prompt as text for chat endpoints: one short word per token id."""
    words = []
    for t in tokens:
        a, b = divmod(t % (26 * 26), 26)
        words.append(_LETTERS[a] + _LETTERS[b])
    return " ".join(words)
