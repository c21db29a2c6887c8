"""Test configuration. TRITON_INTERPRET must be set before triton is first imported, so that the
Triton kernels run on the CPU through the interpreter (../shared/reference/triton-interpreter.md).
On a GPU machine, AIBENCH_TEST_GPU=1 keeps the real compiler (for the `gpu` tier)."""

from __future__ import annotations

import os

if os.environ.get("AIBENCH_TEST_GPU") != "1":
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available() and os.environ.get("AIBENCH_TEST_GPU") == "1":
        return
    skip = pytest.mark.skip(reason="needs a CUDA/ROCm GPU and AIBENCH_TEST_GPU=1")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

