"""aibench.suite.model: loading, validation (file, line and key in every error) and plan expansion."""

from __future__ import annotations

import hashlib
import itertools
import random
import sys
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from aibench.core.errors import SuiteError, UsageError
from aibench.measure.case import Case, Param
from aibench.suite import model as suite_mod
from aibench.suite.check import SuiteFileError
from aibench.suite.load import list_suites, load_suite
from aibench.suite.model import PlanContext, RunRules
from aibench.workloads import registry

CPU = PlanContext()
ONE_GPU = PlanContext(gpus=1, fp8=True, is_gpu=True)
EIGHT_GPUS = PlanContext(gpus=8, fp8=False, is_gpu=True)
SHIPPED = ("gigafactory", "ci", "smoke")


@dataclass(frozen=True)
class ToyShape:
    m: int
    k: int

    @property
    def label(self) -> str:
        return f"m{self.m}k{self.k}"

    def params(self) -> dict[str, Any]:
        return {"m": self.m, "k": self.k}


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> Iterator[registry.Workload]:
    """A test-local workload `test.toy` with shape sets, removed from the registry afterwards."""
    registry.load_builtin()  # the real ones first, so that ours is not shadowed later
    wl = registry.workload("test.toy", "toy", [
        Param("m", int, 128, "rows", preview=8),
        Param("k", int, 64, "depth", preview=4),
        Param("dtype", str, "bfloat16", "type", choices=("bfloat16", "float32")),
        Param("flag", bool, False, "a switch"),
        Param("scale", float, 1.0, "a factor"),
    ])

    @wl.backend("torch", baseline=True)
    def _torch(p: dict[str, Any], device: torch.device) -> Case:
        return Case(fn=lambda: None)

    @wl.backend("alt")
    def _alt(p: dict[str, Any], device: torch.device) -> Case:
        return Case(fn=lambda: None)

    shapes = types.ModuleType("toy_shapes")
    shapes.TOY_SETS = {  # type: ignore[attr-defined]
        "two": [ToyShape(16, 32), ToyShape(48, 32)],
        "dup": [ToyShape(16, 32), ToyShape(16, 32), ToyShape(8, 8)],
        "bad": [types.SimpleNamespace(params=lambda: {"q": 1}, label="q")],  # not the workload's params
    }
    monkeypatch.setitem(sys.modules, "toy_shapes", shapes)
    monkeypatch.setattr(suite_mod, "SHAPES_MODULE", "toy_shapes")
    monkeypatch.setitem(suite_mod.SHAPE_SET_TABLES, "test.toy", "TOY_SETS")
    monkeypatch.setattr(suite_mod, "KNOWN_WORKLOADS", suite_mod.KNOWN_WORKLOADS | {"test.absent"})
    yield wl
    registry.REGISTRY.pop("test.toy", None)


HEAD = """\
[suite]
name = "toy"
version = "0.1"
description = "a toy suite"
"""


def write(tmp_path: Path, body: str, head: str = HEAD, name: str = "toy.toml") -> Path:
    path = tmp_path / name
    path.write_text(head + textwrap.dedent(body), encoding="utf-8")
    return path


def test_valid_suite_fields_rules_and_hash(tmp_path: Path, toy: registry.Workload) -> None:
    path = write(tmp_path, """
        [rules]
        min_time_s = 1
        min_samples = 20
        [quick.rules]
        min_time_s = 0.2
        [preview.rules]
        max_time_s = 0.5

        [[entry]]
        id = "a"
        workload = "test.toy"
        params = { dtype = "float32", scale = 2 }
    """)
    s = load_suite(path)
    assert (s.name, s.version, s.description) == ("toy", "0.1", "a toy suite")
    assert s.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert s.source == str(path)
    assert s.rules == RunRules(min_time_s=1.0, min_samples=20)
    assert isinstance(s.rules.min_time_s, float)
    # quick overlays full; preview overlays quick.
    assert s.rules_for("quick") == RunRules(min_time_s=0.2, min_samples=20)
    assert s.rules_for("preview") == RunRules(min_time_s=0.2, min_samples=20, max_time_s=0.5)
    with pytest.raises(UsageError, match="unknown suite mode"):
        s.rules_for("fast")
    with pytest.raises(UsageError, match="unknown suite mode"):
        s.plan("fast", CPU)
    (case,) = s.plan("full", CPU)
    assert case.case_id == "a" and case.params == {"dtype": "float32", "scale": 2}
    assert case.skip_reason is None and case.backends is None


