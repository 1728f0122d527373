"""Networks: the Noise2Noise U-Net, an SRResNet, and the Zero-Shot Noise2Noise net.

Each takes a float tensor (B, C, H, W) with values around [0, 1] and returns one of
the same shape. `build_model(name, **kwargs)` makes one from the registry.
"""
from __future__ import annotations

import inspect

import torch
from torch import nn
import torch.nn.functional as F

MODELS: dict[str, type[nn.Module]] = {}


def register(name: str):
    """Class decorator adding an architecture to `MODELS` under `name`."""

    def wrap(cls):
        MODELS[name] = cls
        return cls

    return wrap


def build_model(name: str, **kwargs) -> nn.Module:
    """Instantiate the registered architecture `name` with its arguments."""
    if name not in MODELS:
        raise ValueError(f"unknown architecture {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


def describe(name: str) -> str:
    """One line on the registered architecture `name`: the first paragraph of its class docstring."""
    doc = (MODELS[name].__doc__ or name).strip().split("\n\n")[0]
    return " ".join(doc.split())


# What a checkpoint's config.json may set, and within which bounds (checked by n2n.checkpoint before anything is built).
# An architecture argument not named here keeps its default when a checkpoint is loaded.
ARG_BOUNDS: dict[str, tuple[int, int]] = {"in_channels": (1, 4), "out_channels": (1, 4), "features": (1, 256),
                                          "blocks": (1, 64)}


def allowed_args(name: str) -> dict[str, tuple[int, int]]:
    """The arguments of architecture `name` a checkpoint may set, each with its (low, high) bounds."""
    parameters = inspect.signature(MODELS[name].__init__).parameters
    return {key: ARG_BOUNDS[key] for key in parameters if key in ARG_BOUNDS}


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1)


@register("unet")
class UNet(nn.Module):
    """The U-Net of Lehtinen et al. 2018, appendix Table 2 (991,203 parameters RGB→RGB).

    Five 2× max-pool stages of 48 channels, nearest upsampling, skip concatenations,
    LeakyReLU(0.1) after every conv but the last. H and W must be multiples of 32
    (`infer.denoise` pads).
    """

    multiple = 32

    def __init__(self, in_channels: int = 3, out_channels: int = 3):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.enc_conv0 = _conv(in_channels, 48)
        self.enc_conv1 = _conv(48, 48)
        self.enc_conv2 = _conv(48, 48)
        self.enc_conv3 = _conv(48, 48)
        self.enc_conv4 = _conv(48, 48)
        self.enc_conv5 = _conv(48, 48)
        self.enc_conv6 = _conv(48, 48)
        self.dec_conv5a = _conv(96, 96)
        self.dec_conv5b = _conv(96, 96)
        self.dec_conv4a = _conv(144, 96)
        self.dec_conv4b = _conv(96, 96)
        self.dec_conv3a = _conv(144, 96)
        self.dec_conv3b = _conv(96, 96)
        self.dec_conv2a = _conv(144, 96)
        self.dec_conv2b = _conv(96, 96)
        self.dec_conv1a = _conv(96 + in_channels, 64)
        self.dec_conv1b = _conv(64, 32)
        self.dec_conv1c = _conv(32, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = lambda t: F.leaky_relu(t, 0.1, inplace=True)  # noqa: E731  (in place: −5 % time, less memory)
        pool, up = lambda t: F.max_pool2d(t, 2), lambda t: F.interpolate(t, scale_factor=2.0, mode="nearest")  # noqa: E731
        skips = [x]  # (B, C, H, W)
        h = act(self.enc_conv0(x))
        h = pool(act(self.enc_conv1(h)))  # (B, 48, H/2, W/2)
        skips.append(h)
        for conv in (self.enc_conv2, self.enc_conv3, self.enc_conv4):
            h = pool(act(conv(h)))
            skips.append(h)  # pool2, pool3, pool4
        h = pool(act(self.enc_conv5(h)))  # (B, 48, H/32, W/32)
        h = act(self.enc_conv6(h))
        for conv_a, conv_b in ((self.dec_conv5a, self.dec_conv5b), (self.dec_conv4a, self.dec_conv4b),
                               (self.dec_conv3a, self.dec_conv3b), (self.dec_conv2a, self.dec_conv2b)):
            h = torch.cat([up(h), skips.pop()], dim=1)
            h = act(conv_b(act(conv_a(h))))
        h = torch.cat([up(h), skips.pop()], dim=1)  # (B, 96 + C, H, W)
        h = act(self.dec_conv1b(act(self.dec_conv1a(h))))
        return self.dec_conv1c(h)


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            _conv(channels, channels), nn.BatchNorm2d(channels), nn.LeakyReLU(0.2),
            _conv(channels, channels), nn.BatchNorm2d(channels))

    def forward(self, x):
        return x + self.body(x)


@register("srresnet")
class SRResNet(nn.Module):
    """SRResNet without upsampling (Ledig et al. 2017): conv, 16 residual blocks with
    BatchNorm and LeakyReLU(0.2), conv + BatchNorm, global skip, output conv."""

    multiple = 1

    def __init__(self, in_channels: int = 3, out_channels: int = 3, features: int = 64, blocks: int = 16):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.head = nn.Sequential(_conv(in_channels, features), nn.LeakyReLU(0.2))
        self.body = nn.Sequential(*[_ResidualBlock(features) for _ in range(blocks)],
                                  _conv(features, features), nn.BatchNorm2d(features))
        self.tail = _conv(features, out_channels)

    def forward(self, x):
        h = self.head(x)
        return self.tail(h + self.body(h))


@register("zsn2n")
class ZeroShotNet(nn.Module):
    """The ~22k-parameter net of Zero-Shot Noise2Noise (Mansour & Heckel, CVPR 2023):
    two 3×3 convs of 48 channels with LeakyReLU(0.2) and a 1×1 output conv; it predicts
    the noise, the output is the input minus it."""

    multiple = 1

    def __init__(self, in_channels: int = 3, out_channels: int = 3, features: int = 48):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.conv1 = _conv(in_channels, features)
        self.conv2 = _conv(features, features)
        self.conv3 = nn.Conv2d(features, out_channels, 1)

    def forward(self, x):
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = F.leaky_relu(self.conv2(h), 0.2)
        return x - self.conv3(h)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
