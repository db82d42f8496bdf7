import math
import shutil
import statistics

import pytest
import torch

from fairseq_tp.schedules import Schedule
from fairseq_tp.errors import UsageError
from fairseq_tp.search import (
    BoTorchProposer,
    RandomProposer,
    ScheduleSpace,
    SearchSettings,
    derive_seed,
    plot_trials,
    read_trial_log,
    run_search,
)

T, N = 50, 4
TARGET = Schedule((49, 31, 15, 4), T)  # a valid schedule, away from the uniform 49,36,23,11
CONFIG = {"checkpoint_sha256": "ab12", "shots": 20, "budget": 0}


def bump(schedule: Schedule, target: Schedule = TARGET, width: float = 12.5) -> float:
    """A smooth BLEU-like score peaking at 30 on ``target``."""
    distance2 = sum((a - b) ** 2 for a, b in zip(schedule.timesteps, target.timesteps))
    return 10.0 + 20.0 * math.exp(-distance2 / (2 * width**2))


class CountingObjective:
    """The stub objective; records every call so tests can count evaluations."""

    def __init__(self, score=bump, fail_on_call: int = 0):
        self.score, self.fail_on_call = score, fail_on_call
        self.calls = []

    def evaluate(self, schedules):
        if self.fail_on_call and len(self.calls) + 1 == self.fail_on_call:
            raise KeyboardInterrupt("killed")  # what a Ctrl-C or a dying job looks like
        self.calls.append(list(schedules))
        return [self.score(s) for s in schedules]

    @property
    def evaluated(self):
        return [s for call in self.calls for s in call]


def search(
    tmp_path, name="log.jsonl", *, objective=None, space=None, budget=10, seed=0, strategy="botorch", **kwargs
):
    objective = objective or CountingObjective()
    resume, progress = kwargs.pop("resume", False), kwargs.pop("progress", False)
    result = run_search(
        objective,
        space or ScheduleSpace(T, N),
        SearchSettings(budget=budget, seed=seed, strategy=strategy, **kwargs),
        log_path=str(tmp_path / name),
        config={**CONFIG, "budget": budget},
        resume=resume,
        progress=progress,
    )
    return result, objective


def sequence(result):
    return [(t.index, t.schedule, t.bleu, t.source) for t in result.trials]


def assert_valid_search(result, space):
    schedules = [t.schedule for t in result.trials]
    assert len(set(schedules)) == len(schedules), "a schedule was evaluated twice"
    for s in schedules:
        assert space.contains(s)
    assert [t.index for t in result.trials] == list(range(len(schedules)))


# -- reference runs shared by several tests (BoTorch proposals cost ~0.3 s each)
@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    directory = tmp_path_factory.mktemp("reference")
    result, objective = search(directory, budget=10, seed=0)
    return result, objective, directory / "log.jsonl"


@pytest.fixture(scope="module")
def seed_comparison(tmp_path_factory):
    """BoTorch and random, budget 24 on the bump, three seeds each."""
    directory = tmp_path_factory.mktemp("comparison")
    runs = {"botorch": [], "random": []}
    for seed in range(3):
        for strategy in runs:
            result, _ = search(directory, f"{strategy}-{seed}.jsonl", budget=24, seed=seed, strategy=strategy)
            runs[strategy].append(result)
    return runs


# -- order, budget and bookkeeping ---------------------------------------------
def test_baseline_then_initial_design_in_one_call_then_proposals(reference):
    result, objective, _ = reference
    space = ScheduleSpace(T, N)
    n_init = 2 * space.dim
    assert [t.source for t in result.trials] == ["baseline"] + ["initial"] * n_init + ["botorch"] * 3
    assert result.trials[0].schedule == Schedule.uniform(N, T) == result.baseline_schedule
    assert result.baseline_bleu == bump(Schedule.uniform(N, T))
    assert [len(call) for call in objective.calls] == [1 + n_init, 1, 1, 1]
    design = space.initial_design(n_init, 0, exclude=[space.baseline()])
    assert [t.schedule for t in result.trials[1 : 1 + n_init]] == design
    assert result.evaluations == 10 == len(objective.evaluated)
    assert_valid_search(result, space)


