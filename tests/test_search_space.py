import collections
import math

import pytest
import torch

from fairseq_tp.errors import UsageError
from fairseq_tp.schedules import Schedule
from fairseq_tp.search import ScheduleSpace

# (T, N, free_first_step): the paper's sizes plus edge cases (tiny, one free dim, dense).
SPACES = [
    (50, 4, False),
    (2000, 4, False),
    (50, 2, False),
    (50, 7, True),
    (2000, 10, False),
    (10, 9, False),
    (3, 1, True),
]


def assert_member(space: ScheduleSpace, schedule: Schedule) -> None:
    T = space.num_timesteps
    steps = schedule.timesteps
    assert isinstance(schedule, Schedule)
    assert schedule.num_timesteps == T and len(steps) == space.steps
    assert all(a > b for a, b in zip(steps, steps[1:]))
    assert 0 <= steps[-1] and steps[0] <= T - 1
    if not space.free_first_step:
        assert steps[0] == T - 1


# -- construction ------------------------------------------------------------
@pytest.mark.parametrize("steps", [50, 51, 80])
def test_steps_at_least_T_is_rejected_with_one_line_message(steps):
    with pytest.raises(UsageError) as error:
        ScheduleSpace(50, steps)
    assert str(error.value) == (
        f"cannot search {steps} steps for a model with T = 50: "
        "with N >= T at most one schedule exists (every timestep), nothing to search"
    )


def test_single_fixed_step_has_nothing_to_search():
    with pytest.raises(UsageError, match="only one schedule exists, nothing to search"):
        ScheduleSpace(50, 1)
    assert ScheduleSpace(50, 1, free_first_step=True).size() == 50


@pytest.mark.parametrize("steps", [0, -3])
def test_steps_below_one_are_rejected(steps):
    with pytest.raises(UsageError, match="positive integer"):
        ScheduleSpace(50, steps)


def test_encoding_shapes_for_fixed_first_step():
    space = ScheduleSpace(50, 4)
    assert space.dim == 3 and space.upper == 48
    assert space.bounds().tolist() == [[0, 0, 0], [48, 48, 48]]
    assert space.bounds().dtype == torch.float64
    constraints = space.inequality_constraints()
    assert [(i.tolist(), c.tolist(), rhs) for i, c, rhs in constraints] == [
        ([0, 1], [1.0, -1.0], 1.0),
        ([1, 2], [1.0, -1.0], 1.0),
    ]
    assert space.size() == math.comb(49, 3)


def test_encoding_shapes_for_free_first_step():
    space = ScheduleSpace(50, 4, free_first_step=True)
    assert space.dim == 4 and space.upper == 49
    assert space.size() == math.comb(50, 4)
    assert len(space.inequality_constraints()) == 3


@pytest.mark.parametrize("T,N,free", SPACES)
def test_size_matches_enumeration_on_small_spaces(T, N, free):
    space = ScheduleSpace(T, N, free)
    if space.size() > 20000:
        pytest.skip("too large to enumerate")
    listed = list(space.enumerate())
    assert len(listed) == len(set(listed)) == space.size()


@pytest.mark.parametrize("T,N", [(50, 4), (2000, 4), (2000, 10), (10, 9)])
def test_uniform_baseline_lies_in_the_space_and_round_trips(T, N):
    space = ScheduleSpace(T, N)
    baseline = Schedule.uniform(N, T)
    assert space.baseline() == baseline and space.contains(baseline)
    x = space.to_tensor(baseline)
    assert x.dtype == torch.float64 and x.tolist() == list(baseline.timesteps[1:])
    assert space.to_schedule(x) == baseline


def test_to_tensor_rejects_schedules_outside_the_space():
    space = ScheduleSpace(50, 4)
    with pytest.raises(UsageError, match="is not in"):
        space.to_tensor(Schedule((48, 30, 10, 0), 50))  # first step not T-1
    with pytest.raises(UsageError, match="is not in"):
        space.to_tensor(Schedule((49, 30, 10), 50))


