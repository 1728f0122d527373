"""Run by test_train.py under torchrun: train 3 steps with DDP, save this rank's final parameters."""
import sys

import numpy as np
import torch
import torch.distributed as dist

from n2n.train import TrainConfig, train

photos, out = sys.argv[1], sys.argv[2]
# fp32: test_train.py compares with one process at the same total batch, to 1e-5 (bf16 autocast, which
# "auto" picks on CPUs with native bf16, rounds a batch of 2 differently from a batch of 4)
config = TrainConfig(data=photos, steps=3, batch_size=4, crop=32, out=f"{out}/ddp", threads=1, precision="fp32")
*_, last = train(config)
params = torch.cat([p.detach().flatten() for p in last.model.parameters()])
np.save(f"{out}/params{dist.get_rank()}.npy", params.numpy())
dist.destroy_process_group()
