"""The BoTorch side of the search: the GP-based proposer and the posterior-mean ranking (imported only when
used, as BoTorch takes about a second to import)."""
import logging
import warnings
from dataclasses import dataclass
from typing import List, Optional, Sequence, Set

import torch

with warnings.catch_warnings():
    # linear_operator still uses torch.jit.script, deprecated in recent torch; not ours to fix.
    warnings.simplefilter("ignore", DeprecationWarning)
    from botorch.acquisition.analytic import LogExpectedImprovement
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
from .optimiser import Observation, _evaluated, _OwnStrategy, _unseen_random, derive_seed
from .space import DTYPE, ScheduleSpace

logger = logging.getLogger(__name__)


@dataclass
class BoTorchProposer(_OwnStrategy):
    """GP + qLogNEI, fitted once per batch; each pick chosen exactly or by a relaxation.

    Exact, where the space has at most ``exact_limit`` schedules: every unseen
    schedule is scored, with analytic LogEI first when there are more than
    ``prescreen`` of them, and qLogNEI (with the batch's earlier picks pending)
    picks among the best ``prescreen`` -- BoTorch's ``optimize_acqf_discrete``
    idea without its cost of qLogNEI on every choice.
    Relaxed, in larger spaces (T = 2000): qLogNEI optimised by SLSQP over the box
    under the ordering constraints, then rounded.  Initial conditions are built
    here rather than by BoTorch's polytope sampler (slow under inequality
    constraints): ``raw_samples`` valid schedules -- uniform ones plus
    perturbations of the best observed ones -- scored in one batch, of which
    ``num_restarts`` are refined.  The integer starts double as fallback
    candidates when every refined point rounds to a known schedule.
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
    # Exact up to this many schedules.  Measured (40 observations, 1 thread, AMD EPYC): analytic LogEI
    # over all 18,424 schedules of T = 50, N = 4 takes ~0.09 s, about 5 us a schedule, so 200k cost ~1 s
    # once per batch, what one relaxed pick (SLSQP from 6 starts) costs; past that, relax.
    exact_limit: int = 200_000
    prescreen: int = 512
    name: str = "botorch"

    def __post_init__(self):
        self._enumeration: Optional[torch.Tensor] = None

    def propose(self, observations: Sequence[Observation], index: int, count: int) -> List[Schedule]:
        taken, picks = _evaluated(observations), []
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            torch.manual_seed(derive_seed(self.seed, index, self.name))  # GP fitting retries draw from it
            _quiet_expected_warnings()
            acqf = None
            if len({bleu for _, bleu in observations}) > 1:  # equal scores teach the GP nothing
                try:
                    acqf = self._acquisition(observations)
                except _FIT_ERRORS as error:
                    logger.warning("GP fit failed (%s); proposing random schedules", error)
            exact = acqf is not None and self.space.size() <= self.exact_limit
            shortlist = self._shortlist(acqf, taken, max(b for _, b in observations)) if exact else None
            for i in range(count):
                pick = None
                if acqf is not None:
                    proposal_seed = derive_seed(self.seed, index + i, self.name)
                    torch.manual_seed(proposal_seed)
                    acqf.set_X_pending(self.space.to_tensors(picks) if picks else None)
                    if exact:
                        pick = self._best_of_shortlist(acqf, shortlist, picks)
                    else:
                        generator = torch.Generator().manual_seed(proposal_seed)
                        fresh = [s for s in self._candidates(acqf, observations, generator) if s not in taken]
                        pick = self._best(acqf, fresh) if fresh else None
                if pick is None:
                    generator = torch.Generator().manual_seed(derive_seed(self.seed, index + i, "fallback"))
                    pick = _unseen_random(self.space, taken, generator)
                picks.append(pick)
                taken.add(pick)
        return picks

    def _shortlist(self, acqf, taken: Set[Schedule], best_bleu: float) -> torch.Tensor:
        """Every unseen schedule, or the ``prescreen`` best of them by analytic LogEI (once per batch:
        LogEI cannot see pending points; qLogNEI then chooses among these with them)."""
        unseen = _without(self._all_schedules(), self.space.to_tensors(taken))
        if len(unseen) <= self.prescreen:
            return unseen
        prescreen = LogExpectedImprovement(acqf.model, best_f=best_bleu)  # the posterior is in BLEU units
        with torch.no_grad():
            scores = torch.cat([prescreen(chunk.unsqueeze(-2)) for chunk in unseen.split(65536)])
        return unseen[torch.topk(scores, self.prescreen).indices]

    def _best_of_shortlist(self, acqf, shortlist: torch.Tensor, picks: List[Schedule]) -> Optional[Schedule]:
        if picks:
            shortlist = _without(shortlist, self.space.to_tensors(picks))
        if len(shortlist) == 0:
            return None
        with torch.no_grad():
            scores = torch.cat([acqf(chunk.unsqueeze(-2)) for chunk in shortlist.split(1024)])
        return self.space.to_schedule(shortlist[int(torch.argmax(scores))])

    def _all_schedules(self) -> torch.Tensor:
        """Every schedule's free steps, [size, dim] (descending combinations of the range)."""
        if self._enumeration is None:
            self._enumeration = self.space.enumeration_tensor()
        return self._enumeration

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
        sigma = scales[torch.randint(len(scales), (count, 1), generator=generator)] * self.space.bounds()[1]
        noise = torch.randn(picks.shape, generator=generator, dtype=DTYPE) * sigma
        return [self.space.to_schedule(x) for x in picks + noise]

    def _scores(self, acqf, schedules: List[Schedule]) -> torch.Tensor:
        with torch.no_grad():
            return acqf(self.space.to_tensors(schedules).unsqueeze(-2))

    def _best(self, acqf, schedules: List[Schedule]) -> Schedule:
        return schedules[int(torch.argmax(self._scores(acqf, schedules)))]