def test_rules_convert_to_timer_config() -> None:
    cfg = RunRules(min_time_s=0.3, min_samples=7, max_time_s=3.0, cuda_graph=True).to_timer_config()
    assert (cfg.min_time_s, cfg.min_samples, cfg.max_time_s, cfg.cuda_graph) == (0.3, 7, 3.0, True)


def test_full_plan_shapes_times_sweep(tmp_path: Path, toy: registry.Workload) -> None:
    s = load_suite(write(tmp_path, """
        [[entry]]
        id = "g"
        workload = "test.toy"
        backends = ["alt"]
        params = { dtype = "float32" }
        shape_set = "two"
        sweep = { flag = [true, false], scale = [0.5, 2.0] }
    """))
    plan = s.plan("full", ONE_GPU)
    assert len(plan) == 2 * 2 * 2
    assert len({c.case_id for c in plan}) == len(plan)
    first = plan[0]
    assert first.case_id == "g/m=16,k=32,flag=true,scale=0.5"
    assert first.params == {"dtype": "float32", "m": 16, "k": 32, "flag": True, "scale": 0.5}
    assert all(c.backends == ("alt",) and c.workload == "test.toy" for c in plan)


def test_identical_shapes_are_measured_once(tmp_path: Path, toy: registry.Workload) -> None:
    s = load_suite(write(tmp_path, """
        [[entry]]
        id = "d"
        workload = "test.toy"
        shape_set = "dup"
        quick = { sweep = { m = [4] } }   # overlays every shape's m: (4, 32) twice, (4, 8)
    """))
    assert [c.case_id for c in s.plan("full", CPU)] == ["d/m=16,k=32", "d/m=8,k=8"]
    assert [c.case_id for c in s.plan("quick", CPU)] == ["d/m=4,k=32", "d/m=4,k=8"]


def test_quick_and_preview_overrides(tmp_path: Path, toy: registry.Workload) -> None:
    s = load_suite(write(tmp_path, """
        [[entry]]
        id = "e"
        workload = "test.toy"
        params = { m = 4096, dtype = "float32" }
        sweep = { k = [64, 128, 256] }
        [entry.quick]
        sweep = { k = [64] }
        params = { flag = true }
        backends = ["torch"]
        [entry.preview]
        params = { k = 3 }

        [[entry]]
        id = "f"
        workload = "test.toy"
        shape_set = "two"
        quick = { skip = true }
        preview = { skip = true }
    """))
    quick = s.plan("quick", CPU)
    assert [c.case_id for c in quick] == ["e/k=64", "f"]
    assert quick[0].params == {"m": 4096, "dtype": "float32", "flag": True, "k": 64}
    assert quick[0].backends == ("torch",)
    assert quick[1].skip_reason is not None and "quick.skip" in quick[1].skip_reason
    # Preview does not inherit the entry's full-size params: workload preview defaults + preview.params.
    preview = s.plan("preview", CPU)
    assert preview[0].case_id == "e" and preview[0].params == {"k": 3}
    assert preview[1].skip_reason is not None and "preview" in preview[1].skip_reason


@pytest.mark.parametrize(("requires", "ctx", "reason"), [
    ("{ gpus = 2 }", ONE_GPU, "needs 2 GPUs, 1 visible"),
    ("{ gpus = 2 }", EIGHT_GPUS, None),
    ("{ gpu = true }", CPU, "needs a GPU"),
    ("{ fp8 = true }", EIGHT_GPUS, "needs fp8"),
    ("{ fp8 = true }", ONE_GPU, None),
])
def test_requires(tmp_path: Path, toy: registry.Workload, requires: str, ctx: PlanContext,
                  reason: str | None) -> None:
    s = load_suite(write(tmp_path, f"""
        [[entry]]
        id = "r"
        workload = "test.toy"
        shape_set = "two"
        requires = {requires}
    """))
    plan = s.plan("full", ctx)
    if reason is None:
        assert len(plan) == 2 and all(c.skip_reason is None for c in plan)
    else:
        (case,) = plan  # one skipped case per entry, not one per shape
        assert case.case_id == "r" and case.skip_reason is not None and reason in case.skip_reason


