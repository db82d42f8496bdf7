import json

import pytest

from fairseq_tp.schedules import Schedule
from fairseq_tp.errors import UsageError
from fairseq_tp.search import Trial, TrialLog, read_trial_log

T = 50
CONFIG = {"checkpoint_sha256": "ab12", "subset": "valid", "shots": 20, "budget": 30, "beam": [1, 2]}
SEARCH = {
    "seed": 0,
    "strategy": "botorch",
    "num_timesteps": T,
    "steps": 4,
    "free_first_step": False,
    "n_init": 6,
}


def trial(index: int, bleu: float = 20.0) -> Trial:
    schedule = Schedule((49, 30 - index, 10, 0), T)
    return Trial(index, schedule, bleu, "baseline" if index == 0 else "initial", 1.5, 0.25, 1.7e9 + index)


def write_log(path, count: int) -> None:
    with TrialLog.open(str(path), CONFIG, SEARCH, T, resume=False) as log:
        for i in range(count):
            log.append(trial(i, 20.0 + i / 3))


def test_header_then_one_durable_line_per_trial(tmp_path):
    path = tmp_path / "log.jsonl"
    with TrialLog.open(str(path), CONFIG, SEARCH, T, resume=False) as log:
        log.append(trial(0))
        lines = path.read_text().splitlines()  # visible before the log is closed
        assert len(lines) == 2
    header, record = map(json.loads, lines)
    assert header == {"kind": "header", "config": CONFIG, "search": SEARCH}
    assert record == {
        "index": 0,
        "timesteps": [49, 30, 10, 0],
        "bleu": 20.0,
        "source": "baseline",
        "objective_s": 1.5,
        "optimiser_s": 0.25,
        "time": 1.7e9,
    }


def test_resume_reads_back_exact_trials(tmp_path):
    path = tmp_path / "log.jsonl"
    write_log(path, 4)
    with TrialLog.open(str(path), CONFIG, SEARCH, T, resume=True) as log:
        assert log.trials == [trial(i, 20.0 + i / 3) for i in range(4)]  # floats survive exactly
        log.append(trial(4))
    assert [t.index for t in read_trial_log(str(path), T)[1]] == [0, 1, 2, 3, 4]


def test_a_log_from_before_the_rename_of_model_s_resumes(tmp_path):
    path = tmp_path / "log.jsonl"
    write_log(path, 2)
    path.write_text(path.read_text().replace('"objective_s"', '"model_s"'))
    with TrialLog.open(str(path), CONFIG, SEARCH, T, resume=True) as log:
        assert log.trials == [trial(i, 20.0 + i / 3) for i in range(2)]


def test_budget_and_time_limits_may_change_on_resume(tmp_path):
    path = tmp_path / "log.jsonl"
    write_log(path, 2)
    config = {**CONFIG, "budget": 60, "time_budget_s": 100.0}
    with TrialLog.open(str(path), config, SEARCH, T, resume=True) as log:
        assert len(log.trials) == 2


def test_a_log_for_a_different_search_is_refused_naming_the_keys(tmp_path):
    path = tmp_path / "x.jsonl"
    write_log(path, 2)
    config = {**CONFIG, "checkpoint_sha256": "ffff", "shots": 10, "budget": 99}
    with pytest.raises(UsageError) as error:
        TrialLog.open(str(path), config, SEARCH, T, resume=True)
    assert str(error.value) == (
        f"trial log {path} was written for a different search (checkpoint_sha256, shots differ); "
        "remove it or choose another --log"
    )


def test_search_parameters_are_checked_too(tmp_path):
    path = tmp_path / "x.jsonl"
    write_log(path, 1)
    with pytest.raises(UsageError, match=r"\(seed differs\)"):
        TrialLog.open(str(path), CONFIG, {**SEARCH, "seed": 1}, T, resume=True)


def test_existing_log_without_resume_is_refused(tmp_path):
    path = tmp_path / "log.jsonl"
    write_log(path, 1)
    with pytest.raises(UsageError, match="already exists"):
        TrialLog.open(str(path), CONFIG, SEARCH, T, resume=False)


def test_resume_without_a_log_starts_fresh(tmp_path):
    path = tmp_path / "new.jsonl"
    with TrialLog.open(str(path), CONFIG, SEARCH, T, resume=True) as log:
        assert log.trials == []
    assert json.loads(path.read_text())["kind"] == "header"


def test_truncated_last_line_is_dropped_and_the_file_rewritten(tmp_path):
    path = tmp_path / "log.jsonl"
    write_log(path, 3)
    text = path.read_text()
    path.write_text(text[: len(text) - 25])  # killed in the middle of writing trial 2
    with TrialLog.open(str(path), CONFIG, SEARCH, T, resume=True) as log:
        assert [t.index for t in log.trials] == [0, 1]
    assert path.read_text() == "".join(text.splitlines(keepends=True)[:3])


def test_whole_last_line_without_newline_is_kept(tmp_path):
    path = tmp_path / "log.jsonl"
    write_log(path, 2)
    path.write_text(path.read_text().rstrip("\n"))
    with TrialLog.open(str(path), CONFIG, SEARCH, T, resume=True) as log:
        assert len(log.trials) == 2
        log.append(trial(2))
    assert len(read_trial_log(str(path), T)[1]) == 3


@pytest.mark.parametrize(
    "mangle, why",
    [
        (lambda lines: lines[:1] + ["{not json"] + lines[2:], "line 2 is not JSON"),
        (lambda lines: lines[1:], "line 1 is not a header record"),
        (lambda lines: lines[:1] + [lines[2]], "line 2 has index 1, expected 0"),
        (lambda lines: lines[:1] + [lines[1].replace("timesteps", "steps")], "line 2: missing 'timesteps'"),
        (lambda lines: lines[:1] + [lines[1].replace("[49, 30", "[30, 49")], "line 2: schedule timesteps"),
        (lambda lines: lines[:1] + [lines[1].replace('"baseline"', '"magic"')], "line 2: unknown source"),
    ],
)
def test_garbled_log_gives_a_one_line_error(tmp_path, mangle, why):
    path = tmp_path / "bad.jsonl"
    write_log(path, 3)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(mangle(lines)) + "\n")
    with pytest.raises(UsageError) as error:
        TrialLog.open(str(path), CONFIG, SEARCH, T, resume=True)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"trial log {path} is not a valid trial log (")
    assert why in message
    assert message.endswith("; remove it or choose another --log")


def test_binary_garbage_gives_a_one_line_error(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\xff\xfe\x00garbage\n")
    with pytest.raises(UsageError) as error:
        TrialLog.open(str(path), CONFIG, SEARCH, T, resume=True)
    assert str(error.value) == (
        f"trial log {path} is not a valid trial log (not UTF-8 text); remove it or choose another --log"
    )


def test_config_that_is_not_json_is_reported(tmp_path):
    with pytest.raises(UsageError, match="cannot be written as JSON"):
        TrialLog.open(str(tmp_path / "log.jsonl"), {"bad": object()}, SEARCH, T, resume=False)
