"""Proposal strategies: which schedule to evaluate next.

Every proposal draws its randomness from ``derive_seed(seed, index)`` inside
``torch.random.fork_rng``, never from a generator that runs across proposals,
so a resumed search proposes exactly what an uninterrupted one would.

A proposer never returns an evaluated schedule, and never feeds the GP a made-up
score for duplicates: if every optimiser candidate rounds to a known schedule,
it falls back to a random unseen one.
"""
import hashlib
import logging
import warnings
from dataclasses import dataclass
from typing import List, Protocol, Sequence, Set, Tuple

import torch

with warnings.catch_warnings():
    # linear_operator still uses torch.jit.script, deprecated in recent torch; not ours to fix.
    warnings.simplefilter("ignore", DeprecationWarning)
    from botorch.acquisition.logei import qLogNoisyExpectedImprovement
    from botorch.exceptions.errors import ModelFittingError
    from botorch.exceptions.warnings import BotorchWarning, OptimizationWarning
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.input import Normalize
    from botorch.models.transforms.outcome import Standardize
    from botorch.optim import optimize_acqf
    from botorch.sampling.normal import SobolQMCNormalSampler
    from gpytorch.mlls import ExactMarginalLogLikelihood
    from linear_operator.utils.errors import NanError, NotPSDError
    from linear_operator.utils.warnings import NumericalWarning

from ..schedules import Schedule
from .space import DTYPE, ScheduleSpace, SearchError

logger = logging.getLogger(__name__)

# What the proposers learn from: (schedule, BLEU) pairs in evaluation order.
Observation = Tuple[Schedule, float]


