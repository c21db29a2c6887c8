"""Request generation for the serving benchmark: arrival times, lengths, prompts. Pure and seeded.

Arrivals follow vLLM's `vllm bench serve` convention (/work/shared/reference/methods.md, "LLM
serving metrics"): request rate `inf` sends everything at t = 0; otherwise the gaps between
consecutive requests are gamma-distributed with shape = burstiness and scale =
1 / (rate * burstiness), so the mean gap is 1 / rate whatever the burstiness; burstiness 1 is a
Poisson process, < 1 burstier, > 1 more regular. As in vLLM the first request goes at t = 0 and
each gap precedes the next request.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aibench.core.errors import UsageError


@dataclass(frozen=True)
class Request:
    """One request of a serving run: when it arrives, its prompt, how many tokens to generate."""

    id: int
    arrival_s: float
    prompt: tuple[int, ...]
    output_len: int

    @property
    def input_len(self) -> int:
        return len(self.prompt)


def arrival_times(num: int, rate: float, burstiness: float = 1.0, seed: int = 0) -> list[float]:
    """Arrival times (s, from 0) of `num` requests at `rate` requests/s (inf = all at once)."""
    if num < 0:
        raise UsageError(f"number of requests must be >= 0, got {num}")
    if not rate > 0:
        raise UsageError(f"request rate must be > 0 (or inf), got {rate}")
    if not (burstiness > 0 and math.isfinite(burstiness)):
        raise UsageError(f"burstiness must be a positive finite number, got {burstiness}")
    if math.isinf(rate):
        return [0.0] * num
    rng = random.Random(seed)
    scale = 1.0 / (rate * burstiness)  # mean gap = shape * scale = 1 / rate
    times: list[float] = []
    t = 0.0
    for _ in range(num):
        times.append(t)
        t += rng.gammavariate(burstiness, scale)
    return times


def lengths(
    num: int,
    fixed_or_min: int,
    maximum: int | None = None,
    seed: int = 0,
    name: str = "length",
) -> list[int]:
    """`num` lengths: all `fixed_or_min`, or uniform integers in [fixed_or_min, maximum]."""
    if fixed_or_min < 1:
        raise UsageError(f"{name} must be >= 1, got {fixed_or_min}")
    if maximum is None or maximum <= 0 or maximum == fixed_or_min:
        return [fixed_or_min] * num
    if maximum < fixed_or_min:
        raise UsageError(f"{name} range is empty: max {maximum} < min {fixed_or_min}")
    rng = random.Random(seed)
    return [rng.randint(fixed_or_min, maximum) for _ in range(num)]


def load_lengths(path: str | Path) -> list[tuple[int, int]]:
    """(input_len, output_len) pairs from a JSON Lines file ({"input_len": .., "output_len": ..}
    per line) or a CSV file with an `input_len,output_len` header (by extension: .csv or not)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read request dataset {str(p)!r}: {exc}") from None
    rows: list[tuple[int, int]] = []
    if p.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        missing = {"input_len", "output_len"} - set(reader.fieldnames or [])
        if missing:
            raise UsageError(f"{p}: CSV needs columns input_len,output_len (missing {sorted(missing)})")
        for lineno, row in enumerate(reader, start=2):
            rows.append(_pair(row, p, lineno))
    else:
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{p}:{lineno}: not JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise UsageError(f"{p}:{lineno}: expected an object with input_len and output_len")
            rows.append(_pair(obj, p, lineno))
    if not rows:
        raise UsageError(f"{p}: no requests in the dataset")
    return rows


def _pair(row: dict, path: Path, lineno: int) -> tuple[int, int]:
    try:
        inp, out = int(row["input_len"]), int(row["output_len"])
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"{path}:{lineno}: needs integer input_len and output_len") from None
    if inp < 1 or out < 1:
        raise UsageError(f"{path}:{lineno}: input_len and output_len must be >= 1")
    return inp, out


def make_requests(
    num: int,
    *,
    vocab_size: int,
    input_len: int,
    output_len: int,
    input_len_max: int | None = None,
    output_len_max: int | None = None,
    dataset: str | Path | None = None,
    rate: float = math.inf,
    burstiness: float = 1.0,
    seed: int = 0,
) -> list[Request]:
    """Seeded requests: lengths fixed, uniform from a range, or cycled from a dataset file;
    prompts of random token ids in [0, vocab_size); arrivals as `arrival_times`."""
    if vocab_size < 1:
        raise UsageError(f"vocab_size must be >= 1, got {vocab_size}")
    if dataset:
        pairs = load_lengths(dataset)
        # A dataset shorter than num_requests is cycled, as a benchmark over a fixed trace would.
        pairs = [pairs[i % len(pairs)] for i in range(num)]
    else:
        # Distinct sub-seeds so that changing the output range does not reshuffle input lengths.
        ins = lengths(num, input_len, input_len_max, seed=seed * 4 + 1, name="input_len")
        outs = lengths(num, output_len, output_len_max, seed=seed * 4 + 2, name="output_len")
        pairs = list(zip(ins, outs))
    times = arrival_times(num, rate, burstiness, seed=seed * 4 + 3)
    rng = random.Random(seed * 4)
    return [
        Request(i, t, tuple(rng.randrange(vocab_size) for _ in range(n_in)), n_out)
        for i, (t, (n_in, n_out)) in enumerate(zip(times, pairs))
    ]


def max_total_len(requests: Sequence[Request]) -> int:
    """Longest prompt + generation: the KV-cache length the requests need."""
    return max((r.input_len + r.output_len for r in requests), default=0)
