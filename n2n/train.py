"""The one training loop: Noise2Noise, Noise2Clean, real noisy pairs, Neighbor2Neighbor.

`train(config)` is a generator yielding one `Record` per step; the CLI prints
them, the app plots them. It runs the same under `torchrun` (DistributedDataParallel).
Checkpoints: `checkpoint.save` writes the model; `training_state.safetensors` holds the
optimiser's tensors and `config.json` the step, so a run resumes where it stopped. Within one
process a run also goes on from any record it yielded (`train(..., resume_from=record)`), in memory.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn
from torch.utils.data import DataLoader

from . import checkpoint, hub
from .data import (NoisyPairs, SingleNoisy, SyntheticPairs, apply_subsample, list_images, neighbor_subsample,
                   to_channels, training_image)
from .infer import CAMERA_LOW_PASS, STRIDES, denoise, model_low_pass, resolve_precision
from .io import centre_crop, read_image, to_float, write_atomic
from .losses import get_loss, neighbor2neighbor_regulariser
from .metrics import psnr
from .models import build_model
from .noise import corrupt, get_noise

MODES = ("synthetic", "pairs", "single")
STATE_NAME = "training_state.safetensors"


@dataclass
class TrainConfig:
    """Everything a run needs; the CLI's flags are derived from these fields."""

    noise: str = "gaussian"  # corruption model (n2n.noise), for synthetic pairs and validation
    noise_range: tuple[float, float] | None = None  # training parameter range; None: the model's default
    # data, data_target and val are folders; when train() is handed the images (TrainData), names for them
    data: str = ""  # folder of clean images (synthetic), noisy shots (pairs: first of two) or noisy images (single)
    data_target: str = ""  # pairs: folder of the second noisy shots, same file names
    mode: str = "synthetic"  # synthetic | pairs | single (Neighbor2Neighbor)
    stride: int = 1  # single: train on the stride² pixel-shuffled sub-images of each photo (noise correlated
    # between neighbours is about independent there); the checkpoint is then meant for that stride (config "stride")
    clean_targets: bool = False  # synthetic only: train Noise2Clean (the clean-target twin)
    loss: str | None = None  # l2 | l1 | l0 | masked_l2; None: the one that fits the noise
    arch: str = "unet"
    channels: int = 3  # 1 for gray
    init: str = ""  # start from this checkpoint (bundled name or folder); empty: from scratch
    steps: int = 1000
    batch_size: int = 8
    crop: int = 96  # training crops are crop × crop
    lr: float = 3e-4
    rampdown: float = 0.3  # fraction of the run over which lr ramps smoothly down to 0
    n2n_gamma: float = 2.0  # Neighbor2Neighbor regulariser weight at the end of the run
    val: str = ""  # folder of clean images for validation PSNR; empty: no validation
    val_param: float | None = None  # validation noise level; None: the noise model's default
    val_images: int = 4
    val_crop: int = 256  # centre crop of each validation image (0: whole image)
    val_every: int = 500
    checkpoint_every: int = 500
    out: str = "runs/model"
    resume: bool = False
    optimiser_state: bool = True  # save Adam's moments beside each checkpoint so that `resume` continues the
    # run (8 MB for the U-Net, as much as its weights); False: the weights only (the app's runs, never resumed)
    seed: int = 0
    workers: int = 0  # DataLoader worker processes
    precision: str = "auto"  # fp32 | bf16 (autocast) | auto (bf16 on CUDA and on CPUs with native bf16)
    threads: int = 0  # torch CPU threads; 0: leave as is

    def loss_name(self) -> str:
        if self.loss:
            return self.loss
        return "l2" if self.mode != "synthetic" or self.clean_targets else get_noise(self.noise).loss


