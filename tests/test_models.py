import pytest
import torch
import torch.nn.functional as F

from n2n.models import MODELS, build_model, count_parameters


def test_unet_matches_the_paper():
    assert count_parameters(build_model("unet")) == 991_203


def test_unet_activation_is_leaky_relu_0_1_after_every_conv_but_the_last():
    """What each conv hands on is LeakyReLU(0.1) of its output (through the pool, or the upsampling
    into the next stage's concatenation), read with hooks on the real forward pass; the last conv is linear."""
    torch.manual_seed(0)
    model = build_model("unet").eval()
    outputs, inputs = {}, {}
    for name, conv in model.named_children():  # hooks copy: the activations run in place
        conv.register_forward_hook(lambda m, args, out, name=name: outputs.__setitem__(name, out.clone()))
        conv.register_forward_pre_hook(lambda m, args, name=name: inputs.__setitem__(name, args[0].clone()))
    with torch.no_grad():
        y = model(torch.rand(1, 3, 64, 64))
    pool, up, same = (lambda t: F.max_pool2d(t, 2)), (lambda t: F.interpolate(t, scale_factor=2.0)), (lambda t: t)
    hand_on = [("enc_conv0", "enc_conv1", same)] + [(f"enc_conv{k}", f"enc_conv{k + 1}", pool) for k in range(1, 6)]
    hand_on += [("enc_conv6", "dec_conv5a", up), ("dec_conv5b", "dec_conv4a", up), ("dec_conv4b", "dec_conv3a", up),
                ("dec_conv3b", "dec_conv2a", up), ("dec_conv2b", "dec_conv1a", up), ("dec_conv1a", "dec_conv1b", same),
                ("dec_conv1b", "dec_conv1c", same)]
    hand_on += [(f"dec_conv{k}a", f"dec_conv{k}b", same) for k in range(2, 6)]
    assert {a for a, _, _ in hand_on} == {name for name, _ in model.named_children()} - {"dec_conv1c"}
    for producer, consumer, between in hand_on:
        pre = between(outputs[producer])
        assert (pre < 0).any() and (pre > 0).any()
        expected = torch.where(pre >= 0, pre, 0.1 * pre)
        torch.testing.assert_close(inputs[consumer][:, : pre.shape[1]], expected, msg=f"{producer} -> {consumer}")
    torch.testing.assert_close(y, outputs["dec_conv1c"])  # nothing after the last conv


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
