"""ResNet-50 and ViT-B/16 in plain torch (torchvision cannot be installed against this torch).

Both follow torchvision's architectures layer for layer, so their parameter counts match
torchvision's published ones: ResNet-50 25,557,032 (Bottleneck v1.5: stride on the 3x3 conv) and
ViT-B/16 86,567,656 at 224x224 with 1000 classes. Weights are random (a fixed seed), initialised
as torchvision does, except ViT's classifier head, which torchvision zero-initialises for
fine-tuning: zero logits would make every correctness check vacuous, so it gets a small normal
init. FLOPs come from `count_flops` (torch's FlopCounterMode on the meta device: matmuls,
convolutions and attention, the operations that dominate; normalisation, activations and pooling
are left out, as in the usual "GMACs x 2" figures).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# -- ResNet-50 ---------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, torchvision's "v1.5"), 1x1 expand by 4, residual."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + identity)


class ResNet(nn.Module):
    def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3), num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages: list[nn.Module] = []
        inplanes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else 2
            stage = [Bottleneck(inplanes, planes, stride)]
            inplanes = planes * Bottleneck.expansion
            stage += [Bottleneck(inplanes, planes) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(512 * Bottleneck.expansion, num_classes)
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, classes]
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet50(num_classes: int = 1000, seed: int = 0) -> ResNet:
    torch.manual_seed(seed)
    return ResNet((3, 4, 6, 3), num_classes)


# -- ViT-B/16 ----------------------------------------------------------------------------------


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + MHSA(LN(x)), then x + MLP(LN(x)); LayerNorm eps 1e-6."""

    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)  # = nn.MultiheadAttention's in_proj (weight + bias)
        self.proj = nn.Linear(dim, dim)  # = its out_proj
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.fc2 = nn.Linear(mlp_dim, dim)
        for fc in (self.fc1, self.fc2):  # torchvision's MLPBlock init
            nn.init.xavier_uniform_(fc.weight)
            nn.init.normal_(fc.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, N, D]
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln_1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v)  # [B, H, N, hd]
        x = x + self.proj(att.transpose(1, 2).reshape(b, n, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln_2(x))))


class VisionTransformer(nn.Module):
    def __init__(
        self,
        image_size: int = 224,
        patch: int = 16,
        layers: int = 12,
        heads: int = 12,
        dim: int = 768,
        mlp_dim: int = 3072,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        if image_size % patch:
            raise ValueError(f"image size {image_size} is not a multiple of the patch size {patch}")
        self.patch = patch
        self.conv_proj = nn.Conv2d(3, dim, patch, stride=patch)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        seq = (image_size // patch) ** 2 + 1
        self.pos_embedding = nn.Parameter(torch.empty(1, seq, dim).normal_(std=0.02))
        self.blocks = nn.Sequential(*(EncoderBlock(dim, heads, mlp_dim) for _ in range(layers)))
        self.ln = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
        fan_in = 3 * patch * patch
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        nn.init.normal_(self.head.weight, std=0.02)  # not zero (torchvision's): see module docstring
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, classes]
        x = self.conv_proj(x).flatten(2).transpose(1, 2)  # [B, N, D]
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embedding
        return self.head(self.ln(self.blocks(x))[:, 0])


def vit_b16(image_size: int = 224, num_classes: int = 1000, seed: int = 0) -> VisionTransformer:
    torch.manual_seed(seed)
    return VisionTransformer(image_size=image_size, num_classes=num_classes)


# -- counting ----------------------------------------------------------------------------------


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(build: Callable[[], nn.Module], input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass, counted by FlopCounterMode on the meta device (no memory, no
    compute): 2 per multiply-add of every convolution, matmul and attention product."""
    with torch.device("meta"):
        model = build().eval()
        x = torch.empty(input_shape)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return int(counter.get_total_flops())


MODELS: dict[str, Callable[[int, int], nn.Module]] = {
    "resnet50": lambda image_size, seed: resnet50(seed=seed),
    "vit_b16": lambda image_size, seed: vit_b16(image_size, seed=seed),
}
