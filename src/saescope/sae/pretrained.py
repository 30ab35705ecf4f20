"""Known pretrained SAE releases: one ``Release`` entry each, resolved through Hugging Face.

A pretrained name is ``RELEASE/SAE_ID`` (SAELens' release names), e.g.
``gemma-scope-2-270m-pt-res/layer_6_width_16k_l0_small``: the files of folder
``folder_prefix + SAE_ID`` of the release's repository, read from the local Hugging Face cache,
else downloaded where the hub is reachable, else an error naming what to download. Adding a
release is adding one entry to ``RELEASES``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from saescope.errors import SaescopeError

_GS2_ID = r"layer_(?P<layer>\d+)_width_(?P<width>\w+?)_l0_(?P<l0>small|medium|big)"
_GS1_ID = r"layer_(?P<layer>\d+)/width_(?P<width>\w+)/average_l0_(?P<l0>\d+)"
_LS_ID = r"Llama3_1-8B-Base-L(?P<layer>\d+)[RAM]-(?P<width>\d+x)"
_GS2_FILES = ("params.safetensors", "config.json")
_GS2_L0 = "small ~20, medium ~60, big ~150 (layer 5: 18 / 55 / 135)"


@dataclass(frozen=True)
class Release:
    """One published set of SAEs."""

    name: str
    """The release's name, the part of a pretrained name before the first ``/``."""
    repo: str
    """Hugging Face repository id."""
    model: str
    """The model it was trained on (saescope alias or hub id)."""
    site_kind: str | None
    """saescope's site kind (``resid_post``, ...) at each layer; None where saescope has none."""
    hook: str
    """The release's own hook name, as published."""
    format: str
    """A key of ``saescope.sae.formats.FORMATS``."""
    id_pattern: str
    """Regular expression an SAE id must match (groups ``layer``, ``width``)."""
    files: tuple[str, ...]
    """Files of each SAE folder (the weights first)."""
    layers: tuple[int, ...]
    widths: tuple[str, ...]
    l0: str
    """The L0s on offer, as published."""
    folder_prefix: str = ""

    def folder(self, sae_id: str) -> str:
        """The repository folder of ``sae_id``; an error listing what exists if it does not."""
        m = re.fullmatch(self.id_pattern, sae_id)
        if m is None:
            raise SaescopeError(
                f"{self.name}/{sae_id}: SAE ids of {self.name} look like {self.example()}"
            )
        layer, width = int(m.group("layer")), m.group("width")
        if layer not in self.layers or width not in self.widths:
            raise SaescopeError(
                f"{self.name}/{sae_id}: {self.name} has layers {list(self.layers)} and widths "
                f"{list(self.widths)}, not layer {layer} width {width}"
            )
        return self.folder_prefix + sae_id

    def example(self) -> str:
        layer, width = self.layers[0], self.widths[0]
        if self.format == "gemma_scope_2":
            return f"layer_{layer}_width_{width}_l0_small"
        if self.format == "gemma_scope":
            return f"layer_{layer}/width_{width}/average_l0_<N>"
        kind = self.repo.rpartition("-LX")[2][0]  # fnlp/Llama3_1-8B-Base-LX{R|M|A}-{width}
        return f"Llama3_1-8B-Base-L{layer}{kind}-{width}"


def _gs2(
    size: str,
    kind: str,
    folder: str,
    hook: str,
    layers: tuple[int, ...],
    widths: tuple[str, ...],
    l0: str = _GS2_L0,
) -> Release:
    return Release(
        name=f"gemma-scope-2-{size}-pt-{kind}",
        repo=f"google/gemma-scope-2-{size}-pt",
        model="gemma-3-270m" if size == "270m" else f"google/gemma-3-{size}-pt",
        site_kind={"res": "resid_post", "mlp": "mlp_out", "att": None}[kind.removesuffix("-all")],
        hook=hook,
        format="gemma_scope_2",
        id_pattern=_GS2_ID,
        files=_GS2_FILES,
        layers=layers,
        widths=widths,
        l0=l0,
        folder_prefix=f"{folder}/",
    )


def _gs1(size: str, kind: str, layers: int, widths: tuple[str, ...]) -> Release:
    return Release(
        name=f"gemma-scope-{size}-pt-{kind}",
        repo=f"google/gemma-scope-{size}-pt-{kind}",
        model=f"google/gemma-2-{size}",
        site_kind={"res": "resid_post", "mlp": "mlp_out", "att": None}[kind],
        hook={"res": "hook_resid_post", "mlp": "hook_mlp_out", "att": "attn.hook_z"}[kind],
        format="gemma_scope",
        id_pattern=_GS1_ID,
        files=("params.npz",),
        layers=tuple(range(layers)),
        widths=widths,
        l0="several per layer and width, in the folder name (average_l0_<N>)",
    )


