from pathlib import Path

import pytest
from synthetic import Superposition
from tiny_models import torchrun

from saescope.sae import SAEConfig, build_sae, load_sae
from saescope.train import OptimConfig, SAETrainer, TrainConfig, fit
from saescope.train.objectives import fvu

SCRIPT = Path(__file__).with_name("distributed_train.py")


@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_two_ranks_match_one_process_with_the_same_global_batch(arch, tmp_path) -> None:
    torchrun(str(SCRIPT), arch, str(tmp_path / "ddp"))
    ddp = load_sae(tmp_path / "ddp" / arch)
    data = Superposition(d=32, m=128, l0=4)
    k = 6 if arch == "topk" else None
    sae = build_sae(SAEConfig(d_in=32, d_sae=256, architecture=arch, k=k), seed=0)
    cfg = TrainConfig(
        tokens=20 * 512,
        batch_size=512,
        init_rows=1024,
        checkpoint_every=0,
        optim=OptimConfig(lr=1e-3),
    )
    [single] = fit(
        [SAETrainer(sae, cfg, name=arch)], (data.batch(i, 512) for i in range(20)), progress=False
    )
    # Not bit-equal: the ranks' gradients are summed in another order, and Adam turns rounding
    # differences in near-zero gradients into lr-sized steps. So: the two-rank result must be
    # far closer to the one-process result than either is to where training started.
    init = build_sae(SAEConfig(d_in=32, d_sae=256, architecture=arch, k=k), seed=0)
    for key in ("W_enc", "W_dec"):
        moved = (single.state_dict()[key] - init.state_dict()[key]).norm()
        apart = (ddp.state_dict()[key] - single.state_dict()[key]).norm()
        assert apart < 0.02 * moved, (key, float(apart), float(moved))
    x = data.batch(10**6, 1024)
    fvus = [float(fvu(x, sae(x).x_hat.detach())) for sae in (ddp, single)]
    assert abs(fvus[0] - fvus[1]) < 0.02 * fvus[1], fvus
