"""The frame trunk: a torchvision ResNet without its pooling and classifier, or a tiny CNN for CPU tests.

Every trunk maps frames (F, 3, H, W) to a grid of cells (F, D, h, w). ImageNet weights come from a local
file in torchvision's state_dict format; nothing is ever downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

RESNETS = {
    "resnet50": (torchvision.models.resnet50, 2048),
    "resnet18": (torchvision.models.resnet18, 512),
}
TRUNKS = (*RESNETS, "tiny")


class ResNetTrunk(nn.Module):
    """conv1 + the four residual stages of a torchvision ResNet; 256×128 input gives an 8×4 grid at stride 2."""

    def __init__(self, arch: str, last_stride: int = 2, weights_path: str | Path | None = None) -> None:
        super().__init__()
        if arch not in RESNETS:
            raise ValueError(f"unknown ResNet trunk {arch!r}; choose one of {sorted(RESNETS)}")
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
        factory, self.out_dim = RESNETS[arch]
        resnet = factory(weights=None)
        if weights_path is not None:
            load_trunk_weights(resnet, weights_path)
        if last_stride == 1:
            # The first block of the last stage halves the grid in its strided conv and its shortcut.
            for module in resnet.layer4[0].modules():
                if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
                    module.stride = (1, 1)
        self.body = nn.Sequential(
            resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool,
            resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4,
        )  # fmt: skip

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (F, 3, H, W) -> cells (F, D, h, w)."""
        return self.body(frames)


class TinyTrunk(nn.Module):
    """Five stride-2 conv blocks (total stride 32 like a ResNet): a trunk small enough for CPU tests."""

    def __init__(self, out_dim: int = 64, last_stride: int = 2) -> None:
        super().__init__()
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
        widths = [16, 24, 32, 48, out_dim]
        strides = [2, 2, 2, 2, last_stride]
        layers: list[nn.Module] = []
        in_dim = 3
        for width, stride in zip(widths, strides, strict=True):
            layers += [nn.Conv2d(in_dim, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
            in_dim = width
        self.body = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (F, 3, H, W) -> cells (F, D, h, w)."""
        return self.body(frames)


def load_trunk_weights(resnet: nn.Module, weights_path: str | Path) -> None:
    """Load an ImageNet checkpoint (torchvision state_dict) into `resnet`; the classifier `fc.*` is ignored."""
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weights {path} not found: pass a local torchvision state_dict file "
            "(e.g. resnet50-11ad3fa6.pth) or leave pretrained_weights empty to train from scratch"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("fc.")}
    expected = {k: v.shape for k, v in resnet.state_dict().items() if not k.startswith("fc.")}
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    wrong_shape = sorted(k for k in expected.keys() & state.keys() if state[k].shape != expected[k])
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"{path} does not match the trunk's architecture (missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"wrong shape {wrong_shape[:3]}): use the weights of the same ResNet depth in torchvision's "
            "state_dict format"
        )
    resnet.load_state_dict(state, strict=False)  # strict except for the classifier we drop


def build_trunk(
    name: str, last_stride: int = 2, weights_path: str | Path | None = None, tiny_dim: int = 64
) -> ResNetTrunk | TinyTrunk:
    """The trunk called `name` (one of TRUNKS)."""
    if name == "tiny":
        if weights_path is not None:
            raise ValueError("the tiny trunk has no pretrained weights; set pretrained_weights to null")
        return TinyTrunk(out_dim=tiny_dim, last_stride=last_stride)
    if name not in RESNETS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {list(TRUNKS)}")
    return ResNetTrunk(name, last_stride=last_stride, weights_path=weights_path)