def _llama_scope(kind: str, width: str) -> Release:
    return Release(
        name=f"llama_scope_lx{kind.lower()}_{width}",
        repo=f"fnlp/Llama3_1-8B-Base-LX{kind}-{width}",
        model="meta-llama/Llama-3.1-8B",
        site_kind={"R": "resid_post", "M": "mlp_out", "A": "attn_out"}[kind],
        hook={"R": "hook_resid_post", "M": "hook_mlp_out", "A": "hook_attn_out"}[kind],
        format="llama_scope",
        id_pattern=_LS_ID.replace("[RAM]", kind),
        files=("checkpoints/final.safetensors", "hyperparams.json"),
        layers=tuple(range(32)),
        widths=(width,),
        l0="~50 (TopK k=50 before conversion to JumpReLU)",
    )


_GS2_LAYERS = (5, 9, 12, 15)
RELEASES: dict[str, Release] = {
    r.name: r
    for r in (
        _gs2(
            "270m",
            "res",
            "resid_post",
            "model.layers.{L}.output",
            _GS2_LAYERS,
            ("16k", "65k", "262k", "1m"),
        ),
        _gs2(
            "270m",
            "res-all",
            "resid_post_all",
            "model.layers.{L}.output",
            tuple(range(18)),
            ("16k", "262k"),
            "small ~10-20, big ~60-100",
        ),
        _gs2(
            "270m",
            "mlp",
            "mlp_out",
            "model.layers.{L}.post_feedforward_layernorm.output",
            _GS2_LAYERS,
            ("16k", "65k", "262k"),
        ),
        _gs2(
            "270m",
            "att",
            "attn_out",
            "model.layers.{L}.self_attn.o_proj.input",
            _GS2_LAYERS,
            ("16k", "65k", "262k"),
        ),
        _gs1("2b", "res", 26, ("16k", "65k")),
        _gs1("2b", "mlp", 26, ("16k", "65k")),
        _gs1("2b", "att", 26, ("16k", "65k")),
        _gs1("9b", "res", 42, ("16k", "131k")),
        _llama_scope("R", "8x"),
        _llama_scope("R", "32x"),
        _llama_scope("M", "8x"),
        _llama_scope("A", "8x"),
    )
}
"""Every known release, by name. Layers, widths and L0s as listed in SAELens'
pretrained_saes.yaml (6.54); Gemma Scope 2 attn_out SAEs read the per-head z before o_proj,
which is no saescope site (``site_kind`` None)."""


def releases(model: str | None = None) -> list[Release]:
    """The releases, those trained on ``model`` (alias or hub id, case-insensitive) if given."""
    if model is None:
        return list(RELEASES.values())
    want = model.lower().removeprefix("google/")
    return [r for r in RELEASES.values() if r.model.lower().removeprefix("google/") == want]


def is_pretrained_name(name: str) -> bool:
    return name.partition("/")[0] in RELEASES


def resolve(
    name: str, cache_dir: str | Path | None = None, offline: bool | None = None
) -> tuple[Path, str]:
    """(local folder, format) of pretrained ``name``: from the Hugging Face cache, else the hub
    (unless ``offline``; None: huggingface_hub's HF_HUB_OFFLINE), else an error naming the
    repository and folder to download."""
    release_name, _, sae_id = name.partition("/")
    release = RELEASES[release_name]
    folder = release.folder(sae_id)
    todo = (
        f"download folder {folder}/ of the Hugging Face repository {release.repo} "
        f"(huggingface-cli download {release.repo} --include '{folder}/*') and pass that "
        "folder, or a copy of it, instead"
    )
    try:
        import huggingface_hub
        from huggingface_hub import constants
    except ImportError as err:
        raise SaescopeError(f"{name}: huggingface_hub is not installed; {todo}") from err
    if offline is None:
        offline = constants.HF_HUB_OFFLINE
    paths = []
    for file in release.files:
        try:
            paths.append(
                huggingface_hub.hf_hub_download(
                    release.repo, f"{folder}/{file}", cache_dir=cache_dir, local_files_only=True
                )
            )
            continue
        except Exception:  # not in the cache (huggingface_hub's own error types)
            if offline:
                raise SaescopeError(f"{name} is not in the Hugging Face cache; {todo}") from None
        try:
            paths.append(
                huggingface_hub.hf_hub_download(
                    release.repo, f"{folder}/{file}", cache_dir=cache_dir
                )
            )
        except Exception as err:  # network, authentication (Gemma repos are gated), not found
            raise SaescopeError(
                f"{name}: could not fetch {file} from the hub ({type(err).__name__}: {err}); {todo}"
            ) from err
    root = Path(paths[0]).parent
    for _ in range(release.files[0].count("/")):
        root = root.parent
    return root, release.format