def test_result_accounts_for_time_and_picks_the_best(reference):
    result, _, _ = reference
    best = max(result.trials, key=lambda t: t.bleu)
    assert (result.best_schedule, result.best_bleu) == (best.schedule, best.bleu)
    assert result.objective_s == pytest.approx(sum(t.objective_s for t in result.trials))
    assert result.optimiser_s == pytest.approx(sum(t.optimiser_s for t in result.trials))
    assert len(result.proposal_optimiser_s) == 3 and all(s > 0 for s in result.proposal_optimiser_s)
    assert result.elapsed_s >= result.objective_s and result.stopped_by == "budget"
    assert result.improvement == result.best_bleu - result.baseline_bleu


def test_small_budget_truncates_the_initial_design(tmp_path):
    result, objective = search(tmp_path, budget=3, strategy="random")
    assert [t.source for t in result.trials] == ["baseline", "initial", "initial"]
    assert [len(call) for call in objective.calls] == [3]


def test_budget_of_one_evaluates_only_the_baseline(tmp_path):
    result, _ = search(tmp_path, budget=1)
    assert result.evaluations == 1 and result.best_schedule == result.baseline_schedule


def test_time_budget_stops_after_the_current_evaluation(tmp_path):
    result, _ = search(tmp_path, budget=30, strategy="random", time_budget_s=1e-9)
    assert result.evaluations == 1 + 6  # the baseline and initial design are one evaluation
    assert result.stopped_by == "time"


@pytest.mark.parametrize("strategy", ["botorch", "random"])
def test_exhausting_a_tiny_space_stops_without_repeats(tmp_path, strategy):
    space = ScheduleSpace(6, 3)  # ten schedules
    result, objective = search(tmp_path, space=space, budget=15, strategy=strategy)
    assert result.evaluations == space.size() == 10 and result.stopped_by == "exhausted"
    assert set(t.schedule for t in result.trials) == set(space.enumerate())
    assert len(objective.evaluated) == 10


@pytest.mark.parametrize("T_, budget", [(50, 40), (2000, 40)])
def test_random_search_never_repeats(tmp_path, T_, budget):
    space = ScheduleSpace(T_, N)
    result, _ = search(tmp_path, space=space, budget=budget, strategy="random")
    assert result.evaluations == budget
    assert_valid_search(result, space)


def test_botorch_search_at_T2000_is_valid(tmp_path):
    space = ScheduleSpace(2000, N)
    target = Schedule((1999, 1240, 600, 160), 2000)
    objective = CountingObjective(lambda s: bump(s, target, width=500.0))
    result, _ = search(tmp_path, space=space, objective=objective, budget=12)
    assert_valid_search(result, space)
    assert result.trials[-1].source == "botorch"


def test_objective_must_return_finite_scores(tmp_path):
    with pytest.raises(UsageError, match="returned nan for schedule 49,36,23,11"):
        search(tmp_path, objective=CountingObjective(lambda s: float("nan")))
    with pytest.raises(UsageError, match="returned 1 scores for 7 schedules"):
        search(tmp_path, "other.jsonl", objective=type("Short", (), {"evaluate": lambda self, s: [1.0]})())


def test_replicate_scores_are_searched_by_their_mean_and_kept(tmp_path):
    def draws(s):  # two noise draws around the bump: mean bump(s), spread 2
        return [bump(s) - 1.0, bump(s) + 1.0]

    result, _ = search(tmp_path, objective=CountingObjective(draws), budget=8)
    assert [t.replicates for t in result.trials] == [tuple(draws(t.schedule)) for t in result.trials]
    assert [t.bleu for t in result.trials] == pytest.approx([bump(t.schedule) for t in result.trials])
    with pytest.raises(UsageError, match=r"returned \[1.0, nan\] for schedule 49,36,23,11"):
        search(tmp_path, "nan.jsonl", objective=CountingObjective(lambda s: [1.0, float("nan")]))
    with pytest.raises(UsageError, match="returned no replicate scores for schedule 49,36,23,11"):
        search(tmp_path, "empty.jsonl", objective=CountingObjective(lambda s: []))


