"""``SAETrainer``: one SAE, its optimizer, LR schedule and dead-latent tracker.

It sees only (B, d) tensors and knows nothing about language models; ``fit`` drives it.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import Tensor

from saescope._dist import Rank
from saescope.errors import SaescopeError
from saescope.sae import SAE, build_sae
from saescope.train import checkpoint as ckpt
from saescope.train.config import TrainConfig, default_lr, sae_seed
from saescope.train.dead import FiringTracker, resample_dead_
from saescope.train.optim import Adam
from saescope.train.recipes import StepContext, recipe_for
from saescope.train.undertrained import FvuWatch, Undertrained

log = logging.getLogger(__name__)


def geometric_median(x: Tensor, iters: int = 50, eps: float = 1e-6) -> Tensor:
    """Weiszfeld's algorithm: the point minimising the summed distance to the rows of ``x``."""
    median = x.mean(0)
    for _ in range(iters):
        weights = 1 / (x - median).norm(dim=-1).clamp_min(eps)  # (N,)
        new = (weights[:, None] * x).sum(0) / weights.sum()
        if (new - median).norm() < eps * median.norm().clamp_min(1):
            return new
        median = new
    return median


class SAETrainer:
    """One SAE with its optimizer, LR schedule and dead-latent tracker."""

    def __init__(self, sae: SAE, cfg: TrainConfig, name: str = "sae") -> None:
        self.sae, self.cfg, self.name = sae.train(), cfg, name
        arch, recipe = type(sae), recipe_for(sae.cfg.architecture)
        self.objective = recipe.objective
        self.dead_method = cfg.dead.method or recipe.default_dead_method
        if self.dead_method not in recipe.dead_methods:
            raise SaescopeError(
                f"{name}: dead-latent method {self.dead_method!r} does not apply to "
                f"{arch.architecture}; use one of {', '.join(recipe.dead_methods)}"
            )
        self.unit_norm = cfg.decoder_norm == "unit" and arch.constrain_decoder_norm
        self.norm_cap = cfg.decoder_norm == "at_most_one" and arch.constrain_decoder_norm
        self.clamp_threshold = arch.nonnegative_threshold
        self.lr = cfg.optim.lr or default_lr(sae.cfg.d_sae)
        self.optimizer = Adam(sae.parameters(), lr=self.lr, betas=cfg.optim.betas)
        window = cfg.dead.window_tokens or min(1_000_000, max(cfg.tokens // 4, cfg.batch_size))
        self.tracker = FiringTracker(sae.cfg.d_sae, window, sae.W_dec.device)
        self.generator = torch.Generator().manual_seed(sae_seed(cfg.seed, name))
        self.scale = 1.0
        self.variance = 1.0
        self.step_count = 0
        self.rank = Rank.current()
        self.fvu_watch = FvuWatch(cfg.steps, cfg.optim.decay_start, cfg.optim.warmup_steps)
        self.workspace: dict[str, Tensor] = {}

    @torch.no_grad()
    def initialise(self, sample: Tensor) -> None:
        """Input scale (E||x|| = sqrt(d)), loss denominator and b_dec (the geometric median)
        from ``sample``; under data parallelism every rank passes its share and uses them all."""
        sample = self.rank.all_gather(sample.to(self.sae.W_enc))
        if self.cfg.normalize:
            self.scale = math.sqrt(sample.shape[1]) / float(sample.norm(dim=-1).mean())
        sample = sample * self.scale
        self.variance = float((sample - sample.mean(0)).pow(2).sum(-1).mean())
        self.sae.b_dec.copy_(geometric_median(sample))
        if self.unit_norm:
            self.sae.set_decoder_norm_to_unit_norm_()

    def lr_factor(self, step: int) -> float:
        opt, steps = self.cfg.optim, self.cfg.steps
        warm = min(1.0, (step + 1) / opt.warmup_steps) if opt.warmup_steps else 1.0
        decay_from = int(opt.decay_start * steps)
        decay = 1.0 if step < decay_from else max(0.0, (steps - step) / max(1, steps - decay_from))
        return warm * decay

    def step(self, x: Tensor) -> dict[str, float]:
        """One optimizer step on a raw batch (B, d); returns its metrics."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * self.lr_factor(self.step_count)
        x = x.to(self.sae.W_enc) * self.scale
        ctx = StepContext(
            self.cfg,
            self.tracker.dead,
            self.step_count / self.cfg.steps,
            self.dead_method,
            self.variance,
            self.workspace,
        )
        out = self.objective(self.sae, x, ctx)
        if not torch.isfinite(out.loss):
            raise SaescopeError(
                f"{self.name}: the loss is {float(out.loss.detach())} at step {self.step_count}; check the "
                "activations for NaN/inf, or lower the learning rate"
            )
        self.optimizer.zero_grad()
        out.loss.backward()
        counts = self.rank.average_gradients_(self.sae.parameters(), out.counts)
        if self.unit_norm:
            self._remove_parallel_grad()
        if self.cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.sae.parameters(), self.cfg.optim.grad_clip)
        self.optimizer.step()
        self._after_step(x, out.x_hat)
        self.tracker.update(counts > 0, len(x) * self.rank.world_size, counts)
        self.fvu_watch.update(self.step_count, float(out.metrics["fvu"]))
        self.step_count += 1
        dead = float(self.tracker.dead.float().mean())
        return {**out.metrics, "loss": float(out.loss.detach()), "dead": dead}

    @torch.no_grad()
    def _remove_parallel_grad(self) -> None:
        W, grad = self.sae.W_dec, self.sae.W_dec.grad
        if grad is not None:  # keep unit-norm rows on the sphere: drop the radial component
            radial = torch.bmm(grad.unsqueeze(1), W.unsqueeze(2)).view(-1, 1)  # (d_sae, 1)
            grad.addcmul_(W, radial, value=-1)  # in place: no (d_sae, d_in) temporary

    @torch.no_grad()
    def _after_step(self, x: Tensor, x_hat: Tensor) -> None:
        if self.unit_norm:
            self.sae.set_decoder_norm_to_unit_norm_()
        elif self.norm_cap:
            self.sae.W_dec.div_(self.sae.W_dec.norm(dim=1, keepdim=True).clamp_min(1.0))
        if self.clamp_threshold:
            self.sae.get_parameter("threshold").clamp_(min=0)
        every = self.cfg.dead.resample_every
        if self.dead_method == "resample" and self.step_count and self.step_count % every == 0:
            n = resample_dead_(
                self.sae, self.optimizer, self.tracker.dead, x, x_hat, self.generator
            )
            if n:
                self.tracker.since[self.tracker.dead] = 0
                log.info("%s: resampled %d dead latents at step %d", self.name, n, self.step_count)

    def export(self) -> SAE:
        """A copy of the SAE in eval mode with the input scale folded in: works on raw inputs."""
        sae = build_sae(self.sae.cfg)
        sae.load_state_dict(self.sae.state_dict())
        sae.fold_input_scale_(self.scale)
        return sae.eval()

    def undertrained(self) -> Undertrained | None:
        """The verdict of ``saescope.train.undertrained``'s rule on the run so far."""
        return self.fvu_watch.verdict()

    def log10_density(self) -> Tensor:
        return torch.log10(self.tracker.counts.float() / max(1, self.tracker.tokens) + 1e-10)

    # -- checkpointing -----------------------------------------------------------------------------

    def checkpoint_state(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        tensors = {f"sae.{k}": v for k, v in self.sae.state_dict().items()}
        tensors |= ckpt.optimizer_tensors(self.optimizer)
        tensors |= {
            f"tracker.{k}": v for k, v in self.tracker.state_dict().items() if isinstance(v, Tensor)
        }
        tensors["generator"] = self.generator.get_state()
        state = {
            "step": self.step_count,
            "scale": self.scale,
            "variance": self.variance,
            "tokens": self.tracker.tokens,
            "fvu_watch": self.fvu_watch.state(),
        }
        return tensors, state

    def restore(self, tensors: dict[str, Tensor], state: dict[str, Any]) -> None:
        """Load what ``checkpoint_state`` saved; a checkpoint missing a part is refused."""
        missing = [k for k in ("tracker.since", "tracker.counts", "generator") if k not in tensors]
        missing += [k for k in ("step", "scale", "variance", "tokens") if k not in state]
        if missing:
            raise SaescopeError(
                f"{self.name}: the checkpoint lacks {missing}; it is not one saescope wrote, "
                "or is damaged: delete it to start over"
            )
        self.sae.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("sae.")})
        ckpt.load_optimizer_tensors(self.optimizer, tensors)
        self.tracker.load_state_dict(
            {
                "since": tensors["tracker.since"],
                "counts": tensors["tracker.counts"],
                "tokens": state["tokens"],
            }
        )
        self.generator.set_state(tensors["generator"])
        self.step_count, self.scale = int(state["step"]), float(state["scale"])
        self.variance = float(state["variance"])
        if "fvu_watch" in state:  # (absent from older checkpoints: then the rule stays silent)
            self.fvu_watch.load_state(state["fvu_watch"])
