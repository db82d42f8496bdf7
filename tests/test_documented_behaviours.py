"""Behaviours the docs promise that no other test reaches: fairseq-generate's warning on a schedule file
searched under other decoding options, --free-first-step through fairseq-tp-search, fairseq-interactive."""
import json
import logging
import sys

import pytest

from conftest import FIXTURES, PLUGIN_DIR, generate, read_hypotheses, run_cli
from fairseq_tp.diffusion import DecodingOptions
from fairseq_tp.fairseq_search.cli import main as search_main
from fairseq_tp.schedules import Schedule, decoding_record, write_schedule_file

RDM = FIXTURES / "rdm-toy"
pytestmark = pytest.mark.fixture_dir("rdm-toy")
DETERMINISTIC = ["--argmax-decoding", "--decoding-strategy", "reparam-uncond-deterministic-cosine"]


def test_generate_warns_once_naming_each_decoding_option_that_differs(tmp_path, caplog):
    schedule = tmp_path / "schedule.json"
    searched_under = DecodingOptions("reparam-uncond-deterministic-cosine", argmax=True)
    write_schedule_file(str(schedule), Schedule((49, 30, 12, 0), 50), decoding=decoding_record(searched_under, 1, False))
    with caplog.at_level(logging.WARNING):
        generate(RDM / "data-bin", RDM / "absorbing.pt", tmp_path / "same", "--tp-schedule", str(schedule),
                 *DETERMINISTIC)
    assert not [r for r in caplog.records if "searched with other decoding options" in r.getMessage()]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        generate(RDM / "data-bin", RDM / "absorbing.pt", tmp_path / "other", "--tp-schedule", str(schedule),
                 "--decoding-strategy", "default", "--iter-decode-with-beam", "2")
    warnings = [r.getMessage() for r in caplog.records if "searched with other decoding options" in r.getMessage()]
    assert warnings == [f"schedule {schedule} was searched with other decoding options: "
                        "strategy 'reparam-uncond-deterministic-cosine' -> 'default'; argmax True -> False; "
                        "length_beam 1 -> 2"]


@pytest.mark.parametrize("free", [False, True])
def test_free_first_step_lets_the_search_move_the_first_timestep(free, tmp_path):
    output = tmp_path / "schedule.json"
    search_main([str(RDM / "data-bin"), "--user-dir", PLUGIN_DIR, "--path", str(RDM / "absorbing.pt"), "--cpu",
                 "--no-progress-bar", "--output", str(output), "--steps", "3", "--shots", "10", "--budget", "8",
                 "--confirm-top", "0", "--search-space", "timesteps", *DETERMINISTIC,
                 *(["--free-first-step"] if free else [])])
    log = (tmp_path / "schedule.trials.jsonl").read_text().splitlines()
    first_steps = {json.loads(line)["timesteps"][0] for line in log[1:]}
    assert (first_steps != {49}) == free, first_steps
    assert json.loads(output.read_text())["timesteps"][0] in first_steps


def test_fairseq_interactive_translates_as_fairseq_generate(tmp_path):
    flags = ["--tp-schedule", "uniform:4", *DETERMINISTIC]
    expected = read_hypotheses(generate(RDM / "data-bin", RDM / "absorbing.pt", tmp_path / "generate", *flags))
    sources = (RDM / "raw" / "test.src").read_text().splitlines()[:8]
    result = run_cli([sys.executable, "-m", "fairseq_cli.interactive", str(RDM / "data-bin"), "--user-dir",
                      PLUGIN_DIR, "--task", "diffusion_translation", "--source-lang", "src", "--target-lang", "tgt",
                      "--path", str(RDM / "absorbing.pt"), "--cpu", "--buffer-size", "4", "--batch-size", "4", *flags],
                     env={"PYTHONWARNINGS": "ignore"}, input="".join(s + "\n" for s in sources))
    assert result.returncode == 0, result.stderr[-2000:]
    hypotheses = [line.split("\t")[2] for line in result.stdout.splitlines() if line.startswith("H-")]
    assert hypotheses == [expected[i] for i in range(len(sources))]
