"""Batch Bayesian optimisation for InstructZero: kernel, surrogate, proposal, per-task state.

Plain torch/BoTorch/GPyTorch code (no Ray): the driver ships :class:`ProposalRequest`
snapshots to remote workers that call :func:`run_proposal`.
"""

from izray.bo.kernel import DEFAULT_EPS, InstructionCoupledKernel
from izray.bo.optimizer import (
    Candidate,
    Observation,
    OptimizerError,
    ProposalRequest,
    ProposalResult,
    TaskOptimizer,
    run_proposal,
)
from izray.bo.proposal import (
    ProposalOutcome,
    ProposalSettings,
    deduplicate,
    propose,
    propose_detailed,
)
from izray.bo.surrogate import (
    Hyperparameters,
    build_surrogate,
    fit_surrogate,
    get_hyperparameters,
    set_hyperparameters,
)

__all__ = [
    "DEFAULT_EPS",
    "Candidate",
    "Hyperparameters",
    "InstructionCoupledKernel",
    "Observation",
    "OptimizerError",
    "ProposalOutcome",
    "ProposalRequest",
    "ProposalResult",
    "ProposalSettings",
    "TaskOptimizer",
    "build_surrogate",
    "deduplicate",
    "fit_surrogate",
    "get_hyperparameters",
    "propose",
    "propose_detailed",
    "run_proposal",
    "set_hyperparameters",
]