@pytest.mark.parametrize("settings, message", [
    (dict(budget=0), "--budget must be a positive number of evaluations, got 0"),
    (dict(strategy="annealing"), "--strategy must be one of botorch, random, paper, got 'annealing'"),
    (dict(n_init=-1), "--n-init must be a non-negative integer, got -1"),
    (dict(time_budget_s=0), "--time-budget must be a positive number of seconds, got 0"),
])
def test_bad_settings_are_refused_when_built_with_one_line(settings, message):
    with pytest.raises(UsageError) as error:
        SearchSettings(**{"budget": 10, "seed": 0, "strategy": "botorch", **settings})
    assert str(error.value) == message


def test_progress_bar_shows_best_so_far(tmp_path, capsys):
    result, _ = search(tmp_path, budget=9, strategy="random", progress=True)
    final_state = capsys.readouterr().err.split("\r")[-1]
    assert "9/9" in final_state
    assert final_state.rstrip().endswith(f"baseline={result.baseline_bleu:.2f}, best={result.best_bleu:.2f}]")
    assert result.best_bleu > result.baseline_bleu  # else best and baseline could not be told apart


# -- the optimiser -------------------------------------------------------------
def test_botorch_reaches_the_optimum_of_a_smooth_objective(seed_comparison):
    # Tolerance: 0.5 below the peak of 30, i.e. within ~3 timesteps (L2) of the
    # target out of 49; in practice every seed hits it exactly.
    for result in seed_comparison["botorch"]:
        assert result.best_bleu >= 29.5, result.best_schedule
        assert_valid_search(result, ScheduleSpace(T, N))


def test_botorch_beats_random_on_average(seed_comparison):
    botorch = statistics.mean(r.best_bleu for r in seed_comparison["botorch"])
    random = statistics.mean(r.best_bleu for r in seed_comparison["random"])
    assert botorch > random + 0.5


def test_proposals_depend_only_on_seed_index_and_history():
    space = ScheduleSpace(T, N)
    history = [(s, bump(s)) for s in [space.baseline()] + space.initial_design(6, 0)]
    for proposer in (BoTorchProposer(space, seed=5), RandomProposer(space, seed=5)):
        torch.manual_seed(1)
        first = proposer.propose(history, len(history), 1)
        state = torch.random.get_rng_state()
        torch.manual_seed(2)  # the global RNG's state must not matter...
        assert proposer.propose(history, len(history), 1) == first
        torch.manual_seed(1)
        proposer.propose(history, len(history), 1)
        assert torch.equal(torch.random.get_rng_state(), state)  # ...nor be disturbed
        assert first[0] not in dict(history)
    assert derive_seed(5, 7) != derive_seed(5, 8) != derive_seed(6, 7)


def test_botorch_falls_back_to_an_unseen_schedule_when_all_candidates_are_known():
    space = ScheduleSpace(5, 3)  # six schedules
    known = list(space.enumerate())[:5]
    history = [(s, bump(s, Schedule((4, 2, 0), 5), width=1.0)) for s in known]
    proposal = BoTorchProposer(space, seed=0).propose(history, 5, 1)
    assert proposal == [list(space.enumerate())[5]]


@pytest.mark.parametrize("make", [BoTorchProposer, RandomProposer])
def test_a_batch_is_valid_distinct_unseen_and_its_prefix_does_not_depend_on_its_size(make):
    space = ScheduleSpace(T, N)
    history = [(s, bump(s)) for s in [space.baseline()] + space.initial_design(6, 0)]
    proposer = make(space, seed=3)
    batch = proposer.propose(history, len(history), 8)
    assert len(batch) == len(set(batch)) == 8
    assert all(space.contains(s) and s not in dict(history) for s in batch)
    assert proposer.propose(history, len(history), 3) == batch[:3]


