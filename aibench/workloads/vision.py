"""Vision inference workloads: `vision.resnet50` and `vision.vit_b16`, eager torch vs torch.compile.

One call of a case is one inference forward pass over a batch of random images under
torch.inference_mode; throughput is images/s. FLOPs per call are counted once at setup by
FlopCounterMode on the meta device (aibench.models.vision.count_flops): ResNet-50 at 224x224 is
4.09 GMACs = 8.18 GFLOP per image, ViT-B/16 17.56 GMACs = 35.1 GFLOP per image. The check
compares the output with a copy of the same weights in higher precision (fp32; fp64 for an fp32
run) on the first few images.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from aibench.core.checks import Check, compare, tolerance_for
from aibench.core.errors import UsageError
from aibench.device import devices
from aibench.measure.case import Case, Param
from aibench.models import vision
from aibench.workloads.registry import workload

_DTYPES: dict[str, torch.dtype] = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
NUM_CLASSES = 1000
# Rows of the batch checked against the higher-precision copy: enough to catch a wrong kernel, few
# enough that its forward costs little next to setup (each image is independent in eval mode).
CHECK_IMAGES = 8


def _params(batch: int) -> tuple[Param, ...]:
    return (
        Param("batch", int, batch, "images per forward pass", preview=2),
        Param("image_size", int, 224, "input height and width in pixels", preview=64),
        Param("dtype", str, "bfloat16", "weights and activations", choices=tuple(_DTYPES), preview="float32"),
        Param("channels_last", bool, True, "NHWC memory format for images and conv weights"),
        Param("seed", int, 0, "seed of the random weights and images"),
    )


resnet50_wl = workload("vision.resnet50", "ResNet-50 inference (torchvision architecture), images/s", _params(256))
vit_b16_wl = workload("vision.vit_b16", "ViT-B/16 inference (torchvision architecture), images/s", _params(128))


def _compile_usable(device: torch.device) -> tuple[bool, str | None]:
    if device.type != "cuda":
        return False, "torch.compile backend runs on a GPU only (on a CPU it would time the C++ inductor)"
    return devices.triton_usable(device)


def _validate(name: str, p: dict[str, Any]) -> None:
    if p["batch"] < 1:
        raise UsageError(f"batch must be >= 1, got {p['batch']}")
    if p["image_size"] < 32:
        raise UsageError(f"image_size must be >= 32 (five stride-2 stages), got {p['image_size']}")
    if name == "vit_b16" and p["image_size"] % 16:
        raise UsageError(f"ViT-B/16 needs image_size a multiple of the 16-pixel patch, got {p['image_size']}")


def _reference_tolerance(dtype: str, device: torch.device) -> float:
    """Bound on the normwise error against the higher-precision copy (fp32; fp64 for an fp32 run).
    fp32 convolutions on NVIDIA GPUs run in TF32 by default (cudnn.allow_tf32), so an fp32 run on
    a GPU is held to the TF32 bound: 5e-3 against fp64 over 50 layers, unmeasured on a GPU (the
    next GPU run's `correctness.rel_error` says whether it holds).
    Measured on random weights: bf16 ~1.2e-2 (ViT) and 6e-3 (ResNet), fp16 ~1.6e-3: inside the
    per-dtype table with 2.5-3x headroom despite 50 layers."""
    if dtype == "float32" and device.type == "cuda" and (
        torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32
    ):
        return tolerance_for("tf32")
    return tolerance_for(dtype)


def _case(name: str, p: dict[str, Any], device: torch.device, compiled: bool) -> Case:
    _validate(name, p)
    dtype = _DTYPES[p["dtype"]]
    batch, size = p["batch"], p["image_size"]
    fmt = torch.channels_last if p["channels_last"] else torch.contiguous_format

    def build() -> torch.nn.Module:
        return vision.MODELS[name](size, p["seed"])

    flops = vision.count_flops(build, (batch, 3, size, size))
    model32 = build().eval()
    n_params = vision.param_count(model32)
    model = copy.deepcopy(model32).to(device=device, dtype=dtype, memory_format=fmt)
    # The reference runs in a higher precision than the timed model: fp32 for bf16/fp16, fp64 for
    # fp32 (an fp32 copy would run the very same kernels: error exactly 0, a check that cannot
    # fail). Its memory format does not matter: plain layout, which every fp64 kernel takes.
    ref_dtype = torch.float64 if dtype == torch.float32 else torch.float32
    reference = model32.to(device=device, dtype=ref_dtype)
    gen = torch.Generator(device=device).manual_seed(p["seed"] + 1)
    images32 = torch.randn(batch, 3, size, size, generator=gen, device=device).contiguous(memory_format=fmt)
    images = images32.to(dtype)
    runner: Any = torch.compile(model) if compiled else model

    def forward() -> torch.Tensor:
        with torch.inference_mode():
            return runner(images)

    if compiled:
        forward()  # compile now: setup is never timed

    tolerance = _reference_tolerance(p["dtype"], device)

    def check() -> Check:
        out = forward()
        devices.synchronize(device)
        if tuple(out.shape) != (batch, NUM_CLASSES):
            return Check(False, detail=f"output shape {tuple(out.shape)}, expected {(batch, NUM_CLASSES)}")
        if not torch.isfinite(out).all():
            return Check(False, detail="non-finite logits", tolerance=tolerance)
        k = min(batch, CHECK_IMAGES)
        with torch.inference_mode():
            ref = reference(images32[:k].to(ref_dtype).contiguous())
        return compare(out[:k].float(), ref, tolerance)

    return Case(
        fn=forward,
        check=check,
        flops=float(flops),
        work={"images": batch},
        dtype=p["dtype"],
        metrics=lambda median_s: {"images_per_s": batch / median_s},
        details={
            "model": name,
            "parameters": n_params,
            "flops_per_image": flops / batch,
            "flop_count": "torch.utils.flop_counter.FlopCounterMode on the meta device (conv, matmul, attention)",
            "weights": f"random, seed {p['seed']} (torchvision init)",
            "compiled": compiled,
        },
        # Eager forward passes neither sync nor read back: capturable. A compiled module's own
        # guards and graph management are left alone.
        cuda_graph_ok=not compiled,
    )


@resnet50_wl.backend("torch", baseline=True, description="eager PyTorch (cuDNN convolutions)")
def _resnet50_torch(p: dict[str, Any], device: torch.device) -> Case:
    return _case("resnet50", p, device, compiled=False)


@resnet50_wl.backend("torch.compile", available=_compile_usable, description="torch.compile (inductor, default mode)")
def _resnet50_compile(p: dict[str, Any], device: torch.device) -> Case:
    return _case("resnet50", p, device, compiled=True)


@vit_b16_wl.backend("torch", baseline=True, description="eager PyTorch (SDPA attention)")
def _vit_torch(p: dict[str, Any], device: torch.device) -> Case:
    return _case("vit_b16", p, device, compiled=False)


@vit_b16_wl.backend("torch.compile", available=_compile_usable, description="torch.compile (inductor, default mode)")
def _vit_compile(p: dict[str, Any], device: torch.device) -> Case:
    return _case("vit_b16", p, device, compiled=True)
