"""The compiled record check (fastjsonschema, draft-07) agrees with jsonschema (draft 2020-12)."""

from __future__ import annotations

import copy
import json
from importlib import resources
from typing import Any

import jsonschema
import pytest
from bundle_helpers import record

from aibench.measure import records


def test_the_schema_uses_only_keywords_both_drafts_read_alike() -> None:
    schema = json.loads(resources.files("aibench.schemas").joinpath("record.schema.json").read_text("utf-8"))
    assert records.schema_keywords(schema) <= records.DRAFT7_SAFE_KEYWORDS
    assert records._compiled_record_check() is not None


def _broken() -> list[tuple[str, dict[str, Any]]]:
    base = record()
    cases: list[tuple[str, dict[str, Any]]] = []
    def change(name: str, fn: Any) -> None:
        rec = copy.deepcopy(base)
        fn(rec)
        cases.append((name, rec))
    change("status not in enum", lambda r: r.update(status="great"))
    change("missing id", lambda r: r.pop("id"))
    change("extra top-level key", lambda r: r.update(bonus=1))
    change("sample is zero", lambda r: r["timing"]["samples_s"].__setitem__(3, 0.0))
    change("sample is a bool", lambda r: r["timing"]["samples_s"].__setitem__(0, True))
    change("sample is a string", lambda r: r["timing"]["samples_s"].__setitem__(0, "1e-3"))
    change("n is a bool", lambda r: r["timing"].update(n=True))
    change("timing is a list", lambda r: r.update(timing=[]))
    change("kind wrong", lambda r: r.update(kind="aibench.run"))
    change("preview is a string", lambda r: r.update(preview="no"))
    return cases


def test_a_valid_record_passes_both() -> None:
    rec = record()
    assert records.passes_record_schema(rec)
    records.record_validator().validate(rec)
    records.validate(rec)


@pytest.mark.parametrize(("name", "rec"), _broken(), ids=[n for n, _ in _broken()])
def test_a_broken_record_fails_both_and_jsonschema_names_it(name: str, rec: dict[str, Any]) -> None:
    full = jsonschema.Draft202012Validator(records.record_schema())
    assert list(full.iter_errors(rec)), f"{name}: the full schema should reject it"
    assert not records.passes_record_schema(rec)
    with pytest.raises(jsonschema.ValidationError):
        records.validate(rec)