def test_a_log_cut_in_the_middle_of_a_batch_resumes_to_the_uninterrupted_search(tmp_path):
    whole, _ = search(tmp_path, "whole.jsonl", budget=23, seed=2, batch=4)
    lines = (tmp_path / "whole.jsonl").read_text().splitlines(keepends=True)
    # baseline + 6 initial, then batches of 4 from index 7: keep 2 of the batch starting at 11
    (tmp_path / "cut.jsonl").write_text("".join(lines[:1 + 13]))
    objective = CountingObjective()
    resumed, _ = search(tmp_path, "cut.jsonl", budget=23, seed=2, batch=4, resume=True, objective=objective)
    assert sequence(resumed) == sequence(whole)
    assert [len(call) for call in objective.calls] == [2, 4, 4]  # the rest of the cut batch, then whole ones
    sources = [t.source for t in whole.trials]
    assert sources == ["baseline"] + ["initial"] * 6 + ["botorch"] * 16


def test_exact_acquisition_picks_the_enumerated_argmax_and_the_relaxation_lands_near_it():
    space = ScheduleSpace(12, 3)  # 55 schedules
    target = Schedule((11, 7, 2), 12)
    history = [(s, bump(s, target, width=3.0)) for s in [space.baseline()] + space.initial_design(6, 1)]
    exact, relaxed = BoTorchProposer(space, seed=4), BoTorchProposer(space, seed=4, exact_limit=0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        acqf = exact._acquisition(history)
        unseen = [s for s in space.enumerate() if s not in dict(history)]
        with torch.no_grad():  # one by one: an independent reference for the batched scoring
            scores = [float(acqf(space.to_tensor(s).view(1, 1, -1))) for s in unseen]
        shortlist = exact._shortlist(acqf, set(dict(history)), max(b for _, b in history))
        assert len(shortlist) == len(unseen)  # below the prescreen size: every unseen schedule
        chosen = exact._best_of_shortlist(acqf, shortlist, [])
        assert chosen == unseen[scores.index(max(scores))]
        relaxed_picks = relaxed._candidates(acqf, history, torch.Generator().manual_seed(0))
        nearby = relaxed._best(acqf, [s for s in relaxed_picks if s not in dict(history)])
    ranked = [unseen[i] for i in sorted(range(len(unseen)), key=lambda i: -scores[i])]
    assert nearby in ranked[:5]


# -- kill and resume ----------------------------------------------------------
@pytest.mark.parametrize("killed_on_call", [1, 2, 3])
def test_killed_search_resumes_to_the_same_trials(tmp_path, reference, killed_on_call):
    expected, _, _ = reference
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path, objective=CountingObjective(fail_on_call=killed_on_call))
    logged = len(read_trial_log(str(tmp_path / "log.jsonl"), T)[1])
    assert logged == {1: 0, 2: 7, 3: 8}[killed_on_call]

    result, objective = search(tmp_path, resume=True)
    assert len(objective.evaluated) == 10 - logged  # nothing finished is evaluated again
    assert not set(objective.evaluated) & {t.schedule for t in result.trials[:logged]}
    assert sequence(result) == sequence(expected)
    assert (result.best_schedule, result.best_bleu) == (expected.best_schedule, expected.best_bleu)


def test_torn_last_line_is_evaluated_again(tmp_path, reference):
    expected, _, reference_log = reference
    text = reference_log.read_text()
    (tmp_path / "log.jsonl").write_text(text[: len(text) - 30])  # killed while writing trial 9
    result, objective = search(tmp_path, resume=True)
    assert objective.evaluated == [expected.trials[9].schedule]
    assert sequence(result) == sequence(expected)
    assert (tmp_path / "log.jsonl").read_text().count("\n") == 11


def test_finished_search_resumes_without_evaluating(tmp_path, reference):
    expected, _, reference_log = reference
    shutil.copy(reference_log, tmp_path / "log.jsonl")
    result, objective = search(tmp_path, resume=True)
    assert objective.calls == [] and sequence(result) == sequence(expected)


