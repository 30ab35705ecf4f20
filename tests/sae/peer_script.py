"""Run with the peer venv's python (SAELens, sparsify, dictionary_learning installed), never
imported by the test suite itself:

    python peer_script.py write OUT     each library saves SAEs with its own save functions,
                                        next to 1,000 input rows and its own encode / decode
    python peer_script.py read DIR      each library loads the SAEs saescope wrote into DIR
                                        (listed in DIR/manifest.json) and runs them on DIR/x

Every SAE directory gets ``io.safetensors``: ``x`` (N, d_in), ``latents`` (N, d_sae) dense,
``out`` (N, d_out) the library's forward output. Weights are random with non-zero biases and
positive thresholds, so that no term of a formula can be dropped unnoticed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# sparsify decodes with a Triton kernel whenever Triton is importable, which fails on a machine
# without a GPU; its eager path is the documented fallback.
os.environ.setdefault("SPARSIFY_DISABLE_TRITON", "1")

import torch
from safetensors.torch import load_file, save_file

D, M, D_OUT, K, N = 16, 48, 12, 6, 1000


def perturb_(module: torch.nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dtype.is_floating_point:
                noise = torch.randn(p.shape, generator=gen) * 0.3
                p.copy_((p.abs() * 0 + noise).abs() * 0.2 if "threshold" in name else p + noise)


def rows(seed: int, d: int = D) -> torch.Tensor:
    return torch.randn(N, d, generator=torch.Generator().manual_seed(seed))


def write_io(path: Path, x: torch.Tensor, latents: torch.Tensor, out: torch.Tensor) -> None:
    tensors = {"x": x, "latents": latents, "out": out}
    save_file(
        {k: v.detach().float().contiguous() for k, v in tensors.items()}, path / "io.safetensors"
    )


def write_saelens(root: Path) -> list[dict]:
    from sae_lens import SAE

    entries = []
    specs = {
        "standard": {},
        "topk": {"k": K},
        "jumprelu": {},
        "gated": {},
        "transcoder": {"d_out": D_OUT},
        "skip_transcoder": {"d_out": D_OUT},
        "jumprelu_transcoder": {"d_out": D_OUT},
        "jumprelu_skip_transcoder": {"d_out": D_OUT},
    }
    for seed, (arch, extra) in enumerate(specs.items()):
        meta = {"model_name": "tiny", "hook_name": "blocks.1.hook_resid_post"}
        if "d_out" in extra:
            meta = {
                "model_name": "tiny",
                "hook_name": "blocks.1.ln2.hook_normalized",
                "hook_name_out": "blocks.1.hook_mlp_out",
            }
        cfg = {
            "architecture": arch,
            "d_in": D,
            "d_sae": M,
            "dtype": "float32",
            "device": "cpu",
            "apply_b_dec_to_input": "d_out" not in extra,
            "metadata": meta,
            **extra,
        }
        sae = SAE.from_dict(cfg)
        perturb_(sae, seed)
        sae.eval()
        path = root / "sae_lens" / arch
        sae.save_model(path)
        x = rows(100 + seed)
        with torch.no_grad():
            latents = sae.encode(x)
            out = sae(x)
        write_io(path, x, latents, out)
        entries.append({"lib": "sae_lens", "arch": arch, "path": str(path.relative_to(root))})
    return entries


def write_sparsify(root: Path) -> list[dict]:
    from sparsify import SparseCoder, SparseCoderConfig

    entries = []
    for seed, skip in enumerate((False, True)):
        cfg = SparseCoderConfig(num_latents=M, k=K, transcode=skip, skip_connection=skip)
        sc = SparseCoder(D, cfg)
        perturb_(sc, 10 + seed)
        name = "transcoder_skip" if skip else "topk"
        path = root / "sparsify" / name
        sc.save_to_disk(path)
        x = rows(200 + seed)
        with torch.no_grad():
            enc = sc.encode(x)
            out = sc.decode(enc.top_acts, enc.top_indices)
            if sc.W_skip is not None:
                out = out + x @ sc.W_skip.mT
            latents = torch.zeros(N, M).scatter_(1, enc.top_indices, enc.top_acts)
        write_io(path, x, latents, out)
        entries.append({"lib": "sparsify", "arch": name, "path": str(path.relative_to(root))})
    return entries


def write_dictionary_learning(root: Path) -> list[dict]:
    """Trainers build the dictionaries; ``trainSAE`` saves ``{"trainer": trainer.config}`` as
    config.json and the CPU state dict with ``torch.save`` as ae.pt: done the same way here."""
    import dictionary_learning.trainers as T

    made = {
        "standard": T.StandardTrainer(
            steps=10_000,
            activation_dim=D,
            dict_size=M,
            layer=1,
            lm_name="tiny",
            submodule_name="resid_post_layer_1",
        ),
        "gated": T.GatedSAETrainer(
            steps=10_000,
            activation_dim=D,
            dict_size=M,
            layer=1,
            lm_name="tiny",
            submodule_name="resid_post_layer_1",
        ),
        "jumprelu": T.JumpReluTrainer(
            steps=10_000,
            activation_dim=D,
            dict_size=M,
            layer=1,
            lm_name="tiny",
            submodule_name="resid_post_layer_1",
        ),
        "topk": T.TopKTrainer(
            steps=10_000,
            activation_dim=D,
            dict_size=M,
            k=K,
            layer=1,
            lm_name="tiny",
            submodule_name="resid_post_layer_1",
        ),
        "batch_topk": T.BatchTopKTrainer(
            steps=10_000,
            activation_dim=D,
            dict_size=M,
            k=K,
            layer=1,
            lm_name="tiny",
            submodule_name="resid_post_layer_1",
        ),
    }
    try:
        from dictionary_learning.trainers.matryoshka_batch_top_k import (
            MatryoshkaBatchTopKTrainer,
        )

        made["matryoshka"] = MatryoshkaBatchTopKTrainer(
            steps=10_000,
            activation_dim=D,
            dict_size=M,
            k=K,
            layer=1,
            lm_name="tiny",
            group_fractions=[0.25, 0.75],
            submodule_name="resid_post_layer_1",
        )
    except ImportError:
        pass
    entries = []
    for seed, (name, trainer) in enumerate(made.items()):
        ae = trainer.ae
        perturb_(ae, 20 + seed)
        if hasattr(ae, "threshold") and ae.threshold.dim() == 0:
            ae.threshold.fill_(0.3)  # what training leaves: the inference threshold
        ae.eval()
        path = root / "dictionary_learning" / name
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps({"trainer": trainer.config}, indent=4))
        torch.save({k: v.cpu() for k, v in ae.state_dict().items()}, path / "ae.pt")
        x = rows(300 + seed)
        with torch.no_grad():
            latents = ae.encode(x)
            out = ae.decode(latents)
        write_io(path, x, latents, out)
        entries.append(
            {"lib": "dictionary_learning", "arch": name, "path": str(path.relative_to(root))}
        )
    return entries


def read(root: Path) -> None:
    """Run the SAEs saescope wrote with the libraries' own loaders."""
    manifest = json.loads((root / "manifest.json").read_text())
    for entry in manifest:
        path = root / entry["path"]
        x = load_file(path / "x.safetensors")["x"]
        with torch.no_grad():
            if entry["lib"] == "sae_lens":
                from sae_lens import SAE

                sae = SAE.load_from_disk(str(path)).eval()
                latents, out = sae.encode(x), sae(x)
            else:
                from sparsify import SparseCoder

                sc = SparseCoder.load_from_disk(path)
                enc = sc.encode(x)
                out = sc.decode(enc.top_acts, enc.top_indices)
                if sc.W_skip is not None:
                    out = out + x @ sc.W_skip.mT
                latents = torch.zeros(len(x), sc.num_latents).scatter_(
                    1, enc.top_indices, enc.top_acts
                )
        write_io(path, x, latents, out)


def main(argv: list[str]) -> None:
    mode, where = argv[0], Path(argv[1])
    if mode == "read":
        read(where)
        return
    where.mkdir(parents=True, exist_ok=True)
    entries = write_saelens(where) + write_sparsify(where) + write_dictionary_learning(where)
    (where / "manifest.json").write_text(json.dumps(entries, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