def test_rounding_is_half_up_and_repair_keeps_the_points_it_can():
    space = ScheduleSpace(50, 4)
    assert space.to_schedule([30.49, 20.5, 10.0]).timesteps == (49, 30, 21, 10)
    # the optimiser's tolerance: a gap of 0.9999 rounds to a tie, which repair pushes down
    assert space.to_schedule([20.0, 19.00005, 18.5]).timesteps == (49, 20, 19, 18)
    assert space.to_schedule([0.2, 0.1, -0.3]).timesteps == (49, 2, 1, 0)
    assert space.to_schedule([48.7, 48.6, 48.4]).timesteps == (49, 48, 47, 46)


# -- property tests: everything maps to a valid schedule ----------------------
def _box_points(space: ScheduleSpace, generator: torch.Generator, count: int) -> torch.Tensor:
    d, hi = space.dim, float(space.upper)
    anywhere = torch.rand(count, d, generator=generator, dtype=torch.float64) * (hi + 0.98) - 0.49
    # feasible points nudged to violate x_i - x_{i+1} >= 1 by a hair, or the box
    valid = space.to_tensors(space.random_schedule(generator) for _ in range(count))
    hair = (torch.rand(count, d, generator=generator, dtype=torch.float64) - 0.5) * 1e-3
    nudged = valid + hair
    squeezed = valid.clone()
    for i in range(1, d):  # gap of 0.9999 between neighbours
        squeezed[:, i] = squeezed[:, i - 1] - 0.9999
    squeezed = squeezed.clamp(-0.49, hi + 0.49)
    return torch.cat([anywhere, nudged, squeezed])


@pytest.mark.parametrize("T,N,free", SPACES)
def test_any_point_near_the_box_maps_to_a_valid_schedule(T, N, free):
    space = ScheduleSpace(T, N, free)
    generator = torch.Generator().manual_seed(T * 100 + N)
    for x in _box_points(space, generator, 300):
        assert_member(space, space.to_schedule(x))


@pytest.mark.parametrize("T,N,free", SPACES)
def test_valid_integer_points_map_to_themselves(T, N, free):
    space = ScheduleSpace(T, N, free)
    generator = torch.Generator().manual_seed(7)
    for _ in range(200):
        schedule = space.random_schedule(generator)
        assert_member(space, schedule)
        assert space.to_schedule(space.to_tensor(schedule)) == schedule


@pytest.mark.parametrize("T,N,free", SPACES)
def test_initial_design_is_valid_distinct_and_deterministic(T, N, free):
    space = ScheduleSpace(T, N, free)
    n = 2 * space.dim + 2
    design = space.initial_design(n, seed=3)
    assert len(design) == min(n, space.size())
    assert len(set(design)) == len(design)
    for schedule in design:
        assert_member(space, schedule)
    assert space.initial_design(n, seed=3) == design
    assert space.initial_design(n, seed=4) != design or space.size() <= n


def test_initial_design_grows_as_a_prefix_and_honours_exclusions():
    space = ScheduleSpace(50, 4)
    small, large = space.initial_design(5, seed=1), space.initial_design(20, seed=1)
    assert large[:5] == small
    excluded = space.initial_design(20, seed=1, exclude=[large[2]])
    assert large[2] not in excluded and len(excluded) == 20


def test_initial_design_spreads_over_the_range():
    space = ScheduleSpace(2000, 4)
    design = space.to_tensors(space.initial_design(64, seed=0))
    # sorted uniform points: the top free step has mean ~3/4 of the range, the last ~1/4
    means = design.mean(0) / space.upper
    assert means.tolist() == pytest.approx([0.75, 0.5, 0.25], abs=0.06)


def test_initial_design_exhausts_a_tiny_space_gracefully():
    space = ScheduleSpace(4, 2)  # T-1 fixed, one of 0..2 free: three schedules
    design = space.initial_design(10, seed=0)
    assert sorted(s.timesteps for s in design) == [(3, 0), (3, 1), (3, 2)]
    baseline = space.baseline()
    assert len(space.initial_design(10, seed=0, exclude=[baseline])) == 2


def test_random_schedule_is_uniform_over_the_space():
    space = ScheduleSpace(6, 3)  # ten schedules
    generator = torch.Generator().manual_seed(0)
    counts = collections.Counter(space.random_schedule(generator) for _ in range(5000))
    assert set(counts) == set(space.enumerate())
    assert all(400 < c < 600 for c in counts.values()), counts
