"""Reading what a model computes: next-token predictions, the logit lens (more to come: the
feature index, neurons, explanations)."""

from saescope.interpret.lens import LogitLens, Prediction, logit_lens, predict, unembed

__all__ = ["LogitLens", "Prediction", "logit_lens", "predict", "unembed"]
