"""InstructZero's instruction-coupled kernel (Chen et al., 2023).

The kernel measures the similarity of two soft-prompt points ``z`` and ``z'`` through
the instructions already observed: the latent kernel ``k_Z`` interpolates from the
``n`` observed points ``Z`` onto the query points, and the score kernel ``K_S``
compares the observed instructions by their per-example dev-score vectors::

    k(z, z') = k_Z(z, Z) (K_ZZ + eps I)^-1 K_S (K_ZZ + eps I)^-1 k_Z(Z, z')

Writing ``A = K_ZZ + eps I`` and ``M = A^-1 K_S A^-1`` this is ``k_Z(z, Z) M k_Z(Z, z')``:
a congruence of the positive semi-definite ``K_S``, hence positive semi-definite by
construction for any inputs.

This kernel has rank ``<= n``: its posterior variance at any ``z`` is bounded by roughly
``sigma_noise^2 ||A^-1 k_Z(Z, z)||^2``, so away from the data it is overconfident (izray
measured +/-2 sigma intervals covering under 10% of next-batch scores). With ``residual``
``rho > 0`` the kernel adds the Nystrom residual of the latent kernel::

    k(z, z') += rho [k_Z(z, z') - k_Z(z, Z) A^-1 k_Z(Z, z')]

which is positive semi-definite (a Schur complement), ~0 at and between nearby training
points, and ``rho`` far from them. The posterior mean near the data is the instruction-coupled
one; far from it the model admits ``rho`` (in standardized units) of unexplained variance,
and the acquisition explores there. ``rho = 0`` is the paper's kernel.

``A`` is factorised by Cholesky and all inverses are triangular solves. Outside of
training the factor, ``M`` and ``M K_ZZ`` are cached per hyperparameter values, so the
thousands of posterior evaluations of an acquisition optimisation only pay for the
``q x n`` cross-covariance to ``Z`` and two small matrix products.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from gpytorch.kernels import Kernel, MaternKernel
from linear_operator.utils.errors import NotPSDError
from torch import Tensor

from izray.errors import IzrayError

DEFAULT_EPS = 1e-4
"""Jitter on ``K_ZZ``: keeps its Cholesky factor well-posed when two observed ``z`` nearly
coincide, while staying negligible next to the unit diagonal of the latent kernel."""


@dataclass
class _Factors:
    """Quantities that depend only on hyperparameters and training data (``n = |Z|``).

    Attributes:
        k_zz: ``n x n`` latent kernel matrix ``K_ZZ`` (without jitter).
        m: ``n x n`` middle matrix ``A^-1 K_S A^-1``.
        m_kzz: ``n x n`` product ``M K_ZZ`` (cross-covariance to ``Z`` is ``k_Z(x, Z) M K_ZZ``).
        a_inv: ``n x n`` ``A^-1`` for the residual term (``0 x 0`` when it is off).
    """

    k_zz: Tensor
    m: Tensor
    m_kzz: Tensor
    a_inv: Tensor


class InstructionCoupledKernel(Kernel):
    """Instruction-coupled kernel over soft-prompt points.

    Args:
        train_z: ``n x d`` observed points ``Z`` (the GP's training inputs).
        train_s: ``n x m`` per-example dev-score vectors of the instructions decoded from
            ``Z`` (row ``i`` belongs to ``train_z[i]``). Rows may repeat.
        latent_kernel: kernel ``k_Z`` on ``d``-dimensional points; defaults to an ARD
            Matern-5/2 kernel. It must not carry an output scale of its own.
        score_kernel: kernel ``K_S`` on ``m``-dimensional score vectors; defaults to a
            Matern-5/2 kernel with a single lengthscale.
        eps: jitter added to the diagonal of ``K_ZZ`` before solving.
        residual: weight ``rho >= 0`` of the Nystrom residual of ``k_Z`` (0: the paper's
            kernel).
        cache: whether to cache the factorisation outside of training.

    Inputs are ``... x n1 x d`` and ``... x n2 x d`` with broadcastable batch shapes, e.g.
    ``batch x q x d`` from acquisition functions; the output is ``... x n1 x n2`` or, with
    ``diag=True``, ``... x n1``.

    Outside of training (``kernel.eval()``) the factors are cached and treated as
    constants with respect to the hyperparameters (gradients still flow to the inputs);
    put the kernel in training mode to differentiate with respect to hyperparameters.

    An input block equal to ``Z`` (``... x n x d``, as ``ExactGP`` builds the test-train
    covariance) is served from ``K_ZZ`` instead of recomputing ``batch x n x n`` latent
    covariances (1.7x faster acquisition optimisation at ``n = 150``); no gradient flows
    to such a block, which is what an acquisition optimiser wants.
    """

    has_lengthscale = False

    def __init__(
        self,
        train_z: Tensor,
        train_s: Tensor,
        *,
        latent_kernel: Kernel | None = None,
        score_kernel: Kernel | None = None,
        eps: float = DEFAULT_EPS,
        residual: float = 0.0,
        cache: bool = True,
    ) -> None:
        if train_z.dim() != 2 or train_s.dim() != 2 or train_z.shape[0] != train_s.shape[0]:
            raise IzrayError(
                "InstructionCoupledKernel needs train_z (n x d) and train_s (n x m) with the "
                f"same n; got shapes {tuple(train_z.shape)} and {tuple(train_s.shape)}."
            )
        if train_z.shape[0] < 1:
            raise IzrayError("InstructionCoupledKernel needs at least one observed point.")
        if eps <= 0:
            raise IzrayError(f"InstructionCoupledKernel eps must be positive, got {eps}.")
        if not residual >= 0:
            raise IzrayError(f"InstructionCoupledKernel residual must be >= 0, got {residual}.")
        super().__init__()
        d = train_z.shape[-1]
        self.register_buffer("train_z", train_z)
        self.register_buffer("train_s", train_s)
        self.latent_kernel = latent_kernel or MaternKernel(nu=2.5, ard_num_dims=d)
        self.score_kernel = score_kernel or MaternKernel(nu=2.5)
        self.eps = float(eps)
        self.residual = float(residual)
        self.cache_enabled = cache
        self.num_factorizations = 0
        self._cache_key: tuple | None = None
        self._cache: _Factors | None = None

    # ------------------------------------------------------------------ factors

    def clear_cache(self) -> None:
        """Drop the cached factorisation (it is rebuilt on the next evaluation)."""
        self._cache_key = None
        self._cache = None

    def train(self, mode: bool = True) -> InstructionCoupledKernel:
        """Set the mode; entering training mode drops the cache (BoTorch calls ``eval()``
        on every posterior, which keeps it)."""
        if mode:
            self.clear_cache()
        return super().train(mode)

    def _compute_factors(self) -> _Factors:
        z, s = self.train_z, self.train_s
        n = z.shape[0]
        k_zz = self.latent_kernel.forward(z, z)
        a = k_zz + self.eps * torch.eye(n, dtype=k_zz.dtype, device=k_zz.device)
        chol, info = torch.linalg.cholesky_ex(a)
        if bool(info.any()):
            raise NotPSDError(f"K_ZZ + {self.eps:g} I is not positive definite; increase eps.")
        self.num_factorizations += 1
        k_s = self.score_kernel.forward(s, s)
        # M = A^-1 K_S A^-1 by two Cholesky solves; symmetrise the round-off away.
        half = torch.cholesky_solve(k_s, chol)
        m = torch.cholesky_solve(half.mT, chol)
        m = 0.5 * (m + m.mT)
        a_inv = torch.cholesky_inverse(chol) if self.residual > 0 else m.new_zeros(0, 0)
        return _Factors(k_zz=k_zz, m=m, m_kzz=m @ k_zz, a_inv=a_inv)

    def _key(self) -> tuple:
        params = tuple(p.detach().clone() for p in self.parameters())
        buffers = (self.train_z, self.train_s)
        return (
            params,
            tuple((id(b), b._version, b.dtype, b.device) for b in buffers),
            self.eps,
            self.residual,
        )

    @staticmethod
    def _same_key(a: tuple, b: tuple) -> bool:
        if len(a[0]) != len(b[0]) or a[1:] != b[1:]:
            return False
        return all(
            x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y)
            for x, y in zip(a[0], b[0], strict=True)
        )

    def _factors(self) -> _Factors:
        if self.training or not self.cache_enabled:
            return self._compute_factors()
        key = self._key()
        stale = self._cache_key is None or not self._same_key(key, self._cache_key)
        if self._cache is None or stale:
            with torch.no_grad():
                self._cache = self._compute_factors()
            self._cache_key = key
        return self._cache

    # ------------------------------------------------------------------ forward

    def _is_train_z(self, x: Tensor) -> bool:
        z = self.train_z
        return x.shape[-2:] == z.shape and x.dtype == z.dtype and torch.equal(x, z.expand_as(x))

    def _cross(self, x: Tensor) -> Tensor:
        """``... x n1 x n`` latent cross-covariance ``k_Z(x, Z)``."""
        z = self.train_z.expand(*x.shape[:-2], *self.train_z.shape)
        return self.latent_kernel.forward(x, z)

    def _latent(self, x: Tensor, is_z: bool, f: _Factors) -> Tensor:
        """``k_Z(x, Z)``, taken from the factors when ``x`` is ``Z``."""
        return f.k_zz.expand(*x.shape[:-2], *f.k_zz.shape) if is_z else self._cross(x)

    def forward(
        self,
        x1: Tensor,
        x2: Tensor,
        diag: bool = False,
        last_dim_is_batch: bool = False,
        **params,
    ) -> Tensor:
        """Evaluate the kernel.

        Args:
            x1: ``... x n1 x d`` inputs.
            x2: ``... x n2 x d`` inputs.
            diag: return only the diagonal (requires ``n1 == n2``).
            last_dim_is_batch: unsupported.

        Returns:
            ``... x n1 x n2`` covariance, or ``... x n1`` if ``diag``.
        """
        if last_dim_is_batch:
            raise IzrayError("InstructionCoupledKernel does not support last_dim_is_batch.")
        f = self._factors()
        out = self._coupled(x1, x2, diag, f)
        if self.residual > 0:
            out = out + self.residual * self._residual(x1, x2, diag, f)
        return out

    def _residual(self, x1: Tensor, x2: Tensor, diag: bool, f: _Factors) -> Tensor:
        """``k_Z(x1, x2) - k_Z(x1, Z) A^-1 k_Z(Z, x2)`` (``... x n1 x n2`` or ``... x n1``)."""
        x1_is_z, x2_is_z = self._is_train_z(x1), self._is_train_z(x2)
        k1 = self._latent(x1, x1_is_z, f)
        k2 = k1 if x2 is x1 else self._latent(x2, x2_is_z, f)
        if diag:
            full = self.latent_kernel.forward(x1, x2, diag=True)
            return (full - ((k1 @ f.a_inv) * k2).sum(dim=-1)).clamp_min(0.0)
        if x2_is_z:  # k_Z(x, Z) (I - A^-1 K_ZZ) = eps k_Z(x, Z) A^-1
            out = self.eps * k1 @ f.a_inv
            return 0.5 * (out + out.mT) if x1_is_z else out
        if x1_is_z:
            return (self.eps * k2 @ f.a_inv).mT
        return self.latent_kernel.forward(x1, x2) - k1 @ f.a_inv @ k2.mT

    def _coupled(self, x1: Tensor, x2: Tensor, diag: bool, f: _Factors) -> Tensor:
        """The instruction-coupled term ``k_Z(x1, Z) M k_Z(Z, x2)``."""
        x1_is_z = self._is_train_z(x1)
        x2_is_z = self._is_train_z(x2)
        if diag:
            k1 = self._latent(x1, x1_is_z, f)
            k2 = k1 if x2 is x1 else self._latent(x2, x2_is_z, f)
            return ((k1 @ f.m) * k2).sum(dim=-1)
        if x2_is_z:
            if x1_is_z:  # the training covariance K_ZZ M K_ZZ, kept exactly symmetric
                out = f.k_zz @ f.m_kzz
                out = 0.5 * (out + out.mT)
            else:
                out = self._cross(x1) @ f.m_kzz
            batch = torch.broadcast_shapes(x1.shape[:-2], x2.shape[:-2])
            return out.expand(*batch, *out.shape[-2:])
        if x1_is_z:
            out = (self._cross(x2) @ f.m_kzz).mT
            batch = torch.broadcast_shapes(x1.shape[:-2], x2.shape[:-2])
            return out.expand(*batch, *out.shape[-2:])
        k1 = self._cross(x1)
        k2 = k1 if x2 is x1 else self._cross(x2)
        return k1 @ f.m @ k2.mT
