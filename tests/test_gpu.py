"""The CUDA paths against the CPU ones. CI has no GPU: everything here skips without CUDA.

pytest -m gpu tests/test_gpu.py      # on a machine with a GPU
"""

import pytest
import torch
from tiny_models import tiny_corpus, tiny_model
from train.synthetic import Superposition

from saescope.activations import capture, open_activations
from saescope.data import ContextConfig
from saescope.sae import SAEConfig, SAEMetadata, build_sae
from saescope.sae.kernels import sparse_decode, sparse_encode, topk_coo
from saescope.steer import FeatureIntervention, GenerationConfig, clamp, generate_with, intervene
from saescope.train import OptimConfig, SAETrainer, TrainConfig, fit
from saescope.train.objectives import fvu

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_sparse_kernels_on_cuda_match_the_cpu() -> None:
    g = torch.Generator().manual_seed(0)
    B, d, n, k = 64, 48, 512, 8
    tensors = [
        torch.randn(B, d, generator=g),
        torch.randn(d, n, generator=g) / d**0.5,
        torch.randn(n, generator=g) * 0.1,
        torch.randn(n, d, generator=g),
        torch.randn(d, generator=g),
    ]
    results = {}
    for device in ("cpu", "cuda"):
        x, *params = [t.detach().clone().to(device) for t in tensors]
        for p in params:
            p.requires_grad_()
        W_enc, b_enc, W_dec, b_dec = params
        with torch.no_grad():
            pre = (x - b_dec) @ W_enc + b_enc
        rows, latents = topk_coo(pre, k)
        values = sparse_encode(pre, x, W_enc, b_enc, rows, latents, b_dec).relu()
        out = sparse_decode(rows, latents, values, W_dec, B) + b_dec
        out.pow(2).sum().backward()
        results[device] = [out.detach().cpu(), *(p.grad.cpu() for p in params)]
    for on_cpu, on_cuda in zip(results["cpu"], results["cuda"], strict=True):
        torch.testing.assert_close(on_cuda, on_cpu, rtol=1e-4, atol=1e-4)


def _train(device: str, encoder_dtype: str = "float32") -> float:
    data = Superposition(d=32, m=128, l0=4)
    sae = build_sae(SAEConfig(d_in=32, d_sae=256, architecture="topk", k=6), seed=0).to(device)
    cfg = TrainConfig(
        tokens=150 * 512,
        batch_size=512,
        init_rows=1024,
        checkpoint_every=0,
        encoder_dtype=encoder_dtype,
        optim=OptimConfig(lr=1e-3),
    )
    [trained] = fit([SAETrainer(sae, cfg, name="topk")], data.batches(150, 512), progress=False)
    x = data.batch(10**6, 2048)
    return float(fvu(x, trained.to("cpu")(x).x_hat.detach()))


def test_topk_training_on_cuda_matches_the_cpu() -> None:
    on_cpu, on_cuda = _train("cpu"), _train("cuda")
    assert on_cuda < 0.5
    assert abs(on_cuda - on_cpu) < 0.1 * on_cpu, (on_cpu, on_cuda)
    assert _train("cuda", "bfloat16") < 0.5


def test_capture_on_cuda_matches_the_cpu(tokenizer, tmp_path) -> None:
    for device in ("cpu", "cuda"):
        model = tiny_model("llama", tokenizer)
        model.hf.to(device)
        capture(
            model,
            ["layers.1.resid_post"],
            tmp_path / device,
            tokens=301,
            corpus=tiny_corpus(),
            context=ContextConfig(16),
            dtype="float32",
            batch_size=4,
            progress=False,
        )
    cpu, cuda = (open_activations(tmp_path / device) for device in ("cpu", "cuda"))
    assert cpu.manifest.rows == cuda.manifest.rows
    index = torch.arange(cpu.manifest.rows)
    torch.testing.assert_close(cuda.rows(index), cpu.rows(index), rtol=1e-4, atol=1e-4)


def test_steering_on_cuda_keeps_the_no_op_and_kv_cache_guarantees(tokenizer) -> None:
    site = "layers.1.resid_post"
    model = tiny_model("gemma3", tokenizer)
    model.hf.to("cuda")
    cfg = SAEConfig(
        d_in=64, d_sae=128, architecture="topk", k=8, metadata=SAEMetadata(hook_name=site)
    )
    sae = build_sae(cfg, seed=1).eval().to("cuda")
    ids = torch.randint(4, 100, (2, 10), device="cuda")
    with torch.no_grad():
        clean = model.hf(ids).logits
        with intervene(model, [FeatureIntervention(sae, ())]):
            assert torch.equal(model.hf(ids).logits, clean)
    steer = [FeatureIntervention(sae, (clamp(5, 30.0),))]
    prompts = ["Bridges span", "The reliability of Wikipedia is"]
    runs = {
        cache: generate_with(
            model, prompts, steer, GenerationConfig(max_new_tokens=8, use_cache=cache)
        )
        for cache in (True, False)
    }
    for cached, uncached in zip(runs[True], runs[False], strict=True):
        assert torch.equal(cached.tokens, uncached.tokens)