def posterior_mean_model(space: ScheduleSpace, observations: Sequence[Observation]):
    """A GP fitted to every observation (as the proposer fits it), or None where it cannot be fitted (fewer
    than three distinct scores, or a failed fit)."""
    if len({bleu for _, bleu in observations}) < 3:
        return None
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(derive_seed(0, len(observations), "posterior-mean"))
        _quiet_expected_warnings()
        train_X = space.to_tensors(s for s, _ in observations)
        train_Y = torch.tensor([[bleu] for _, bleu in observations], dtype=DTYPE)
        model = SingleTaskGP(train_X, train_Y, input_transform=Normalize(space.dim, bounds=space.bounds()),
                             outcome_transform=Standardize(m=1))
        try:
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        except _FIT_ERRORS as error:
            logger.warning("GP fit failed (%s); ranking by the observed scores", error)
            return None
    return model


def rank_by_posterior_mean(space: ScheduleSpace, observations: Sequence[Observation]) -> Optional[List[Schedule]]:
    """The evaluated schedules, best first by the posterior mean of a GP fitted to all observations (BoTorch's
    recommendation for noisy objectives: a few-shot score is one noisy draw, its neighbours' scores are more);
    None where the GP cannot be fitted."""
    model = posterior_mean_model(space, observations)
    if model is None:
        return None
    with torch.no_grad(), warnings.catch_warnings():
        _quiet_expected_warnings()
        mean = model.posterior(space.to_tensors(s for s, _ in observations)).mean.squeeze(-1)
    order = sorted(range(len(observations)), key=lambda i: (-float(mean[i]), i))
    return [observations[i][0] for i in order]


def _without(rows: torch.Tensor, remove: torch.Tensor) -> torch.Tensor:
    """``rows`` [n, d] less those equal to a row of ``remove`` [k, d]."""
    if len(remove) == 0:
        return rows
    return rows[~(rows[:, None, :] == remove[None, :, :]).all(-1).any(-1)]


# Degenerate data (e.g. all scores equal) can defeat the GP; propose randomly then.
_FIT_ERRORS = (ModelFittingError, NanError, NotPSDError)


def _quiet_expected_warnings() -> None:
    """Warnings that are expected on small, noiseless BLEU data and say nothing to the user."""
    warnings.simplefilter("ignore", OptimizationWarning)  # SLSQP/L-BFGS stopping early
    warnings.simplefilter("ignore", NumericalWarning)  # jitter added to near-duplicate inputs
    # qLogNEI falls back from its cached Cholesky update on near-duplicate inputs; harmless.
    warnings.filterwarnings("ignore", message="Low-rank cholesky updates failed", category=BotorchWarning)