def test_known_workload_missing_from_build_is_skipped_not_an_error(tmp_path: Path,
                                                                  toy: registry.Workload) -> None:
    s = load_suite(write(tmp_path, """
        [[entry]]
        id = "gone"
        workload = "test.absent"
        params = { whatever = 1 }   # cannot be checked without the workload: not an error
    """))
    (case,) = s.plan("full", ONE_GPU)
    assert case.skip_reason is not None
    assert "workload test.absent is not available in this build" in case.skip_reason


def test_random_sweeps_plan_the_full_product(tmp_path: Path, toy: registry.Workload) -> None:
    rng = random.Random(1234)
    for trial in range(5):
        ms = rng.sample(range(1, 500), rng.randint(1, 4))
        scales = [round(rng.uniform(0.1, 9.0), 3) for _ in range(rng.randint(1, 3))]
        scales = list(dict.fromkeys(scales))
        s = load_suite(write(tmp_path, f"""
            [[entry]]
            id = "p{trial}"
            workload = "test.toy"
            sweep = {{ m = {ms}, scale = {scales} }}
        """, name=f"p{trial}.toml"))
        plan = s.plan("full", CPU)
        assert len(plan) == len(ms) * len(scales)
        assert {(c.params["m"], c.params["scale"]) for c in plan} == set(itertools.product(ms, scales))
        assert len({c.case_id for c in plan}) == len(plan)


# ----------------------------------------------------------------------------- errors