@dataclass(frozen=True)
class Record:
    """One step of a run, as `train` yields it."""

    step: int  # steps done, counting those of the run it resumed
    loss: float  # this step's training loss
    lr: float  # the learning rate this step used
    steps_per_s: float  # the run's pace so far (this call's steps over its seconds)
    eta_s: float | None  # seconds left at that pace; None before there is a pace
    elapsed_s: float  # seconds since the run began (train: since its first step; n2n.adapt: since adapt() began)
    model: nn.Module  # the network being trained, for previews and scores: don't step it
    val_psnr: float | None = None  # validation PSNR (dB) when this step validated, else None
    done: bool = False  # the run's last record: its checkpoint is saved
    out: str | None = None  # done: the checkpoint directory
    optimizer: torch.optim.Optimizer | None = None  # the run's Adam, for `train(resume_from=)`: don't step it


def get_lr(step: int, config: TrainConfig) -> float:
    """The paper's schedule: constant, then a smooth ramp-down over the last `rampdown` of the run."""
    start = (1.0 - config.rampdown) * config.steps
    if step < start or config.rampdown <= 0:
        return config.lr
    t = (step - start) / (config.rampdown * config.steps)
    return config.lr * (0.5 + 0.5 * math.cos(math.pi * min(t, 1.0))) ** 2


@dataclass(frozen=True)
class TrainData:
    """A run's images, decoded: what its TrainConfig's folders hold (`read_data`), or images decoded
    elsewhere (the app's uploads), which `train` then takes instead of reading the folders."""

    images: list[np.ndarray]  # (H, W, C), any dtype: clean (synthetic), first shots (pairs) or noisy (single)
    targets: list[np.ndarray] | None = None  # pairs: the second shots, targets[k] of the scene of images[k]
    val_pairs: list[tuple[np.ndarray, np.ndarray]] = ()  # (clean, noisy) float32, from `validation_pairs`


def read_data(config: TrainConfig, validation: bool = True) -> TrainData:
    """Decode the images of `config`'s folders (data, data_target, and val when `validation`)."""
    files = list_images(config.data)
    targets = None
    if config.mode == "pairs":
        target_dir = Path(config.data_target)
        missing = [f.name for f in files if not (target_dir / f.name).is_file()]
        if missing:
            raise ValueError(f"{target_dir} lacks the partner shots of: {', '.join(missing[:5])}")
        targets = [read_image(target_dir / f.name, dtype=None) for f in files]
    return TrainData([read_image(f, dtype=None) for f in files], targets,
                     validation_set(config) if validation else [])