def test_larger_budget_on_resume_extends_the_search(tmp_path, reference):
    expected, _, _ = reference
    search(tmp_path, budget=8)
    result, objective = search(tmp_path, budget=10, resume=True)
    assert len(objective.evaluated) == 2
    assert sequence(result) == sequence(expected)


def test_resume_extends_a_search_stopped_inside_its_initial_design(tmp_path):
    search(tmp_path, budget=4, strategy="random")
    extended, objective = search(tmp_path, budget=12, strategy="random", resume=True)
    straight, _ = search(tmp_path, "straight.jsonl", budget=12, strategy="random")
    assert len(objective.evaluated) == 8 and [len(c) for c in objective.calls][0] == 3  # rest of the design
    assert sequence(extended) == sequence(straight)


def test_resume_refuses_a_log_from_a_different_search(tmp_path, reference):
    _, _, reference_log = reference
    shutil.copy(reference_log, tmp_path / "x.jsonl")
    objective = CountingObjective()
    with pytest.raises(UsageError) as error:
        run_search(
            objective,
            ScheduleSpace(T, N),
            SearchSettings(budget=20, seed=1, strategy="botorch"),
            log_path=str(tmp_path / "x.jsonl"),
            config={**CONFIG, "shots": 10, "budget": 20},
            resume=True,
            progress=False,
        )
    assert str(error.value) == (
        f"trial log {tmp_path / 'x.jsonl'} was written for a different search (shots, seed differ); "
        "remove it or choose another --log"
    )
    assert objective.calls == []


def test_resume_of_a_garbled_log_gives_a_one_line_error(tmp_path):
    (tmp_path / "log.jsonl").write_text('{"kind": "header", "config": {}}\nnot json at all\n')
    with pytest.raises(UsageError) as error:
        search(tmp_path, resume=True)
    assert str(error.value) == (
        f"trial log {tmp_path / 'log.jsonl'} is not a valid trial log (line 2 is not JSON); "
        "remove it or choose another --log"
    )


