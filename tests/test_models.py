import pytest
import torch

from n2n.models import MODELS, build_model, count_parameters


def test_unet_matches_the_paper():
    assert count_parameters(build_model("unet")) == 991_203
    relus = [m for m in build_model("unet").modules() if isinstance(m, torch.nn.ReLU)]
    assert not relus  # LeakyReLU(0.1) only, functional


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("channels", [1, 3])
def test_every_model_runs(name, channels):
    model = build_model(name, in_channels=channels, out_channels=channels).eval()
    x = torch.rand(2, channels, 64, 64)
    with torch.inference_mode():
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_unet_last_layer_is_linear():
    model = build_model("unet").eval()
    with torch.inference_mode():
        y = model(torch.rand(1, 3, 32, 32) * 10)
    assert (y < 0).any()  # no activation clamps the output


def test_unknown_architecture():
    with pytest.raises(ValueError, match="choose one of"):
        build_model("resnet9000")
