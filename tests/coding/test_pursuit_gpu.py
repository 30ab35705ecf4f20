"""The pursuits on CUDA against the CPU. Skipped without CUDA: pytest -m gpu tests/coding."""

import pytest
import torch

from saescope.coding import pursuit

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


@pytest.mark.parametrize("method", ["mp", "omp", "gp"])
@pytest.mark.parametrize("nonneg", [True, False])
def test_cuda_codes_as_the_cpu_does(method: str, nonneg: bool) -> None:
    g = torch.Generator().manual_seed(0)
    D = torch.randn(512, 64, generator=g, dtype=torch.float64)
    x = torch.randn(256, 64, generator=g, dtype=torch.float64)
    cpu = pursuit(method, x, D, 16, nonneg).to_dense()  # type: ignore[arg-type]
    cuda = pursuit(method, x.cuda(), D.cuda(), 16, nonneg).to_dense()  # type: ignore[arg-type]
    torch.testing.assert_close(cuda.cpu(), cpu)


@pytest.mark.parametrize("method", ["mp", "omp", "gp"])
def test_bf16_selection_on_cuda_reconstructs_about_as_well(method: str) -> None:
    g = torch.Generator().manual_seed(0)
    D = torch.randn(4096, 256, generator=g)
    D /= D.norm(dim=1, keepdim=True)
    x = torch.randn(1024, 256, generator=g)
    fvu = {}
    for dtype in (None, torch.bfloat16):
        lat = pursuit(method, x.cuda(), D.cuda(), 32, select_dtype=dtype)  # type: ignore[arg-type]
        fvu[dtype] = float((x.cuda() - lat.to_dense() @ D.cuda()).pow(2).sum() / x.pow(2).sum())
    assert fvu[torch.bfloat16] < fvu[None] * 1.02, fvu