ERROR_CASES = [
    # (body, line, key fragment, message fragment); HEAD is 4 lines, the body starts on line 5.
    ("x = [1,\n", 5, "key 'x'", "TOML syntax"),
    ("\n[rules]\nmin_time_s = = 1\n", 7, "key 'min_time_s'", "TOML syntax: Invalid value"),
    ("\n[suit]\nname = 1\n", 6, "key 'suit'", "unknown top-level key 'suit' (did you mean 'suite'?)"),
    ("\n[[entry]]\nid = \"a\"\nworkload = \"test.toy\"\nbakends = [\"torch\"]\n", 9, "key 'bakends'",
     "did you mean 'backends'?"),
    ("\n[[entry]]\nid = \"a\"\n", 6, "key 'workload'", "missing required key 'workload'"),
    ("\n[[entry]]\nid = 5\nworkload = \"test.toy\"\n", 7, "key 'id'", "expected a string, got integer 5"),
    ("\n[[entry]]\nid = \"Bad Id\"\nworkload = \"test.toy\"\n", 7, "key 'id'", "bad id 'Bad Id'"),
    ("\n[[entry]]\nid = \"a\"\nworkload = \"test.toy\"\n\n[[entry]]\nid = \"a\"\nworkload = \"test.toy\"\n",
     11, "entry #2 (id 'a') key 'id'", "duplicate entry id 'a' (first used by entry #1, line 7)"),
    ("\n[[entry]]\nid = \"a\"\nworkload = \"test.toi\"\n", 8, "key 'workload'",
     "unknown workload 'test.toi' (did you mean 'test.toy'?)"),
    ("\n[[entry]]\nid = \"a\"\nworkload = \"test.toy\"\nparams = { dtype = \"float32\", m = \"big\" }\n",
     9, "key 'params.m'", "parameter 'm' expects int, got 'big'"),
    ("\n[[entry]]\nid = \"a\"\nworkload = \"test.toy\"\nparams = { n = 3 }\n", 9, "key 'params.n'",
     "has no parameter 'n'"),
    ("\n[[entry]]\nid = \"a\"\nworkload = \"test.toy\"\nshape_set = \"three\"\n", 9, "key 'shape_set'",
     "unknown shape set 'three'"),
    ("\n[[entry]]\nid = \"a\"\nworkload = \"test.toy\"\nshape_set = \"bad\"\n", 9, "key 'shape_set'",
     "has no parameter 'q'"),
    ("\n[[entry]]\nid = \"a\"\nworkload = \"test.toy\"\nsweep = { m = 4 }\n", 9, "key 'sweep.m'",
     "a sweep axis is a non-empty array"),
    ("\n[[entry]]\nid = \"a\"\nworkload = \"test.toy\"\nsweep = { m = [4, 4] }\n", 9, "key 'sweep.m'",
     "listed twice"),
    ("\n[[entry]]\nid = \"a\"\nworkload = \"test.toy\"\nbackends = [\"torch\", \"cuda\"]\n", 9,
     "key 'backends'", "has no backend 'cuda'"),
    ("\n[[entry]]\nid = \"a\"\nworkload = \"test.toy\"\nrequires = { gpus = true }\n", 9,
     "key 'requires.gpus'", "expected an integer"),
    ("\n[[entry]]\nid = \"a\"\nworkload = \"test.toy\"\ntimer = { cuda_graph = 1 }\n", 9,
     "key 'timer.cuda_graph'", "expected a boolean"),
    ("\n[[entry]]\nid = \"a\"\nworkload = \"test.toy\"\ntimer = { cuda_graf = true }\n", 9,
     "key 'timer.cuda_graf'", "did you mean 'cuda_graph'?"),
    ("\n[[entry]]\nid = \"a\"\nworkload = \"test.toy\"\ntimer = { min_samples = 3 }\n", 9,
     "key 'timer.min_samples'", "allowed: cuda_graph, flush_l2"),
    ("\n[rules]\nmin_time_s = 0.1\nmin_samples = 1\n", 8, "key 'rules.min_samples'", "at least 2"),
    ("\n[rules]\nmin_tim_s = 0.1\n", 7, "key 'rules.min_tim_s'", "did you mean 'min_time_s'?"),
    # TOML has nan and inf; JSON (the manifest that records the rules) has neither.
    ("\n[rules]\nmin_time_s = nan\n", 7, "key 'rules.min_time_s'", "must be a finite number"),
    ("\n[rules]\nmax_time_s = inf\n", 7, "key 'rules.max_time_s'", "must be a finite number"),
    # What the timer itself refuses is said when the file loads, not as a traceback mid-run.
    ("\n[rules]\nmin_samples = 20000\n", 7, "key 'rules.min_samples'", "must be at most 10000"),
    ("\n[rules]\nmax_time_s = 4\n\n[quick.rules]\nmin_time_s = 9\n", 10, "key 'quick.rules.min_time_s'",
     "max_time_s must be positive and >= min_time_s"),
    ("\n[[entry]]\nid = \"a\"\nworkload = \"test.toy\"\n[entry.quick.params]\nk = 1\nm = \"x\"\n", 11,
     "key 'quick.params.m'", "expects int"),
    ("\n[[entry]]\nid = \"a\"\nworkload = \"test.toy\"\npreview.params.m = \"x\"\n", 9,
     "key 'preview.params.m'", "expects int"),
    ("\n[[entry]]\nid = \"a\"\nworkload = \"test.toy\"\nquick = { skip = true, sweep = { k = [1, \"z\"] } }\n",
     9, "key 'quick.sweep.k'", "expects int"),
    ("\n[entry]\nid = \"a\"\n", 6, "key 'entry'", "write [[entry]], not [entry]"),
    ("\n", 1, "key 'entry'", "at least one [[entry]]"),
]


@pytest.mark.parametrize(("body", "line", "key", "message"), ERROR_CASES)
def test_errors_name_file_line_and_key(tmp_path: Path, toy: registry.Workload, body: str, line: int,
                                       key: str, message: str) -> None:
    path = write(tmp_path, body, name="broken-suite.toml")
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    text = str(info.value)
    assert f"{path}:{line}:" in text, text
    assert key in text, text
    assert message in text, text


def test_all_problems_are_reported_at_once(tmp_path: Path, toy: registry.Workload) -> None:
    path = write(tmp_path, """
        [rules]
        seed = -1

        [[entry]]
        id = "a"
        workload = "test.toy"
        params = { m = "x" }

        [[entry]]
        id = "b"
        workload = "nope.nope"
    """)
    with pytest.raises(SuiteFileError) as info:
        load_suite(path)
    assert [(line, key) for line, key, _ in info.value.problems] == [
        (7, "key 'rules.seed'"), (12, "entry #1 (id 'a') key 'params.m'"), (16, "entry #2 (id 'b') key 'workload'"),
    ]
    assert "3 problem(s)" in str(info.value)