def _dataset(config: TrainConfig, data: TrainData, length: int, multiple: int):
    """The training examples of `data`; crops rounded up to the network's multiple (twice it for
    Neighbor2Neighbor, whose sub-images are half size)."""
    multiple *= 2 if config.mode == "single" else 1
    config = dataclasses.replace(config, crop=-(-config.crop // multiple) * multiple)
    sources = data.images
    if config.mode == "single" and config.stride > 1:
        s = config.stride
        sources = [image[i::s, j::s] for image in sources for i in range(s) for j in range(s)]
    images = [training_image(image, config.channels, config.crop) for image in sources]
    if config.mode == "synthetic":
        return SyntheticPairs(images, config.noise, config.crop, length, config.seed,
                              config.noise_range, config.clean_targets)
    if config.mode == "pairs":
        if data.targets is None or len(data.targets) != len(images):
            raise ValueError(f"pairs need a second shot of each scene: got {len(images)} first shots and "
                             f"{len(data.targets or [])} second ones")
        targets = [training_image(image, config.channels, config.crop) for image in data.targets]
        return NoisyPairs(images, targets, config.crop, length, config.seed)
    return SingleNoisy(images, config.crop, length, config.seed)


def validation_pairs(images: list[np.ndarray], config: TrainConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(clean, noisy) float32 pairs from the first `config.val_images` clean `images` (H, W, C, any
    dtype; centre-cropped to `val_crop`), with noise from a fixed seed so every evaluation sees the same."""
    param = get_noise(config.noise).default if config.val_param is None else config.val_param
    pairs = []
    for k, image in enumerate(images[: config.val_images]):
        clean = to_float(to_channels(image, config.channels))
        if config.val_crop:
            clean = centre_crop(clean, config.val_crop)
        pairs.append((clean, corrupt(clean, config.noise, param, np.random.default_rng([config.seed, 10**6, k]))))
    return pairs


def validation_set(config: TrainConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """The validation pairs of the images in folder `config.val` (none when it is empty)."""
    if not config.val:
        return []
    return validation_pairs([read_image(f, dtype=None) for f in list_images(config.val)[: config.val_images]],
                            config)


def validate(model, pairs) -> float:
    """Validation PSNR: the mean PSNR (dB, 8-bit) of `model` over (clean, noisy) pairs (`validation_set`)."""
    return float(np.mean([psnr(clean, denoise(model, noisy)) for clean, noisy in pairs]))


def checkpoint_meta(config: TrainConfig, model: nn.Module, step: int, extra: dict | None = None) -> dict:
    """The config.json of a checkpoint that `config` trained for `step` steps: the architecture and its
    arguments (read from `model`, unwrapped from DDP), the noise and range, the loss, the mode, the
    steps and the whole TrainConfig; `extra` (eval results, a campaign's record...) added on top."""
    module = model.module if hasattr(model, "module") else model
    meta = {
        "architecture": config.arch,
        "model_args": {"in_channels": module.in_channels, "out_channels": module.out_channels},
        "noise": config.noise,
        "noise_range": list(config.noise_range or get_noise(config.noise).noise_range),
        "loss": config.loss_name(),
        "mode": config.mode,
        "clean_targets": config.clean_targets,
        "steps": step,
        "stride": config.stride if config.mode == "single" else 1,
        "low_pass": model_low_pass(module),
        "train_config": dataclasses.asdict(config),
    }
    return meta | (extra or {})


def _save_state(out: Path, optimizer: torch.optim.Optimizer, step: int) -> None:
    tensors = {}
    for i, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"{i}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous().clone()
    write_atomic(out / STATE_NAME, safetensors_bytes(tensors, metadata={"step": str(step)}))


def _load_state(out: Path, optimizer: torch.optim.Optimizer) -> None:
    tensors = load_file(out / STATE_NAME)
    sd = optimizer.state_dict()
    state = {}
    for i in sd["param_groups"][0]["params"]:
        keys = [k.split(".", 1)[1] for k in tensors if k.split(".", 1)[0] == str(i)]
        state[i] = {k: tensors[f"{i}.{k}"] for k in keys}
    sd["state"] = state
    optimizer.load_state_dict(sd)


def _setup_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if world > 1 else 0
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def _initial_state(config: TrainConfig, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer, int]:
    """The network, its Adam and the steps done that `config` starts from: `config.init` or a fresh
    network; with `config.resume` and a checkpoint in `config.out`, its weights, step and (when saved)
    Adam's moments."""
    out = Path(config.out)
    if config.init:
        model = hub.load_model(config.init)
    else:
        model = build_model(config.arch, in_channels=config.channels, out_channels=config.channels)
    model = model.to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.99), eps=1e-8)
    start = 0
    if config.resume and (out / checkpoint.WEIGHTS_NAME).is_file() and (out / checkpoint.CONFIG_NAME).is_file():
        resumed = checkpoint.load_dir(out)
        model.load_state_dict(resumed.model.state_dict())
        if (out / STATE_NAME).is_file():  # else (a committed checkpoint, no optimiser state): fresh Adam moments
            _load_state(out, optimizer)
        start = int(resumed.config["steps"])
    return model, optimizer, start


def train(config: TrainConfig, stop=lambda: False, data: TrainData | None = None,
          resume_from: Record | None = None) -> Iterator[Record]:
    """Run `config`; yield a `Record` after every step.

    `data`: the run's images, decoded already (the app's uploads); then `config`'s folders (data,
    data_target, val) only name them. None: they are read from those folders.

    `resume_from`: a record this process's `train` yielded: the run goes on in memory from it (its
    network, its Adam's moments, its step) up to `config.steps`, as `config.resume` does from disk;
    `config.init` and `config.resume` are then not read. n2n.adapt times its first steps this way.

    `stop()` is polled each step: when true the run saves and ends early. A NaN or
    infinite loss raises FloatingPointError, leaving the last good checkpoint on disk.
    The final record has `done` true and `out`, the checkpoint directory.
    """
    if config.threads:
        torch.set_num_threads(config.threads)
    rank, world, device = _setup_distributed()
    torch.manual_seed(config.seed)
    out = Path(config.out)
    if resume_from is None:
        model, optimizer, start = _initial_state(config, device)
    elif resume_from.optimizer is None:
        raise ValueError("resume_from takes a record that train yielded: it carries the run's optimiser")
    else:  # the same network and Adam, stepped on from where they are
        model, optimizer, start = resume_from.model.train(), resume_from.optimizer, resume_from.step
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    bf16 = resolve_precision(config.precision, device) == "bf16"
    loss_fn = get_loss(config.loss_name())
    if config.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {config.mode!r}")
    if config.stride not in STRIDES:
        raise ValueError(f"stride must be one of {STRIDES} (1: no pixel-shuffle), got {config.stride}")
    model.stride = config.stride if config.mode == "single" else 1  # what n2n.denoise uses on the trained model
    # and the scale above which it keeps the photo's brightness (n2n.infer.keep_low_pass): only an L2 model's output
    # keeps the mean of zero-mean noise; CAMERA_LOW_PASS on camera noise, else its init's
    low_pass = CAMERA_LOW_PASS if config.noise == "camera" else model_low_pass(model)
    model.low_pass = low_pass if config.loss_name() == "l2" else 0.0
    data = read_data(config, validation=rank == 0) if data is None else data
    dataset = _dataset(config, data, config.steps * config.batch_size, getattr(model, "multiple", 1))
    indices = range(start * config.batch_size + rank, config.steps * config.batch_size, world)
    loader = DataLoader(dataset, batch_size=config.batch_size // world or 1, sampler=indices,
                        num_workers=config.workers, persistent_workers=config.workers > 0)
    val_pairs = list(data.val_pairs) if rank == 0 else []
    generator = torch.Generator()  # Neighbor2Neighbor's sub-sampling, seeded per step below
    last_val = None
    t0, step = time.perf_counter(), start

    def save_checkpoint(extra=None):
        if not all(torch.isfinite(p).all() for p in model.parameters()):
            raise FloatingPointError(f"the weights became NaN or infinite at step {step}; the last good "
                                     f"checkpoint is in {out}. Try a lower learning rate.")
        if rank == 0:
            checkpoint.save(model, out, checkpoint_meta(config, model, step, extra))
            if config.optimiser_state:
                _save_state(out, optimizer, step)

    for noisy_source, noisy_target, mask in loader:
        if step >= config.steps:
            break
        lr = get_lr(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        noisy_source, noisy_target, mask = (
            t.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            for t in (noisy_source, noisy_target, mask))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            if config.mode == "single":
                # from (seed, step) alone, so that a resumed run draws what an uninterrupted one would
                generator.manual_seed(int(np.random.SeedSequence([config.seed, step]).generate_state(1)[0]))
                loss = _neighbor2neighbor_loss(net, noisy_source, step / config.steps, config.n2n_gamma, generator)
            else:
                denoised = net(noisy_source).float()
                loss = loss_fn(denoised, noisy_target, mask, step / config.steps)
        loss = loss.float()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}; the last good checkpoint "
                                     f"is in {out}. Try a lower learning rate.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        elapsed = time.perf_counter() - t0
        rate = (step - start) / elapsed
        val_psnr = None
        if val_pairs and (step % config.val_every == 0 or step == config.steps):
            last_val = val_psnr = validate(model, val_pairs)
        if step % config.checkpoint_every == 0:
            save_checkpoint({"val_psnr": last_val})
        stopping = stop()
        done = step == config.steps or stopping
        if done:
            save_checkpoint({"val_psnr": last_val})
        yield Record(step=step, loss=loss.item(), lr=lr, steps_per_s=rate,
                     eta_s=(config.steps - step) / rate if rate > 0 else None, elapsed_s=elapsed, model=model,
                     val_psnr=val_psnr, done=done, out=str(out) if done else None, optimizer=optimizer)
        if stopping:
            break
    if world > 1:
        dist.barrier()


def _neighbor2neighbor_loss(net, noisy, fraction, gamma_max, generator):
    """Neighbor2Neighbor (Huang et al. 2021): g1(y) predicts g2(y), plus γ·regulariser, γ ramped to gamma_max."""
    index1, index2 = neighbor_subsample(noisy, generator)
    sub1, sub2 = apply_subsample(noisy, index1), apply_subsample(noisy, index2)
    with torch.no_grad():
        full = net(noisy).float()
    denoised_sub1 = net(sub1).float()
    rec = torch.mean((denoised_sub1 - sub2) ** 2)
    reg = neighbor2neighbor_regulariser(denoised_sub1, sub2, apply_subsample(full, index1),
                                        apply_subsample(full, index2))
    return rec + gamma_max * fraction * reg


def zero_shot(noisy: np.ndarray, steps: int = 2000, lr: float = 1e-3, crop: int = 256, seed: int = 0,
              progress=None) -> np.ndarray:
    """Zero-Shot Noise2Noise (Mansour & Heckel 2023): denoise one image with no training data.

    noisy: float32 (H, W, C) in [0, 1], C 1 or 3. A 22k-parameter net learns from two fixed
    stride-2 down-samplings of the image (residual + consistency losses), on random crops
    of at most `crop` pixels for speed. Returns float32 (H, W, C) in [0, 1].
    progress: called as progress(step, steps, loss).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    c = noisy.shape[2]
    net = build_model("zsn2n", in_channels=c, out_channels=c)
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(1, steps // 2), gamma=0.5)
    image = torch.from_numpy(np.ascontiguousarray(noisy.transpose(2, 0, 1)))[None]  # (1, C, H, W)
    kernel1 = torch.tensor([[[[0.5, 0.0], [0.0, 0.5]]]]).repeat(c, 1, 1, 1)
    kernel2 = torch.tensor([[[[0.0, 0.5], [0.5, 0.0]]]]).repeat(c, 1, 1, 1)
    down = lambda x, k: torch.nn.functional.conv2d(x, k, stride=2, groups=c)  # noqa: E731
    h, w = noisy.shape[:2]
    ch, cw = min(crop, h) // 2 * 2, min(crop, w) // 2 * 2
    if ch < 2 or cw < 2:
        raise ValueError(f"zero-shot needs an image of at least 2×2 pixels, got {w}×{h}")
    for step in range(steps):
        y0, x0 = 2 * int(rng.integers(0, (h - ch) // 2 + 1)), 2 * int(rng.integers(0, (w - cw) // 2 + 1))
        y = image[..., y0:y0 + ch, x0:x0 + cw]
        d1, d2 = down(y, kernel1), down(y, kernel2)
        loss_res = 0.5 * (torch.mean((d1 - net(d2)) ** 2) + torch.mean((d2 - net(d1)) ** 2))
        full = net(y)
        loss_cons = 0.5 * (torch.mean((net(d1) - down(full, kernel1)) ** 2)
                           + torch.mean((net(d2) - down(full, kernel2)) ** 2))
        loss = loss_res + loss_cons
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if progress is not None:
            progress(step + 1, steps, loss.item())
    with torch.inference_mode():
        return np.clip(net(image)[0].permute(1, 2, 0).numpy(), 0.0, 1.0)