# -- plotting --------------------------------------------------------------------
def test_plot_writes_a_png(tmp_path, reference):
    result, _, _ = reference
    path = tmp_path / "trials.png"
    plot_trials(result.trials, ScheduleSpace(T, N), str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["trials.png"]  # no temporary file left


def test_every_source_of_trials_is_plotted_where_its_trials_are():
    from fairseq_tp.search.plot import trials_figure
    from fairseq_tp.search.trial_log import SOURCES, Trial
    space = ScheduleSpace(T, N)
    schedules = [space.baseline()] + space.initial_design(2 * len(SOURCES) - 1, 0)
    trials = [Trial(i, schedule, bleu=10.0 + 3 * i, source=SOURCES[i % len(SOURCES)], objective_s=0.0, optimiser_s=0.0,
                    time=0.0) for i, schedule in enumerate(schedules)]
    scores_axes, steps_axes = trials_figure(trials, space).axes
    plotted = {c.get_label(): [tuple(xy) for xy in c.get_offsets()] for c in scores_axes.collections}
    for source in SOURCES:  # the paper's strategy's trials had no colour and crashed --plot
        assert plotted[source] == [(t.index, t.bleu) for t in trials if t.source == source]
    where_steps = sorted(tuple(xy) for c in steps_axes.collections for xy in c.get_offsets())
    assert where_steps == sorted((t.index, step) for t in trials for step in t.schedule.timesteps)


def test_equal_scores_do_not_break_the_botorch_search(tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. BoTorch's "outcome not standardized" on constant data
        result, _ = search(tmp_path, objective=CountingObjective(lambda s: 0.0), budget=9)
    assert result.evaluations == 9 and result.best_schedule == result.baseline_schedule
    assert_valid_search(result, ScheduleSpace(T, N))


# -- the paper's strategy (scikit-optimize) ---------------------------------------
def test_paper_strategy_proposes_sorted_schedules_and_counts_repeated_steps_toward_the_budget(tmp_path):
    pytest.importorskip("skopt")
    space = ScheduleSpace(8, 4)  # small enough that skopt proposes repeated steps
    result, objective = search(tmp_path, space=space, budget=30, seed=1, strategy="paper")
    assert_valid_search(result, space)
    assert [t.source for t in result.trials][:1] == ["baseline"] and {t.source for t in result.trials[1:]} == {"paper"}
    from fairseq_tp.search.paper import PaperProposer
    # Replaying the log counts the proposals that cost budget without a trial (up to the last trial).
    wasted = PaperProposer(space, 1).spent([(t.schedule, t.bleu) for t in result.trials])
    assert wasted > 0 and len(result.trials) + wasted <= 30 and result.stopped_by == "budget"
    assert len(result.trials) < 30
    assert all(call == [s] for call, s in zip(objective.calls[1:], [t.schedule for t in result.trials[1:]]))


def test_paper_strategy_resumes_to_the_uninterrupted_search(tmp_path):
    pytest.importorskip("skopt")
    space = ScheduleSpace(8, 4)
    whole, _ = search(tmp_path, "whole.jsonl", space=space, budget=20, seed=2, strategy="paper")
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path, space=space, budget=20, seed=2, strategy="paper", objective=CountingObjective(fail_on_call=6))
    resumed, _ = search(tmp_path, space=space, budget=20, seed=2, strategy="paper", resume=True)
    assert sequence(resumed) == sequence(whole)


def test_paper_strategy_without_scikit_optimize_is_one_line(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "skopt", None)  # what an uninstalled package looks like to import
    from fairseq_tp.search import make_proposer
    with pytest.raises(UsageError) as error:
        make_proposer("paper", ScheduleSpace(T, N), 0)
    assert str(error.value) == "--strategy paper needs scikit-optimize: pip install 'fairseq-tp[paper]'"


# -- the front over N ----------------------------------------------------------------
def test_budget_is_divided_in_proportion_to_the_steps_and_capped_by_each_space():
    from fairseq_tp.search import divide_budget
    assert divide_budget(40, [ScheduleSpace(50, n) for n in (2, 3, 4, 6)]) == [5, 8, 11, 16]
    assert divide_budget(40, [ScheduleSpace(4, 2), ScheduleSpace(50, 6)]) == [3, 30]  # 3 schedules in the first
    with pytest.raises(UsageError, match="less than one evaluation per number of steps"):
        divide_budget(2, [ScheduleSpace(50, n) for n in (2, 3, 4)])


class StepsObjective:
    """Few-shot BLEU that grows with the number of steps: 50 for all T steps, N -> 50 * share[N]."""

    def __init__(self, shares):
        self.shares = shares

    def evaluate(self, schedules):
        return [50.0 * self.shares.get(s.steps, 1.0) * (1 - 0.001 * (s.timesteps[-1] % 7)) for s in schedules]


@pytest.mark.parametrize("target, chosen, met", [(0.99, 4, True), (0.9, 3, True), (0.999, 6, False)])
def test_front_chooses_the_smallest_steps_reaching_the_target(tmp_path, target, chosen, met):
    from fairseq_tp.search import search_front
    objective = StepsObjective({2: 0.80, 3: 0.95, 4: 0.995, 6: 0.997})
    front = search_front(objective, 50, [6, 2, 4, 3], SearchSettings(budget=20, seed=0, strategy="random"),
                         target=target, log_path=lambda n: str(tmp_path / f"{target}.{n}.jsonl"),
                         config=CONFIG, progress=False)
    assert [p.steps for p in front.points] == [2, 3, 4, 6]
    assert front.reference_bleu == 50.0 and front.reference_schedule.steps == 50
    assert (front.chosen.steps, front.target_met) == (chosen, met)
    for p in front.points:
        assert p.share == pytest.approx(p.result.best_bleu / 50.0)
        assert (tmp_path / f"{target}.{p.steps}.jsonl").exists()
