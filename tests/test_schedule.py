"""The schedule value: spellings, RDM's uniform spacing, files, and exact error messages."""
import json

import pytest

from fairseq_tp.errors import UsageError
from fairseq_tp.schedules import Schedule, ScheduleSpec, write_schedule_file


# RDM's step_array (discrete_diffusion_base._get_decoding_strategy) printed for these (T, N) by running
# RDM's own function, last entry (0) dropped: the 1-based steps its N passes visit.  Written out as data
# so that the test does not restate our formula.
RDM_STEP_ARRAYS = {
    (50, 4): [50, 37, 24, 12],
    (50, 7): [50, 42, 35, 28, 21, 14, 7],
    (50, 10): [50, 45, 40, 35, 30, 25, 20, 15, 10, 5],
    (50, 1): [50],
    (2000, 4): [2000, 1500, 1000, 500],
    (2000, 3): [2000, 1333, 666],
    (1000, 6): [1000, 833, 666, 499, 332, 166],
    (10, 3): [10, 6, 3],
}


@pytest.mark.parametrize("T,N", sorted(RDM_STEP_ARRAYS))
def test_uniform_is_rdms_step_array_minus_one(T, N):
    assert Schedule.uniform(N, T).timesteps == tuple(v - 1 for v in RDM_STEP_ARRAYS[T, N])


def test_uniform_with_every_step_visits_every_timestep():
    assert Schedule.uniform(50, 50).timesteps == tuple(range(49, -1, -1))


def test_documented_examples():
    assert str(Schedule.uniform(4, 50)) == "49,36,23,11"
    assert ScheduleSpec.parse("49,33,12,0").resolve(50).steps == 4
    assert Schedule.named("cosine", 4, 50).timesteps == (49, 46, 35, 19)
    assert Schedule.named("quadratic", 4, 50).timesteps == (49, 28, 12, 3)
    assert Schedule.uniform(4, 50).targets() == (36, 23, 11, -1)


@pytest.mark.parametrize("spacing", ["uniform", "cosine", "quadratic"])
@pytest.mark.parametrize("T", [4, 50, 2000])
def test_named_spacings_are_valid_for_every_step_count(spacing, T):
    for N in range(1, min(T, 60) + 1):
        s = Schedule.named(spacing, N, T)
        assert s.steps == N and s.timesteps[0] == T - 1 and s.timesteps[-1] >= 0


@pytest.mark.parametrize("text,message", [
    ("", "the schedule is empty: give at least one timestep"),
    ("12,33", "schedule timesteps must be strictly decreasing, got 12,33"),
    ("49,49", "schedule timesteps must be strictly decreasing, got 49,49"),
    ("50,1", "schedule timestep 50 is out of range [0, 49] for a model with T = 50 steps"),
    ("3,-1", "schedule timestep -1 is out of range [0, 49] for a model with T = 50 steps"),
    ("4,,1", "schedule '4,,1' has an empty entry"),
    ("4,x", "schedule entry 'x' is not an integer"),
    ("uniform:0", "uniform:0: the number of steps must be at least 1"),
    ("cosine:x", "cosine:x: the number of steps must be an integer"),
    ("uniform:51", "uniform:51 asks for 51 steps but the model has only T = 50"),
    ("linear:3", "unknown schedule spacing 'linear' (choose from uniform, cosine, quadratic)"),
    ("nofile.json", "cannot read schedule file nofile.json: No such file or directory"),
])
def test_bad_input_gives_one_exact_line(text, message):
    with pytest.raises(UsageError) as info:
        ScheduleSpec.parse(text).resolve(50)
    assert str(info.value) == message


def test_values_are_checked_in_the_constructor_too():
    with pytest.raises(UsageError, match="strictly decreasing"):
        Schedule((3, 3), 10)
    with pytest.raises(UsageError, match="not an integer"):
        Schedule((3.0, 1), 10)
    with pytest.raises(UsageError, match="empty"):
        Schedule((), 10)


def test_file_round_trip_keeps_provenance_and_checks_T(tmp_path):
    path = tmp_path / "s.json"
    write_schedule_file(str(path), Schedule((49, 30, 2), 50), bleu=12.5, decoding={"argmax": True})
    data = json.loads(path.read_text())
    assert data["timesteps"] == [49, 30, 2] and data["num_timesteps"] == 50 and data["steps"] == 3
    spec = ScheduleSpec.parse(str(path))
    assert spec.resolve(50) == Schedule((49, 30, 2), 50)
    assert spec.extra["decoding"] == {"argmax": True}
    with pytest.raises(UsageError) as info:
        spec.resolve(100)
    assert str(info.value) == f"schedule file {path} was made for T = 50 but the checkpoint has T = 100"
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]  # no temporary file left behind


@pytest.mark.parametrize("content,message", [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"num_timesteps": 50}', "has no 'timesteps' list"),
    ('{"timesteps": [3, 1]}', "has no integer 'num_timesteps'"),
    ('{"timesteps": [1, 3], "num_timesteps": 50}', "schedule timesteps must be strictly decreasing, got 1,3"),
])
def test_malformed_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UsageError) as info:
        ScheduleSpec.parse(str(path))
    assert str(info.value).startswith(f"schedule file {path}") and message in str(info.value)
