"""One registration per architecture: the SAE class in sae/, its TrainingRecipe in train/."""

import json
from collections.abc import Iterator

import pytest
import torch
from synthetic import Superposition
from torch import Tensor

from saescope.errors import SaescopeError
from saescope.sae import ARCHITECTURES, SAE, SAEConfig, build_sae, load_sae, register_architecture
from saescope.train import (
    RECIPES,
    DeadConfig,
    OptimConfig,
    SAETrainer,
    StepContext,
    TrainConfig,
    TrainingRecipe,
    fit,
    recipe_for,
    register_recipe,
)
from saescope.train.dead import resample_dead_
from saescope.train.objectives import gated_objective, jumprelu_objective, relu_objective
from saescope.train.recipes import missing_recipes

DATA = Superposition(d=32, m=128, l0=4)


@pytest.fixture
def unregister() -> Iterator[list[str]]:
    """Names registered by a test, removed from both registries afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        ARCHITECTURES.pop(name, None)
        RECIPES.pop(name, None)


def _cfg(steps: int, **kw) -> TrainConfig:
    return TrainConfig(
        tokens=steps * 512,
        batch_size=512,
        optim=OptimConfig(lr=1e-3),
        checkpoint_every=0,
        init_rows=2048,
        **kw,
    )


def test_a_toy_architecture_trains_from_one_class_and_one_recipe(unregister, tmp_path) -> None:
    # Everything a new architecture needs, written here without touching saescope's files.
    @register_architecture
    class FixedThresholdSAE(SAE):
        """latents = ReLU(pre) where pre > 0.1."""

        architecture = "toy-fixed-threshold"
        saelens_name = "standard"
        description = "ReLU with a fixed threshold of 0.1 (a test's toy)"

        def activation(self, pre: Tensor) -> Tensor:
            return pre * (pre > 0.1)

    register_recipe("toy-fixed-threshold", TrainingRecipe(relu_objective, "ghost", ("ghost",)))
    unregister.append("toy-fixed-threshold")

    sae = build_sae(SAEConfig(d_in=32, d_sae=128, architecture="toy-fixed-threshold"), seed=0)
    t = SAETrainer(sae, _cfg(60, log_every=10), name="toy")
    assert t.dead_method == "ghost" and t.unit_norm  # the recipe's default, the class's default
    [trained] = fit([t], DATA.batches(60, 512), tmp_path, progress=False)
    lines = (tmp_path / "toy" / "metrics.jsonl").read_text().splitlines()
    logged = [json.loads(line)["fvu"] for line in lines]
    assert logged[-1] < 0.5 * logged[0], logged
    x = DATA.batch(10**6, 2048)
    assert float(trained.encode(x).values.detach().min()) > 0.1
    torch.testing.assert_close(t.sae.W_dec.detach().norm(dim=1), torch.ones(128))
    loaded = load_sae(tmp_path / "toy")  # the saved cfg.json names the toy architecture
    assert isinstance(loaded, FixedThresholdSAE)
    torch.testing.assert_close(loaded.encode_dense(x), trained.encode_dense(x))


def test_registering_a_name_twice_is_an_error(unregister) -> None:
    with pytest.raises(SaescopeError, match="'topk' is already registered by TopKSAE"):

        @register_architecture
        class AnotherTopK(SAE):
            architecture = "topk"
            saelens_name = "topk"
            description = "a second topk"

    with pytest.raises(SaescopeError, match="'topk' already has a training recipe"):
        register_recipe("topk", TrainingRecipe(relu_objective, "ghost", ("ghost",)))
    assert ARCHITECTURES["topk"].__name__ == "TopKSAE"
    assert recipe_for("topk").default_dead_method == "auxk"


def test_an_incomplete_registration_is_refused(unregister) -> None:
    with pytest.raises(SaescopeError, match="sets no description"):

        @register_architecture
        class Undescribed(SAE):
            architecture = "undescribed"
            saelens_name = "standard"

    with pytest.raises(SaescopeError, match=r"no SAE architecture 'nonesuch'.*register its SAE"):
        register_recipe("nonesuch", TrainingRecipe(relu_objective, "ghost", ("ghost",)))
    with pytest.raises(SaescopeError, match="default_dead_method='auxk' is not one"):
        TrainingRecipe(relu_objective, "auxk", ("ghost",))


def test_every_architecture_has_a_recipe_and_a_missing_one_is_named(unregister) -> None:
    assert missing_recipes() == []
    for arch in ARCHITECTURES:
        cls, recipe = ARCHITECTURES[arch], recipe_for(arch)
        assert cls.description and recipe.default_dead_method in recipe.dead_methods

    @register_architecture
    class Untrained(SAE):
        architecture = "untrained"
        saelens_name = "standard"
        description = "no recipe"

        def activation(self, pre: Tensor) -> Tensor:
            return pre.relu()

    unregister.append("untrained")
    assert missing_recipes() == ["untrained"]
    sae = build_sae(SAEConfig(d_in=32, d_sae=64, architecture="untrained"))
    with pytest.raises(SaescopeError, match=r"'untrained' has no training recipe.*register_recipe"):
        SAETrainer(sae, _cfg(2))


def test_a_dead_method_the_architecture_cannot_use_is_refused() -> None:
    sae = build_sae(SAEConfig(d_in=32, d_sae=64, architecture="relu"))
    with pytest.raises(SaescopeError, match="'auxk' does not apply to relu; use one of ghost"):
        SAETrainer(sae, _cfg(2, dead=DeadConfig(method="auxk")))


@pytest.mark.parametrize("arch", ["jumprelu", "gated"])
def test_the_training_forward_is_the_inference_encode(arch: str) -> None:
    sae = build_sae(SAEConfig(d_in=32, d_sae=128, architecture=arch), seed=0)
    with torch.no_grad():
        for p in sae.parameters():
            if p.dim() == 1:
                p.normal_(0, 0.3)  # thresholds of both signs: the formulas must agree for any
    x = DATA.batch(3, 256)
    dead = torch.zeros(128, dtype=torch.bool)
    objective = jumprelu_objective if arch == "jumprelu" else gated_objective
    train = objective(sae.train(), x, StepContext(_cfg(2), dead, 0.5, "none"))
    infer = sae.eval()(x)
    fired = infer.latents.indices[infer.latents.values > 0]
    assert len(fired) > 0
    if arch == "jumprelu":
        assert bool((sae.threshold < 0).any())  # where pre * H(pre - t) alone would go negative
    assert torch.equal(train.counts, torch.bincount(fired, minlength=128))
    assert train.metrics["l0"] == pytest.approx(float(infer.latents.l0().mean()))
    torch.testing.assert_close(train.x_hat, infer.x_hat.detach())


def test_resampling_resets_the_bias_that_gates_firing() -> None:
    t = SAETrainer(build_sae(SAEConfig(d_in=32, d_sae=64, architecture="gated"), seed=0), _cfg(2))
    with torch.no_grad():
        t.sae.b_gate[:8] = -3.0
    dead = torch.zeros(64, dtype=torch.bool)
    dead[:8] = True
    x = DATA.batch(0, 512)
    n = resample_dead_(t.sae, t.optimizer, dead, x, torch.zeros_like(x), torch.Generator())
    assert n == 8 and bool((t.sae.b_gate[:8] == 0).all())
    assert "b_enc" not in dict(t.sae.named_parameters())
