"""Run under torchrun by test_distributed.py: rank r trains on rows r*B:(r+1)*B of each global batch."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from synthetic import Superposition

from saescope._dist import end_worker, init_distributed
from saescope.sae import SAEConfig, build_sae
from saescope.train import OptimConfig, SAETrainer, TrainConfig, fit

arch, out = sys.argv[1], Path(sys.argv[2])
rank = init_distributed()
B, steps = 256, 20
data = Superposition(d=32, m=128, l0=4)
k = 6 if arch in ("topk", "batchtopk") else None
sae = build_sae(SAEConfig(d_in=32, d_sae=256, architecture=arch, k=k), seed=0)
cfg = TrainConfig(
    tokens=steps * B,  # per rank, as `saescope train` passes it
    batch_size=B,
    init_rows=1024,
    checkpoint_every=0,
    optim=OptimConfig(lr=1e-3),
)
local = (
    data.batch(i, B * rank.world_size)[rank.rank * B : (rank.rank + 1) * B] for i in range(steps)
)
fit([SAETrainer(sae, cfg, name=arch)], local, out, progress=False)
end_worker()
