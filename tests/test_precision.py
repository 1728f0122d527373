"""precision="auto": bf16 where the hardware computes it natively, and bf16 that scores as fp32."""
import numpy as np
import pytest
import torch

from n2n import hub
from n2n.infer import denoise, native_bf16, resolve_precision
from n2n.metrics import psnr
from n2n.noise import corrupt

from helpers import photo


def test_auto_follows_the_hardware(monkeypatch):
    monkeypatch.delenv("N2N_PRECISION", raising=False)
    assert native_bf16() == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert resolve_precision("auto", "cpu") == ("bf16" if native_bf16() else "fp32")
    assert resolve_precision("auto", "cuda") == "bf16"
    assert resolve_precision("fp32", "cuda") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16")


@pytest.mark.parametrize("forced", ["fp32", "bf16"])
def test_n2n_precision_makes_auto_act_as_the_other_machine_kind(monkeypatch, forced):
    """N2N_PRECISION runs the suite as a machine of the other kind would (README: Run the tests)."""
    monkeypatch.setenv("N2N_PRECISION", forced)
    assert resolve_precision("auto", "cpu") == forced
    assert resolve_precision("fp32", "cpu") == "fp32"  # an explicit choice stands
    monkeypatch.setenv("N2N_PRECISION", "fp16")
    with pytest.raises(ValueError, match="N2N_PRECISION must be fp32 or bf16"):
        resolve_precision("auto")


def test_bf16_weights_denoise_as_well_as_fp32():
    """The trained gaussian model in bf16 stays within 0.05 dB of fp32 on a noisy image, and
    leaves the caller's model in fp32."""
    model = hub.load_model("gaussian")
    clean = photo(128)
    noisy = corrupt(clean, "gaussian", 25, np.random.default_rng(0))
    fp32 = psnr(clean, denoise(model, noisy, precision="fp32"))
    bf16 = psnr(clean, denoise(model, noisy, precision="bf16"))
    assert fp32 > psnr(clean, noisy) + 5
    assert abs(bf16 - fp32) < 0.05
    assert next(model.parameters()).dtype == torch.float32