def test_missing_suite_head_and_non_utf8(tmp_path: Path, toy: registry.Workload) -> None:
    path = write(tmp_path, '[[entry]]\nid = "a"\nworkload = "test.toy"\n', head="")
    with pytest.raises(SuiteError, match=r"toy\.toml:1: key 'suite': missing required key 'suite'"):
        load_suite(path)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"[suite]\nname = \"caf\xe9\"\n")
    with pytest.raises(SuiteError, match=r"latin1\.toml: not UTF-8"):
        load_suite(bad)


def test_unknown_names_and_paths() -> None:
    with pytest.raises(SuiteError, match=r"unknown suite 'gigafactroy' \(shipped suites: .*gigafactory"):
        load_suite("gigafactroy")
    with pytest.raises(SuiteError, match=r"suite file not found: /nonexistent/x\.toml"):
        load_suite("/nonexistent/x.toml")


# ----------------------------------------------------------------------------- shipped suites


def test_list_suites_names_the_shipped_files() -> None:
    listed = {name: (version, description) for name, version, description in list_suites()}
    for name in SHIPPED:
        assert name in listed and listed[name][0] != "?" and listed[name][1]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_suites_load_and_plan(name: str) -> None:
    s = load_suite(name)
    assert s.name == name
    ids = [e.id for e in s.entries]
    assert len(ids) == len(set(ids))
    for mode in suite_mod.MODES:
        rules = s.rules_for(mode)
        rules.to_timer_config()  # the timer accepts them
        for ctx in (CPU, ONE_GPU, EIGHT_GPUS):
            plan = s.plan(mode, ctx)
            assert len({c.case_id for c in plan}) == len(plan)
            assert {c.entry_id for c in plan} == set(ids)
            for case in plan:
                assert case.skip_reason is None or case.skip_reason.strip()
    # Preview must run something on a CPU, and never a multi-GPU model.
    runnable = [c for c in s.plan("preview", CPU) if c.skip_reason is None]
    assert runnable and all("70b" not in c.case_id for c in runnable)


def test_entry_timer_overrides_reach_every_planned_case(tmp_path: Path, toy: registry.Workload) -> None:
    s = load_suite(write(tmp_path, """
        [[entry]]
        id = "graphed"
        workload = "test.toy"
        sweep = { m = [1, 64] }
        timer = { cuda_graph = true, flush_l2 = false }

        [[entry]]
        id = "plain"
        workload = "test.toy"
    """))
    graphed = {"cuda_graph": True, "flush_l2": False}
    for mode in ("full", "quick"):
        plan = {c.case_id: c for c in s.plan(mode, ONE_GPU)}
        assert plan["graphed/m=1"].timer == plan["graphed/m=64"].timer == graphed
        assert plan["plain"].timer == {}
    preview = {c.case_id: c for c in s.plan("preview", CPU)}  # preview does not inherit the sweep
    assert preview["graphed"].timer == graphed and preview["plain"].timer == {}


@pytest.mark.parametrize("name", ["gigafactory", "ci"])
def test_shipped_decode_entries_are_timed_as_graph_replays(name: str) -> None:
    s = load_suite(name)
    for entry in s.entries:
        decode = entry.workload in ("attention.decode", "llm.decode") or (
            entry.workload == "gemm" and max(entry.sweep.get("m", (1 << 30,))) <= 64)
        assert (entry.timer.get("cuda_graph") is True) == decode, entry.id


def test_gigafactory_content() -> None:
    s = load_suite("gigafactory")
    workloads = {e.workload for e in s.entries}
    for needed in ("gemm", "attention.prefill", "attention.decode", "memory.copy", "memory.triad",
                   "llm.prefill", "llm.decode", "llm.serve", "vision.resnet50", "vision.vit_b16",
                   "collective.all_reduce"):
        assert needed in workloads
    one_gpu = {c.entry_id: c for c in s.plan("full", ONE_GPU) if c.skip_reason}
    assert "needs 2 GPUs" in (one_gpu["llm-decode-llama-3.1-70b"].skip_reason or "")
    assert one_gpu["collective-all-reduce"].skip_reason
    assert len(s.plan("quick", ONE_GPU)) < len(s.plan("full", ONE_GPU))
    assert s.rules_for("quick").max_time_s <= s.rules.max_time_s