def derive_seed(seed: int, index: int, purpose: str = "") -> int:
    """A 63-bit seed that depends only on (seed, evaluation index, purpose)."""
    digest = hashlib.sha256(f"fairseq-tp:{seed}:{index}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


class Proposer(Protocol):
    name: str

    def propose(self, observations: Sequence[Observation], index: int) -> Schedule:
        """The schedule to evaluate as evaluation number ``index``."""


def _evaluated(observations: Sequence[Observation]) -> Set[Schedule]:
    return {schedule for schedule, _ in observations}


def _unseen_random(space: ScheduleSpace, evaluated: Set[Schedule], generator: torch.Generator) -> Schedule:
    unseen = space.remaining(evaluated, 1, generator)
    if not unseen:
        raise SearchError(f"every schedule in {space} has been evaluated")
    return unseen[0]


@dataclass
class RandomProposer:
    space: ScheduleSpace
    seed: int
    name: str = "random"

    def propose(self, observations: Sequence[Observation], index: int) -> Schedule:
        generator = torch.Generator().manual_seed(derive_seed(self.seed, index, self.name))
        return _unseen_random(self.space, _evaluated(observations), generator)


@dataclass
class BoTorchProposer:
    """GP + qLogNEI, optimised under the ordering constraints, then rounded.

    Initial conditions are built here rather than by BoTorch's polytope
    sampler (slow under inequality constraints): ``raw_samples`` valid
    schedules -- uniform ones plus perturbations of the best observed ones --
    scored by the acquisition function in one batch, of which
    ``num_restarts`` are refined by SLSQP.  The integer starts double as
    fallback candidates when every refined point rounds to a known schedule.
    """

    space: ScheduleSpace
    seed: int
    # Tuned for <= 0.5 s per proposal at ~40 observations on 2 CPU cores: the
    # cost is the GP fit plus SLSQP iterations (each one scores every restart),
    # and more iterations or restarts did not find better schedules on stubs.
    num_restarts: int = 6
    raw_samples: int = 512
    mc_samples: int = 128
    maxiter: int = 20
    around_best_fraction: float = 0.5  # share of raw samples perturbed around the incumbents
    name: str = "botorch"

    def propose(self, observations: Sequence[Observation], index: int) -> Schedule:
        evaluated = _evaluated(observations)
        proposal_seed = derive_seed(self.seed, index, self.name)
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            torch.manual_seed(proposal_seed)  # GP fitting retries and samplers draw from it
            _quiet_expected_warnings()
            acqf = None
            if len({bleu for _, bleu in observations}) > 1:  # equal scores teach the GP nothing
                try:
                    acqf = self._acquisition(observations)
                except _FIT_ERRORS as error:
                    logger.warning("GP fit failed (%s); proposing a random schedule", error)
            if acqf is not None:
                generator = torch.Generator().manual_seed(proposal_seed)
                candidates = self._candidates(acqf, observations, generator)
                fresh = [s for s in candidates if s not in evaluated]
                if fresh:
                    return self._best(acqf, fresh)
        generator = torch.Generator().manual_seed(derive_seed(self.seed, index, "fallback"))
        return _unseen_random(self.space, evaluated, generator)

    def _acquisition(self, observations: Sequence[Observation]):
        train_X = self.space.to_tensors(s for s, _ in observations)
        train_Y = torch.tensor([[bleu] for _, bleu in observations], dtype=DTYPE)
        model = SingleTaskGP(
            train_X,
            train_Y,
            input_transform=Normalize(self.space.dim, bounds=self.space.bounds()),
            outcome_transform=Standardize(m=1),
        )
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        sampler = SobolQMCNormalSampler(sample_shape=torch.Size([self.mc_samples]))
        return qLogNoisyExpectedImprovement(
            model, X_baseline=train_X, sampler=sampler, prune_baseline=True
        )

    def _candidates(
        self, acqf, observations: Sequence[Observation], generator: torch.Generator
    ) -> List[Schedule]:
        """Rounded SLSQP optima first, then their integer starting points."""
        starts = self._starting_points(acqf, observations, generator)
        constraints = self.space.inequality_constraints() or None
        optima, _ = optimize_acqf(
            acqf,
            bounds=self.space.bounds(),
            q=1,
            num_restarts=len(starts),
            batch_initial_conditions=self.space.to_tensors(starts).unsqueeze(-2),
            inequality_constraints=constraints,
            options={"maxiter": self.maxiter},
            return_best_only=False,
            retry_on_optimization_warning=False,
        )
        rounded = [self.space.to_schedule(x) for x in optima.reshape(-1, self.space.dim)]
        return list(dict.fromkeys(rounded + starts))  # unique, order kept

    def _starting_points(
        self, acqf, observations: Sequence[Observation], generator: torch.Generator
    ) -> List[Schedule]:
        space = self.space
        n_local = int(self.raw_samples * self.around_best_fraction)
        pool = [space.random_schedule(generator) for _ in range(self.raw_samples - n_local)]
        pool += self._around_best(observations, n_local, generator)
        pool = list(dict.fromkeys(pool))
        scores = self._scores(acqf, pool)
        top = torch.topk(scores, min(self.num_restarts, len(pool))).indices.tolist()
        return [pool[i] for i in top]

    def _around_best(self, observations, count: int, generator: torch.Generator) -> List[Schedule]:
        """Gaussian perturbations of the best few observed schedules (cf. BoTorch's
        ``sample_around_best``): where the GP's optimum usually is, and where
        uniform samples in a large ``T`` rarely land."""
        if count <= 0 or not observations:
            return []
        ranked = sorted(observations, key=lambda o: -o[1])[: max(1, len(observations) // 10)]
        centres = self.space.to_tensors(s for s, _ in ranked)
        picks = centres[torch.randint(len(centres), (count,), generator=generator)]
        scales = torch.tensor([0.01, 0.03, 0.1], dtype=DTYPE)  # of the range, mixed
        sigma = scales[torch.randint(len(scales), (count, 1), generator=generator)] * self.space.upper
        noise = torch.randn(picks.shape, generator=generator, dtype=DTYPE) * sigma
        return [self.space.to_schedule(x) for x in picks + noise]

    def _scores(self, acqf, schedules: List[Schedule]) -> torch.Tensor:
        with torch.no_grad():
            return acqf(self.space.to_tensors(schedules).unsqueeze(-2))

    def _best(self, acqf, schedules: List[Schedule]) -> Schedule:
        return schedules[int(torch.argmax(self._scores(acqf, schedules)))]


# Degenerate data (e.g. all scores equal) can defeat the GP; propose randomly then.
_FIT_ERRORS = (ModelFittingError, NanError, NotPSDError)


def _quiet_expected_warnings() -> None:
    """Warnings that are expected on small, noiseless BLEU data and say nothing to the user."""
    warnings.simplefilter("ignore", OptimizationWarning)  # SLSQP/L-BFGS stopping early
    warnings.simplefilter("ignore", NumericalWarning)  # jitter added to near-duplicate inputs
    # qLogNEI falls back from its cached Cholesky update on near-duplicate inputs; harmless.
    warnings.filterwarnings("ignore", message="Low-rank cholesky updates failed", category=BotorchWarning)


def make_proposer(strategy: str, space: ScheduleSpace, seed: int) -> Proposer:
    if strategy == "botorch":
        return BoTorchProposer(space, seed)
    if strategy == "random":
        return RandomProposer(space, seed)
    raise ValueError(f"unknown search strategy {strategy!r} (choose botorch or random)")
