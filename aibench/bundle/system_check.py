"""Does the vendor's system description agree with the environment fingerprint it was measured in?

The description is the vendor's prose (MLPerf field names); the fingerprint is what aibench read from
the driver. Model names are written differently on each side ("NVIDIA H100-SXM-80GB" against
"NVIDIA H100 80GB HBM3"), so only the model identifiers (H100, MI300X, B200...) are compared: a
description naming none of the identifiers the driver reported contradicts it. The fingerprint is
recomputed from the manifest's environment, never read from the description's own measured_differs.
"""

from __future__ import annotations

import re
from typing import Any

from aibench.bundle.findings import Finding, error
from aibench.bundle.layout import MANIFEST
from aibench.device.system import fields_from_environment

# A model identifier: letters then digits, e.g. H100, GH200, MI300X, A100, L40S, B200, V5E.
_MODEL_ID = re.compile(r"\b([A-Z]{1,3}\d{1,4}[A-Z]{0,2})\b")

_NOT_MODELS = ("HBM", "DDR", "GDDR", "LPDDR", "NPS", "SPX", "CPX", "DPX", "QPX", "GEN", "PCIE", "SXM", "NVL")


def model_ids(name: str) -> set[str]:
    ids = set(_MODEL_ID.findall(re.sub(r"[-_/,()+]", " ", name.upper())))
    return {i for i in ids if not i.startswith(_NOT_MODELS)}  # memory kinds and partition modes name no model


def system_findings(manifest: dict[str, Any]) -> list[Finding]:
    system, env = manifest.get("system"), manifest.get("environment")
    if not isinstance(system, dict) or not isinstance(env, dict) or not isinstance(env.get("gpus"), list):
        return []  # no description, or a fingerprint that did not look for GPUs: nothing to contradict
    measured = fields_from_environment(env)
    out: list[Finding] = []
    count, claimed = measured.get("accelerators_per_node", 0), system.get("accelerators_per_node")
    if isinstance(claimed, str) and claimed.isdigit():
        claimed = int(claimed)
    if isinstance(claimed, int) and not isinstance(claimed, bool) and claimed != count:
        out.append(error("system_mismatch", f"the system description says accelerators_per_node = {claimed}, "
                         f"the environment fingerprint found {count}", member=MANIFEST))
    name, seen = system.get("accelerator_model_name"), measured.get("accelerator_model_name")
    if isinstance(name, str) and isinstance(seen, str):
        said, found = model_ids(name), model_ids(seen)
        if said and found and not said & found:
            out.append(error("system_mismatch", f"the system description names accelerator {name!r}, the "
                             f"environment fingerprint found {seen!r}", member=MANIFEST))
    return out