@pytest.mark.gpu
def test_plan_context_detects_this_gpu() -> None:
    ctx = PlanContext.detect()
    assert ctx.is_gpu and ctx.gpus == torch.cuda.device_count() >= 1
    if not torch.version.hip:
        assert ctx.fp8 == (torch.cuda.get_device_capability(0) >= (8, 9))


def test_skip_reason_carries_the_import_error(tmp_path: Path, toy: registry.Workload,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.LOAD_ERRORS, "aibench.workloads.test_absent", "ImportError: no flux capacitor")
    s = load_suite(write(tmp_path, '[[entry]]\nid = "x"\nworkload = "test.absent"\n'))
    (case,) = s.plan("full", ONE_GPU)
    assert case.skip_reason is not None and "no flux capacitor" in case.skip_reason


def test_an_unknown_sweep_axis_is_reported_once(tmp_path: Path, toy: registry.Workload) -> None:
    """`sweep = { mm = [1, 2, 3] }` named the unknown parameter three times, once per value."""
    path = write(tmp_path, """
        [[entry]]
        id = "a"
        workload = "test.toy"
        sweep = { mm = [1, 2, 3], k = [1, "z", "y"] }
    """)
    with pytest.raises(SuiteFileError) as info:
        load_suite(path)
    messages = [(key, message) for _, key, message in info.value.problems]
    assert len([m for k, m in messages if k.endswith("'sweep.mm'")]) == 1, messages
    assert "has no parameter 'mm' (did you mean 'm'?)" in str(info.value)
    assert len([m for k, m in messages if k.endswith("'sweep.k'")]) == 2  # two bad values: two messages


def test_a_param_every_shape_replaces_is_an_error(tmp_path: Path, toy: registry.Workload) -> None:
    """`params = { m = 1 }` over a shape set that sets m in every shape was silently dropped (the
    shape's m ran); the way to change a shape's value is a sweep."""
    path = write(tmp_path, """
        [[entry]]
        id = "a"
        workload = "test.toy"
        shape_set = "two"
        params = { m = 1, dtype = "float32" }
        quick = { params = { k = 2 } }
        preview = { shape_set = "two", params = { k = 3 } }
    """)
    with pytest.raises(SuiteFileError) as info:
        load_suite(path)
    keys = [key for _, key, _ in info.value.problems]
    assert keys == ["entry #1 (id 'a') key 'params.m'", "entry #1 (id 'a') key 'quick.params.k'",
                    "entry #1 (id 'a') key 'preview.params.k'"], keys
    assert "sweep" in info.value.problems[0][2]
    ok = write(tmp_path, """
        [[entry]]
        id = "a"
        workload = "test.toy"
        shape_set = "two"
        params = { dtype = "float32" }
        sweep = { m = [1] }
    """, name="ok.toml")
    assert [c.params["m"] for c in load_suite(ok).plan("full", CPU)] == [1]


def test_a_case_the_workload_cannot_take_is_named_when_the_suite_loads(tmp_path: Path) -> None:
    """Cross-parameter rules (heads a multiple of kv_heads) are checked on the planned cases, in
    every mode, before anything runs; each key alone is checked against the defaults."""
    path = write(tmp_path, """
        [[entry]]
        id = "gqa"
        workload = "attention.prefill"
        params = { heads = 6, kv_heads = 4 }
    """)
    with pytest.raises(SuiteFileError) as info:
        load_suite(path)
    assert "heads (6) must be a multiple of kv_heads (4)" in str(info.value) and "'gqa'" in str(info.value)
    swept = write(tmp_path, """
        [[entry]]
        id = "mqa"
        workload = "attention.prefill"
        params = { heads = 4, kv_heads = 4 }
        quick = { params = { heads = 4, kv_heads = 4 }, sweep = { kv_heads = [1, 3] } }
    """)
    with pytest.raises(SuiteFileError, match=r"key 'quick'.*multiple of kv_heads \(3\)"):
        load_suite(swept)
    ok = write(tmp_path, """
        [[entry]]
        id = "mha"
        workload = "attention.prefill"
        params = { heads = 4, kv_heads = 4 }
    """)
    assert load_suite(ok).entries[0].id == "mha"  # 4 alone is no multiple of the default 8: not an error
