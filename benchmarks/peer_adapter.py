"""saescope's TopK trainer behind ../shared/bench/peer_harness.py's adapter interface.

    python ../shared/bench/peer_harness.py --adapter benchmarks/peer_adapter.py:Adapter \
        --d 2304 --n 16384 --k 64 --B 2048 --steps 30

``SAESCOPE_ENCODER_DTYPE=bfloat16`` measures the bf16 encoder matmul (gradients stay fp32).
"""

from __future__ import annotations

import os

import torch

from saescope.sae import SAEConfig, build_sae
from saescope.train import OptimConfig, SAETrainer, TrainConfig


class Adapter:
    def __init__(self, d, n, k, dev, mode, total_steps, B=2048):
        sae = build_sae(SAEConfig(d_in=d, d_sae=n, architecture="topk", k=k), seed=0).to(dev)
        cfg = TrainConfig(
            tokens=total_steps * B,
            batch_size=B,
            init_rows=B,
            checkpoint_every=0,
            encoder_dtype=os.environ.get("SAESCOPE_ENCODER_DTYPE", "float32"),
            # harmonized with the peers: Adam at 2e-4 / sqrt(n / 2^14), no warm-up or decay
            optim=OptimConfig(lr=2e-4 / (n / 2**14) ** 0.5, warmup_steps=0, decay_start=1.0),
        )
        self.trainer = SAETrainer(sae, cfg)
        self.first = True
        self.exported = None

    def step(self, x):
        if self.first:
            self.trainer.initialise(x)
            self.first = False
        self.trainer.step(x)

    @torch.no_grad()
    def reconstruct(self, x):
        if self.exported is None:
            self.exported = self.trainer.export()
        out = self.exported(x)
        indices = out.latents.indices.view(len(x), -1)
        return out.x_hat, out.latents.l0(), indices
