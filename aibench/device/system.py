"""The system description: what was benchmarked, in MLPerf Inference's field names.

A vendor writes a TOML or JSON file with the fields of aibench/schemas/system.schema.json (the
required ones are MLPerf's, ../shared/reference/methods.md). `build_system_description` fills
what the environment fingerprint (aibench.device.env) knows -- accelerator model, count and memory,
host processor, host memory, operating system, framework -- unless the file gives it: the file
wins, and where it disagrees with what was measured, "measured_differs" keeps the measured value.

Three bookkeeping keys travel with the fields: "source" (the file, or None), "auto_filled" (the
fields taken from the fingerprint) and "missing" (required fields nobody gave). Without a file a
partial description comes back with its "missing" list (a run without --system is allowed, just
not a submission); with a file, a missing or malformed field is an error naming every field.
"""

from __future__ import annotations

import importlib.resources
import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from aibench.core.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_COUNT_FIELDS = ("number_of_nodes", "host_processors_per_node", "host_processor_core_count", "accelerators_per_node")
_META_FIELDS = ("source", "auto_filled", "missing", "measured_differs")
_GIB = 1024**3


class SystemDescriptionError(UsageError):
    """A system description file that cannot be read or does not validate."""

    def __init__(self, message: str, missing: list[str] | None = None, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.missing = list(missing or [])
        self.problems = list(problems or [])


@cache
def schema() -> dict[str, Any]:
    text = importlib.resources.files("aibench.schemas").joinpath("system.schema.json").read_text("utf-8")
    return json.loads(text)


def required_fields() -> list[str]:
    return list(schema()["required"])


def build_system_description(path: str | Path | None, env: dict[str, Any]) -> dict[str, Any]:
    """The description of the system under test (see the module docstring)."""
    given = read_system_file(path) if path is not None else {}
    measured = fields_from_environment(env)
    merged = {**measured, **given}
    auto = sorted(k for k in measured if k not in given)
    problems = _problems(merged)
    if path is None:
        # Nothing the vendor wrote: a measured value that does not validate is dropped, not fixed.
        bad = {p.split(":", 1)[0] for p in problems}
        merged = {k: v for k, v in merged.items() if k not in bad}
        auto = [k for k in auto if k not in bad]
    missing = [f for f in required_fields() if f not in merged]
    if path is not None and (missing or problems):
        lines = []
        if missing:
            lines.append(f"missing required fields: {', '.join(missing)}")
        lines.extend(problems)
        raise SystemDescriptionError(f"system description {path}: " + "; ".join(lines), missing, problems)
    out = {k: (int(v) if k in _COUNT_FIELDS else v) for k, v in merged.items()}
    differs = {k: measured[k] for k in measured if k in given and _norm(given[k]) != _norm(measured[k])}
    out.update(source=str(path) if path is not None else None, auto_filled=auto, missing=missing,
               measured_differs=differs)
    return out


def read_system_file(path: str | Path) -> dict[str, Any]:
    """The fields of a TOML or JSON file (by suffix; otherwise JSON, then TOML). Nulls are dropped."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SystemDescriptionError(f"cannot read system description {p}: {reason}") from None
    suffix = p.suffix.lower()
    data: Any = None
    errors: list[str] = []
    for kind in (("toml",) if suffix == ".toml" else ("json",) if suffix == ".json" else ("json", "toml")):
        try:
            data = tomllib.loads(text) if kind == "toml" else json.loads(text)
            break
        except tomllib.TOMLDecodeError as exc:
            errors.append(f"not valid TOML: {exc}")
        except json.JSONDecodeError as exc:
            errors.append(f"not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}")
    if data is None:
        raise SystemDescriptionError(f"system description {p}: {'; '.join(errors)}")
    if not isinstance(data, dict):
        raise SystemDescriptionError(f"system description {p}: expected an object of fields, got {type(data).__name__}")
    clash = [k for k in _META_FIELDS if k in data]
    if clash:
        raise SystemDescriptionError(f"system description {p}: {', '.join(clash)} are set by aibench, not by the file")
    return {k: v for k, v in data.items() if v is not None}


def fields_from_environment(env: dict[str, Any]) -> dict[str, Any]:
    """The description fields an environment fingerprint can vouch for; nothing else."""
    out: dict[str, Any] = {}
    gpus = [g for g in env.get("gpus") or [] if isinstance(g, dict)]
    if gpus:
        out["accelerators_per_node"] = len(gpus)
        names = _distinct(g.get("name") for g in gpus)
        if names:
            out["accelerator_model_name"] = " + ".join(names)
        memories = _distinct(_gib(g.get("memory_total_bytes")) for g in gpus)
        if memories and all(g.get("memory_total_bytes") for g in gpus):
            out["accelerator_memory_capacity"] = " + ".join(memories)
        links = _distinct(_pcie(g) for g in gpus)
        if links and all(_pcie(g) for g in gpus):
            out["accelerator_host_interconnect"] = " + ".join(links)
    cpu = env.get("cpu") or {}
    if cpu.get("model"):
        out["host_processor_model_name"] = cpu["model"]
    sockets, cores = cpu.get("sockets"), cpu.get("physical_cores")
    if isinstance(sockets, int) and sockets > 0:
        out["host_processors_per_node"] = sockets
        if isinstance(cores, int) and cores > 0 and cores % sockets == 0:
            out["host_processor_core_count"] = cores // sockets  # MLPerf: cores per processor
    memory = _gib((env.get("memory") or {}).get("total_bytes"))
    if memory:
        out["host_memory_capacity"] = memory
    system = env.get("os") or {}
    kernel = f"{system.get('system') or 'kernel'} {system['kernel']}" if system.get("kernel") else None
    if system.get("distribution"):
        out["operating_system"] = system["distribution"] + (f" ({kernel})" if kernel else "")
    elif kernel:
        out["operating_system"] = kernel
    sw = env.get("software") or {}
    if sw.get("torch"):
        parts = [f"PyTorch {sw['torch']}"]
        parts += [f"{label} {sw[key]}" for key, label in (("cuda_runtime", "CUDA"), ("hip_runtime", "ROCm"),
                                                          ("triton", "Triton")) if sw.get(key)]
        out["framework"] = ", ".join(parts)
    stack = [f"{label} {sw[key]}" for key, label in (("driver_version", "driver"), ("cudnn", "cuDNN"),
                                                     ("nccl", "NCCL")) if sw.get(key)]
    if (env.get("python") or {}).get("version"):
        stack.append(f"Python {env['python']['version']}")
    if (env.get("aibench") or {}).get("version"):
        stack.append(f"aibench {env['aibench']['version']}")
    if stack:
        out["other_software_stack"] = ", ".join(stack)
    return out


def _problems(fields: dict[str, Any]) -> list[str]:
    """'field: message' for each value the schema rejects (missing fields are listed apart)."""
    validator = jsonschema.Draft202012Validator(schema())
    out = []
    for error in sorted(validator.iter_errors(fields), key=lambda e: list(e.absolute_path)):
        if error.validator == "required":
            continue
        name = ".".join(str(p) for p in error.absolute_path) or "(description)"
        if name in _COUNT_FIELDS:
            least = 0 if name == "accelerators_per_node" else 1  # 0: a CPU-only system, as MLPerf allows
            out.append(f"{name}: expected a whole number >= {least}, got {error.instance!r}")
        else:
            out.append(f"{name}: {error.message}")
    return out


def _distinct(values: Any) -> list[str]:
    return list(dict.fromkeys(str(v) for v in values if v))


def _gib(value: Any) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        return None
    return f"{value / _GIB:.1f} GiB"  # as measured (80 GB cards report ~79.6 GiB), never rounded up


def _pcie(gpu: dict[str, Any]) -> str | None:
    gen, width = gpu.get("pcie_max_link_gen"), gpu.get("pcie_max_link_width")
    return f"PCIe Gen{gen} x{width}" if gen and width else None


def _norm(value: Any) -> str:
    return str(value).strip().lower()


# The fields fields_from_environment can fill at run time: a file may leave them out.
_ENV_FILLED = ("accelerators_per_node", "accelerator_model_name", "accelerator_memory_capacity",
               "accelerator_host_interconnect", "host_processor_model_name", "host_processors_per_node",
               "host_processor_core_count", "host_memory_capacity", "operating_system", "framework",
               "other_software_stack")


def validate_system_file(path: str | Path) -> dict[str, Any]:
    """Check a system description file without an environment (`suite --plan --system FILE`).

    The same errors as a run gives, except for the fields a run fills from the fingerprint.
    """
    given = read_system_file(path)
    problems = _problems(given)
    missing = [f for f in required_fields() if f not in given and f not in _ENV_FILLED]
    if missing or problems:
        lines = [f"missing required fields: {', '.join(missing)}"] if missing else []
        lines.extend(problems)
        raise SystemDescriptionError(f"system description {path}: " + "; ".join(lines), missing, problems)
    return given
