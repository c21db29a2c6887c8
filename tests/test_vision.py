"""ResNet-50 / ViT-B/16: exact torchvision parameter counts, FLOP counts, and the workloads on CPU."""

from __future__ import annotations

import math

import pytest
import torch

from aibench.core.errors import UsageError
from aibench.models import vision
from aibench.workloads import vision as vision_wl


def test_resnet50_matches_torchvision_parameter_count() -> None:
    model = vision.resnet50()
    assert vision.param_count(model) == 25_557_032
    assert [len(s) for s in (model.layer1, model.layer2, model.layer3, model.layer4)] == [3, 4, 6, 3]


def test_vit_b16_matches_torchvision_parameter_count() -> None:
    model = vision.vit_b16(224)
    assert vision.param_count(model) == 86_567_656
    assert model.pos_embedding.shape == (1, 197, 768)  # 14 x 14 patches + class token


def test_flop_counts_match_published_gmacs() -> None:
    # torchvision's model cards: ResNet-50 4.09 GMACs, ViT-B/16 17.56 GMACs per 224x224 image.
    r = vision.count_flops(lambda: vision.resnet50(), (2, 3, 224, 224))
    assert r / 2 / 2e9 == pytest.approx(4.09, abs=0.01)
    v = vision.count_flops(lambda: vision.vit_b16(224), (1, 3, 224, 224))
    assert v / 2e9 == pytest.approx(17.56, abs=0.01)
    # ViT's MLP and projections scale with the token count: 17 tokens at 64x64.
    small = vision.count_flops(lambda: vision.vit_b16(64), (1, 3, 64, 64))
    assert small < v / 10


def test_seeded_weights_are_deterministic() -> None:
    a, b, c = vision.resnet50(seed=3), vision.resnet50(seed=3), vision.resnet50(seed=4)
    assert torch.equal(a.fc.weight, b.fc.weight)
    assert not torch.equal(a.fc.weight, c.fc.weight)


def test_vit_rejects_non_multiple_image_size() -> None:
    with pytest.raises(ValueError, match="multiple"):
        vision.vit_b16(100)


def _run(wl_name: str, backend: str, **overrides: object) -> tuple[object, object]:
    wl = vision_wl.resnet50_wl if wl_name == "resnet50" else vision_wl.vit_b16_wl
    params = wl.resolve_params(overrides, preview=True)
    case = wl.get_backend(backend).setup(params, torch.device("cpu"))
    return case, params


@pytest.mark.parametrize("name", ["resnet50", "vit_b16"])
def test_preview_case_forward_check_and_counts(name: str) -> None:
    case, params = _run(name, "torch")
    assert params["batch"] == 2 and params["image_size"] == 64 and params["dtype"] == "float32"
    out = case.fn()
    assert out.shape == (2, 1000) and torch.isfinite(out).all()
    check = case.check()
    assert check.passed, check.detail
    assert case.work == {"images": 2}
    per_image = vision.count_flops(lambda: vision.MODELS[name](64, 0), (1, 3, 64, 64))
    assert case.flops == pytest.approx(2 * per_image)
    assert case.metrics(0.5) == {"images_per_s": 4.0}
    assert case.details["parameters"] > 1e7


@pytest.mark.parametrize(("name", "dtype"), [("resnet50", "bfloat16"), ("vit_b16", "float16")])
def test_reduced_precision_is_close_to_fp32(name: str, dtype: str) -> None:
    case, _ = _run(name, "torch", dtype=dtype, batch=3, channels_last=False)
    assert case.fn().dtype == getattr(torch, dtype)
    check = case.check()
    assert check.passed, check.detail
    assert 0 < check.rel_error < check.tolerance


@pytest.mark.parametrize(
    ("name", "overrides"),
    [("vit_b16", {"image_size": 72}), ("resnet50", {"image_size": 16}), ("resnet50", {"batch": 0})],
)
def test_bad_params(name: str, overrides: dict) -> None:
    with pytest.raises(UsageError):
        _run(name, "torch", **overrides)


def test_compile_backend_is_gpu_only() -> None:
    ok, why = vision_wl.resnet50_wl.get_backend("torch.compile").available(torch.device("cpu"))
    assert not ok and "GPU" in (why or "")
    assert vision_wl.vit_b16_wl.baseline_name == "torch"


def test_flops_per_image_at_224_in_details_are_meta_counted() -> None:
    # Setup at 224 is cheap for the FLOP count: it never runs on real tensors.
    flops = vision.count_flops(lambda: vision.resnet50(), (1, 3, 224, 224))
    assert math.isclose(flops, 8_178_368_512, rel_tol=1e-3)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["resnet50", "vit_b16"])
def test_gpu_compile_matches_fp32(name: str) -> None:
    wl = vision_wl.resnet50_wl if name == "resnet50" else vision_wl.vit_b16_wl
    params = wl.resolve_params({"batch": 16, "dtype": "bfloat16"})
    case = wl.get_backend("torch.compile").setup(params, torch.device("cuda"))
    check = case.check()
    assert check.passed, check.detail


@pytest.mark.parametrize("name", ["resnet50", "vit_b16"])
def test_fp32_check_uses_an_independent_reference(name: str) -> None:
    # An fp32 model compared with an fp32 copy of itself runs the same kernels: error exactly 0,
    # a check that cannot fail. The reference of an fp32 run is computed in fp64.
    case, _ = _run(name, "torch")
    check = case.check()
    assert check.passed, check.detail
    assert 0 < check.rel_error < check.tolerance
