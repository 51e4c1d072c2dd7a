"""Tests of izray.bo.kernel: formula, PSD-ness, batch shapes, caching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from izray.bo.kernel import DEFAULT_EPS, InstructionCoupledKernel
from izray.errors import IzrayError

D, M, N = 3, 5, 8
LATENT_LS = np.array([0.3, 0.5, 0.7])
SCORE_LS = 0.8


def _matern52(a: np.ndarray, b: np.ndarray, ls: np.ndarray | float) -> np.ndarray:
    r = np.sqrt((((a[:, None, :] - b[None, :, :]) / ls) ** 2).sum(-1))
    return (1.0 + np.sqrt(5.0) * r + 5.0 / 3.0 * r**2) * np.exp(-np.sqrt(5.0) * r)


def _reference(a: np.ndarray, b: np.ndarray, z: np.ndarray, s: np.ndarray) -> np.ndarray:
    """k(a, b) = k_Z(a, Z) (K_ZZ + eps I)^-1 K_S (K_ZZ + eps I)^-1 k_Z(Z, b), in numpy."""
    a_mat = _matern52(z, z, LATENT_LS) + DEFAULT_EPS * np.eye(len(z))
    k_s = _matern52(s, s, SCORE_LS)
    left = np.linalg.solve(a_mat, _matern52(z, a, LATENT_LS))  # n x |a|
    right = np.linalg.solve(a_mat, _matern52(z, b, LATENT_LS))  # n x |b|
    return left.T @ k_s @ right


def _data(seed: int, n: int = N, duplicate_rows: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.rand(n, D, generator=g, dtype=torch.double)
    s = (torch.rand(n, M, generator=g, dtype=torch.double) > 0.5).double()
    if duplicate_rows:  # two z decoding to the same instruction
        s[3] = s[1]
    return z, s


def _kernel(z: torch.Tensor, s: torch.Tensor, **kwargs) -> InstructionCoupledKernel:
    k = InstructionCoupledKernel(z, s, **kwargs).double()
    k.latent_kernel.lengthscale = torch.tensor([LATENT_LS.tolist()], dtype=torch.double)
    k.score_kernel.lengthscale = SCORE_LS
    return k


@pytest.mark.parametrize("training", [True, False])
def test_matches_numpy_formula(training: bool) -> None:
    z, s = _data(0)
    k = _kernel(z, s).train(training)
    x = torch.rand(4, D, generator=torch.Generator().manual_seed(1), dtype=torch.double)
    zn, sn, xn = z.numpy(), s.numpy(), x.numpy()
    with torch.no_grad():
        for a, b, an, bn in [(x, x, xn, xn), (x, z, xn, zn), (z, x, zn, xn), (z, z, zn, zn)]:
            got = k(a, b).to_dense().numpy()
            want = _reference(an, bn, zn, sn)
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
            diag = k(a, a, diag=True).numpy()
            np.testing.assert_allclose(diag, np.diag(_reference(an, an, zn, sn)), atol=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_positive_semidefinite(seed: int) -> None:
    z, s = _data(seed, n=12)
    k = _kernel(z, s).eval()
    g = torch.Generator().manual_seed(100 + seed)
    x = torch.cat([torch.rand(30, D, generator=g, dtype=torch.double), z[:5], z[:2]])
    with torch.no_grad():
        mat = k(x, x).to_dense()
    assert torch.allclose(mat, mat.mT, atol=1e-12)
    assert float(torch.linalg.eigvalsh(mat).min()) >= -1e-8
    with torch.no_grad():
        train = k(z, z).to_dense()  # the training block takes a cached shortcut
    assert torch.equal(train, train.mT)
    assert float(torch.linalg.eigvalsh(train).min()) >= -1e-8


@pytest.mark.parametrize("training", [True, False])
def test_batch_shapes_and_diag_agree_with_full(training: bool) -> None:
    z, s = _data(2)
    k = _kernel(z, s).train(training)
    g = torch.Generator().manual_seed(3)
    xb = torch.rand(4, 2, 3, D, generator=g, dtype=torch.double)  # batch x q x d
    with torch.no_grad():
        full = k(xb, xb).to_dense()
        diag = k(xb, xb, diag=True)
        assert full.shape == (4, 2, 3, 3)
        assert diag.shape == (4, 2, 3)
        torch.testing.assert_close(torch.diagonal(full, dim1=-2, dim2=-1), diag)
        for i in range(4):
            for j in range(2):
                torch.testing.assert_close(full[i, j], k(xb[i, j], xb[i, j]).to_dense())
        # test-train block as an ExactGP builds it: Z expanded to the batch, or unbatched.
        cross = k(xb, z.expand(4, 2, N, D)).to_dense()
        assert cross.shape == (4, 2, 3, N)
        torch.testing.assert_close(cross, k(xb, z).to_dense())
        torch.testing.assert_close(cross[1, 0], k(xb[1, 0], z).to_dense())
        torch.testing.assert_close(k(z, xb).to_dense(), cross.mT)


def test_eval_caches_factorisation_until_hyperparameters_change() -> None:
    z, s = _data(4)
    k = _kernel(z, s).eval()
    x = torch.rand(6, 2, D, dtype=torch.double)
    with torch.no_grad():
        first = k(x, x).to_dense()
        for _ in range(5):
            k(x, z).to_dense()
    assert k.num_factorizations == 1
    k.latent_kernel.lengthscale = torch.tensor([[0.4, 0.4, 0.4]], dtype=torch.double)
    with torch.no_grad():
        second = k(x, x).to_dense()
    assert k.num_factorizations == 2
    assert not torch.allclose(first, second)
    k.train()
    with torch.no_grad():
        k(x, x).to_dense()
        k(x, x).to_dense()
    assert k.num_factorizations == 4


def test_eval_gradients_wrt_inputs_match_training_mode() -> None:
    z, s = _data(5)
    grads = []
    for training in (True, False):
        k = _kernel(z, s).train(training)
        x = torch.rand(2, 3, D, generator=torch.Generator().manual_seed(6), dtype=torch.double)
        x.requires_grad_(True)
        (k(x, z).to_dense().sum() + k(x, x).to_dense().sum()).backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_training_mode_differentiates_hyperparameters() -> None:
    z, s = _data(7)
    k = _kernel(z, s).train()
    k(z, z).to_dense().sum().backward()
    assert k.latent_kernel.raw_lengthscale.grad is not None
    assert k.score_kernel.raw_lengthscale.grad is not None


def test_rejects_bad_shapes() -> None:
    with pytest.raises(IzrayError):
        InstructionCoupledKernel(torch.rand(4, 2), torch.rand(3, 5))
    with pytest.raises(IzrayError):
        InstructionCoupledKernel(torch.rand(4, 2), torch.rand(4, 5), eps=0.0)


def _reference_residual(a, b, z, s, rho):
    """The residual term rho [k_Z(a, b) - k_Z(a, Z) (K_ZZ + eps I)^-1 k_Z(Z, b)], in numpy."""
    a_mat = _matern52(z, z, LATENT_LS) + DEFAULT_EPS * np.eye(len(z))
    nys = _matern52(a, z, LATENT_LS) @ np.linalg.solve(a_mat, _matern52(z, b, LATENT_LS))
    return rho * (_matern52(a, b, LATENT_LS) - nys)


@pytest.mark.parametrize("training", [True, False])
def test_residual_matches_numpy_formula_and_vanishes_at_the_data(training: bool) -> None:
    z, s = _data(4)
    k = _kernel(z, s, residual=2.5).train(training)
    x = torch.rand(4, D, generator=torch.Generator().manual_seed(5), dtype=torch.double)
    zn, sn, xn = z.numpy(), s.numpy(), x.numpy()
    with torch.no_grad():
        for a, b, an, bn in [(x, x, xn, xn), (x, z, xn, zn), (z, x, zn, xn), (z, z, zn, zn)]:
            want = _reference(an, bn, zn, sn) + _reference_residual(an, bn, zn, sn, 2.5)
            np.testing.assert_allclose(k(a, b).to_dense().numpy(), want, rtol=1e-6, atol=1e-8)
            if a is b:
                np.testing.assert_allclose(k(a, a, diag=True).numpy(), np.diag(want), atol=1e-8)
        plain = _kernel(z, s)
        # At the observed points the residual is ~0: the paper's kernel there.
        torch.testing.assert_close(k(z, z, diag=True), plain(z, z, diag=True), atol=1e-3, rtol=0)
        far = torch.full((1, D), 5.0, dtype=torch.double)  # far from every observed point
        assert float(plain(far, far, diag=True)) < 1e-6
        assert float(k(far, far, diag=True)) == pytest.approx(2.5, rel=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_residual_kernel_is_positive_semidefinite(seed: int) -> None:
    z, s = _data(seed, n=12)
    k = _kernel(z, s, residual=3.0).eval()
    x = torch.cat([torch.rand(30, D, generator=torch.Generator().manual_seed(seed),
                              dtype=torch.double), z[:4]])
    with torch.no_grad():
        mat = k(x, x).to_dense()
    assert torch.allclose(mat, mat.mT, atol=1e-12)
    assert float(torch.linalg.eigvalsh(mat).min()) >= -1e-8
    with pytest.raises(IzrayError, match="residual"):
        InstructionCoupledKernel(z, s, residual=-1.0)
