import pytest
import torch

from saescope.sae.kernels import batch_topk_coo, sparse_decode, sparse_encode, topk_coo


def _naive(x_c, W_enc, b_enc, W_dec, rows, latents):
    pre = x_c @ W_enc + b_enc
    mask = torch.zeros_like(pre, dtype=torch.bool)
    mask[rows, latents] = True
    z = (pre * mask).relu()
    return z @ W_dec


@pytest.mark.parametrize("select", [topk_coo, batch_topk_coo])
@pytest.mark.parametrize("centre", ["by autograd", "inside the kernel"])
@pytest.mark.parametrize("input_grad", [False, True])
def test_sparse_paths_match_dense_values_and_gradients(select, centre, input_grad) -> None:
    torch.manual_seed(0)
    B, d, n, k = 6, 8, 32, 3
    x = torch.randn(B, d)
    params = [x, torch.randn(d, n), torch.randn(n), torch.randn(n, d), torch.randn(d)]
    fast = [p.clone().requires_grad_(p is not x or input_grad) for p in params]
    slow = [p.clone().requires_grad_(p is not x or input_grad) for p in params]
    x1, W_enc, b_enc, W_dec, b_dec = fast
    with torch.no_grad():
        pre = (x1 - b_dec) @ W_enc + b_enc
    rows, latents = select(pre, k)
    if centre == "by autograd":
        values = sparse_encode(pre, x1 - b_dec, W_enc, b_enc, rows, latents)
    else:
        values = sparse_encode(pre, x1, W_enc, b_enc, rows, latents, b_dec)
    out = sparse_decode(rows, latents, values.relu(), W_dec, B) + b_dec
    x2, W_enc2, b_enc2, W_dec2, b_dec2 = slow
    ref = _naive(x2 - b_dec2, W_enc2, b_enc2, W_dec2, rows, latents) + b_dec2
    torch.testing.assert_close(out, ref)
    target = torch.randn(B, d)
    (out - target).pow(2).sum().backward()
    (ref - target).pow(2).sum().backward()
    for a, b in zip(fast, slow, strict=True):
        if a.requires_grad:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-4)


def test_batch_topk_selects_the_largest_of_the_batch() -> None:
    pre = torch.tensor([[5.0, 0.1, 0.2], [4.0, 3.0, 0.0]])
    rows, latents = batch_topk_coo(pre, 1)
    assert sorted(zip(rows.tolist(), latents.tolist(), strict=True)) == [(0, 0), (1, 0)]
    rows, latents = topk_coo(pre, 2)
    assert rows.tolist() == [0, 0, 1, 1]
