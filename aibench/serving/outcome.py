"""What the client recorded for one request: when it was sent, when each streamed chunk arrived,
what the server's `usage` said, or why it failed. Times are seconds on the client's
`time.perf_counter()`, relative to the start of the benchmark run (only differences matter)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RequestOutcome:
    id: int
    success: bool
    sent_s: float
    # Arrival time of every chunk that carried a choice (vLLM counts each such chunk as one token
    # event, text or not); non-streamed: one entry, the time the whole body arrived.
    chunk_times_s: tuple[float, ...] = ()
    prompt_len: int = 0  # the server's usage.prompt_tokens, else the client's expected length
    output_tokens: int | None = None  # the server's usage.completion_tokens (None: not reported)
    reasoning_tokens: int | None = None  # usage.completion_tokens_details.reasoning_tokens
    generated_text: str = ""
    error: str = ""  # why it failed: HTTP status, malformed SSE, timeout, connection lost
    expected_output_len: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ttft_s(self) -> float:
        return self.chunk_times_s[0] - self.sent_s

    @property
    def latency_s(self) -> float:
        """E2EL: send to the last token-bearing chunk (the trailing usage chunk carries none)."""
        return self.chunk_times_s[-1] - self.sent_s

    @property
    def itl_s(self) -> list[float]:
        t = self.chunk_times_s
        return [t[i + 1] - t[i] for i in range(len(t) - 1)]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "success": self.success, "sent_s": self.sent_s,
            "chunk_times_s": list(self.chunk_times_s), "prompt_len": self.prompt_len,
            "output_tokens": self.output_tokens, "reasoning_tokens": self.reasoning_tokens,
            "expected_output_len": self.expected_output_len, "error": self.error,
        }
