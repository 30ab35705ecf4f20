"""Export a feature index as Neuronpedia dashboard batches (``batch-<i>.json``).

The files follow the layout SAEDashboard's ``NeuronpediaRunner`` writes (sae-dashboard 0.8.0,
``sae_dashboard/neuronpedia/neuronpedia_dashboard.py``: ``NeuronpediaDashboardBatch`` /
``Feature`` / ``Activation.to_dict``), which Neuronpedia's importer reads: SAEDashboard's
``neuronpedia_export.export_neuronpedia_dashboards`` and neuronpedia-utils'
``convert-saedashboard-to-neuronpedia-export.py``. Those read every key named here by
``batch[key]`` (a missing one is a KeyError), so every key is written, empty where saescope has
nothing for it; no key is added, so ``NeuronpediaDashboardBatch(**batch)`` loads a file too.

Per batch: ``model_id``, ``layer``, ``sae_set`` (the Neuronpedia source-set id; the source is
``<layer>-<sae_set>``), ``sae_id_suffix`` (null) and ``features``. Per feature, from the index:

- ``feature_index``; ``frac_nonzero``: the density (firing tokens / indexed tokens);
- ``pos_str`` / ``pos_values``, ``neg_str`` / ``neg_values``: the tokens its write direction
  promotes and suppresses most, with their direct logit effect (``FeatureRecord.promoted``);
- ``freq_hist_data_bar_values`` / ``_heights``: the activation histogram, each bar at the
  activation value at the centre of one log10 bin of the index (``FeatureIndex.histogram_edges``),
  from the first to the last non-empty bin; heights are firing counts;
- ``activations``: its top examples (``bin_min`` -1, ``bin_max`` the largest activation,
  ``bin_contains`` -1, as SAEDashboard marks its top group), then its sampled examples grouped by
  quantile (``bin_min``/``bin_max`` the group's activation range, ``bin_contains`` the group's
  share of the sample); each with ``tokens`` (strings, BOS and other excluded positions shown
  as ``<special>``), ``values`` aligned with them, and ``qualifying_token_index``, the peak. The
  importer takes ``maxValue`` / ``maxValueTokenIndex`` as max(values) and its index, which is
  the peak (the window holds the context's maximum); contexts where it is silent are not sent;
- ``n_prompts_total`` (indexed tokens / scored tokens per context, rounded up),
  ``n_tokens_in_prompt`` (the context size) and ``dataset``.

Empty, because the index does not hold them: ``logits_hist_data_bar_*`` (a histogram of the
logit effect over the whole vocabulary), ``correlated_*`` (activation correlations),
``neuron_alignment_*`` (its ``_l1`` needs a decoder row's L1 norm), ``decoder_weights_dist``
(attention heads) and ``vector`` (the decoder row). saescope's decoder-cosine neighbours have no
field in this layout (the importer writes ``topkCosSim*`` empty).

``run_settings.json`` beside the batches says what they were exported from (index, SAE
checksum, site, model) and with which ids, as SAEDashboard writes its runner settings there.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from saescope import __version__
from saescope._files import strict_json, write_atomic
from saescope._sites import Site
from saescope.errors import SaescopeError
from saescope.interpret.neurons import Example
from saescope.interpret.query import FeatureIndex, FeatureRecord

LAYOUT = "sae-dashboard 0.8.0 NeuronpediaDashboardBatch"
"""The layout written, recorded in ``run_settings.json``."""

SITE_SHORT = {
    "resid_pre": "res-pre",
    "attn_out": "att",
    "mlp_in": "mlp-in",
    "mlp_act": "mlp-act",
    "mlp_out": "mlp",
    "resid_post": "res",
}
"""Site kinds in a default source-set id (Neuronpedia's own sets read ``res``, ``att``, ``mlp``)."""

_ID = re.compile(r"^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$")
DIGITS = 6
"""Significant digits of exported floats (SAEDashboard rounds to 5 decimals, which leaves a
feature whose activations are ~0.01 three digits)."""


@dataclass(frozen=True)
class NeuronpediaConfig:
    """How an index is exported to Neuronpedia."""

    model_id: str | None = None
    """Neuronpedia's model id (``gemma-3-270m``); None: the index's model name."""
    source_id: str | None = None
    """The source-set id, without the layer (``saescope-res-8192``: the source is then
    ``6-saescope-res-8192``); None: ``saescope-<site kind>-<features>``."""
    batch_size: int = 128
    """Features per ``batch-<i>.json`` file."""

    def __post_init__(self) -> None:
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise SaescopeError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        for name in ("model_id", "source_id"):
            value = getattr(self, name)
            if value is not None and not _ID.match(value):
                raise SaescopeError(
                    f"{name} {value!r} is not a Neuronpedia id: use letters, digits and single "
                    "dashes (e.g. gemma-3-270m, saescope-res-8192)"
                )
        if self.model_id is not None and not self.model_id:
            raise SaescopeError("model_id is empty")


def _num(value: float) -> float:
    return float(f"{float(value):.{DIGITS}g}")


def _round(values: list[float] | np.ndarray) -> list[float]:
    return [_num(v) for v in values]


def frequency_histogram(
    counts: np.ndarray, log10_edges: np.ndarray
) -> tuple[list[float], list[int]]:
    """(bar values, bar heights): each non-empty span's log10 bin at the activation value of its
    centre, from the first to the last non-empty bin (none for a feature that never fired)."""
    nonzero = np.flatnonzero(counts)
    if not len(nonzero):
        return [], []
    lo, hi = int(nonzero[0]), int(nonzero[-1]) + 1
    centres = 10.0 ** ((log10_edges[:-1] + log10_edges[1:]) / 2)  # (bins,)
    return _round(centres[lo:hi]), [int(c) for c in counts[lo:hi]]


def activation_json(
    example: Example, bin_min: float, bin_max: float, bin_contains: float
) -> dict[str, Any]:
    """One example as SAEDashboard's ``NeuronpediaDashboardActivation.to_dict``."""
    return {
        "bin_min": _num(bin_min),
        "bin_max": _num(bin_max),
        "bin_contains": _num(bin_contains),
        "tokens": list(example.tokens),
        "values": _round(example.activations),
        "qualifying_token_index": int(example.focus),
    }


def _activations(record: FeatureRecord) -> list[dict[str, Any]]:
    out = []
    if record.top:
        peak = max(e.activation for e in record.top)
        out += [activation_json(e, -1, peak, -1) for e in record.top]
    total = len(record.samples)
    for quantile in sorted({q for q, _ in record.samples}, reverse=True):  # strongest first
        group = [e for q, e in record.samples if q == quantile]
        acts = [e.activation for e in group]
        out += [activation_json(e, min(acts), max(acts), len(group) / total) for e in group]
    return out


def feature_json(index: FeatureIndex, record: FeatureRecord) -> dict[str, Any]:
    """One feature as SAEDashboard's ``NeuronpediaDashboardFeature.to_dict``."""
    bar_values, bar_heights = frequency_histogram(record.histogram, index.histogram_edges)
    context = index.meta.get("context", {})
    return {
        "feature_index": record.feature,
        "neuron_alignment_indices": [],
        "neuron_alignment_values": [],
        "neuron_alignment_l1": [],
        "correlated_neurons_indices": [],
        "correlated_neurons_l1": [],
        "correlated_neurons_pearson": [],
        "correlated_features_indices": [],
        "correlated_features_l1": [],
        "correlated_features_pearson": [],
        "neg_str": [t for t, _ in record.suppressed],
        "neg_values": _round([v for _, v in record.suppressed]),
        "pos_str": [t for t, _ in record.promoted],
        "pos_values": _round([v for _, v in record.promoted]),
        "frac_nonzero": float(record.density),
        "freq_hist_data_bar_values": bar_values,
        "freq_hist_data_bar_heights": bar_heights,
        "logits_hist_data_bar_heights": [],
        "logits_hist_data_bar_values": [],
        "n_prompts_total": prompts_total(index),
        "n_tokens_in_prompt": int(context.get("context_size", 0)),
        "dataset": str(index.meta.get("dataset", "")),
        "decoder_weights_dist": [],
        "activations": _activations(record),
        "vector": [],
    }


def prompts_total(index: FeatureIndex) -> int:
    """About how many contexts the index read: its tokens over the scored tokens per context
    (BOS excluded where the context policy excludes it), rounded up."""
    context = index.meta.get("context", {})
    size = int(context.get("context_size", 0))
    if size < 1:
        return 0
    bos = bool(context.get("prepend_bos")) and bool(context.get("exclude_special", True))
    return math.ceil(int(index.meta["tokens"]) / max(size - bos, 1))


def default_source_id(index: FeatureIndex) -> str:
    kind = Site.parse(index.meta["site"]).kind
    return f"saescope-{SITE_SHORT[kind]}-{index.n_features}"


def batches(index: FeatureIndex, cfg: NeuronpediaConfig) -> Iterator[dict[str, Any]]:
    """The batches of every feature of ``index``, ``cfg.batch_size`` features each, in order."""
    site = Site.parse(index.meta["site"])
    model_id = cfg.model_id or str(index.meta["model"])
    sae_set = cfg.source_id or default_source_id(index)
    for start in range(0, index.n_features, cfg.batch_size):
        stop = min(start + cfg.batch_size, index.n_features)
        yield {
            "model_id": model_id,
            "layer": site.layer,
            "sae_set": sae_set,
            "sae_id_suffix": None,
            "features": [feature_json(index, index.feature(f)) for f in range(start, stop)],
        }


def export_neuronpedia(
    index_path: str | Path, out: str | Path, cfg: NeuronpediaConfig = NeuronpediaConfig()
) -> list[Path]:
    """Write ``out/batch-<i>.json`` for every feature of the index at ``index_path`` and
    ``out/run_settings.json``; returns the batch paths. Each file is written atomically; an
    ``out`` that already holds batches is refused (stale batches of another export would be
    imported with these)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SaescopeError(f"--out {out} is a file; give a directory for the batch-*.json files")
    with FeatureIndex(index_path) as index:
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe = out / f".write-test-{os.getpid()}"
            probe.touch()
            probe.unlink()
        except OSError as err:
            raise SaescopeError(
                f"cannot write the export to {out} ({err.strerror or err}); give a directory "
                "you can write to with --out"
            ) from err
        stale = sorted(out.glob("batch-*.json"))
        if stale:
            raise SaescopeError(
                f"{out} already holds {len(stale)} batch-*.json files ({stale[0].name}, ...); "
                "Neuronpedia imports every batch in the folder: export into an empty directory "
                "or remove them first"
            )
        paths = []
        for i, batch in enumerate(batches(index, cfg)):
            path = out / f"batch-{i}.json"
            write_atomic(path, strict_json(batch, indent=None).encode())
            paths.append(path)
        settings = {
            "layout": LAYOUT,
            "saescope_version": __version__,
            "index": str(Path(index_path).resolve()),
            "source": index.meta.get("source"),
            "site": index.meta["site"],
            "hook_name": Site.parse(index.meta["site"]).tl_name,
            "site_out": index.meta.get("site_out", index.meta["site"]),  # a transcoder's output
            "model": index.meta["model"],
            "model_id": cfg.model_id or str(index.meta["model"]),
            "sae_set": cfg.source_id or default_source_id(index),
            "layer": Site.parse(index.meta["site"]).layer,
            "features": index.n_features,
            "batch_size": cfg.batch_size,
            "batches": len(paths),
            "dataset": index.meta.get("dataset"),
            "n_prompts_total": prompts_total(index),
            "n_tokens_in_prompt": int(index.meta.get("context", {}).get("context_size", 0)),
            "tokens": index.meta["tokens"],
        }
        write_atomic(out / "run_settings.json", strict_json(settings).encode())
    return paths
