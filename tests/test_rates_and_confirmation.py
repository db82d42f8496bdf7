"""Schedules that carry rates (the share of tokens left noisy after each pass), the rates search space,
and confirmation of the search's pick on sentences beside the shots."""
import json
import math

import numpy as np
import pytest
import torch

from conftest import FIXTURES, PLUGIN_DIR, generate, read_hypotheses
from fairseq_tp.errors import UsageError
from fairseq_tp.schedules import Schedule, ScheduleSpec, write_schedule_file
from fairseq_tp.search import ScheduleSpace, Trial, candidates, choose_confirmed
from fairseq_tp.fairseq_search.cli import main as search_main

RDM = FIXTURES / "rdm-toy"
LINEAR = ["--argmax-decoding", "--decoding-strategy", "reparam-uncond-deterministic-linear"]
COSINE = ["--argmax-decoding", "--decoding-strategy", "reparam-uncond-deterministic-cosine"]


# -- the value ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("49,36,23,11@0.9,0.6,0.3", "the schedule has 4 timesteps but 3 rates: give one rate per pass (the share of "
                                "tokens left noisy after it)"),
    ("49,36,23,11@0.9,0.6,0.7,0", "schedule rates must be strictly decreasing (at 0.001), got 0.9,0.6,0.7,0"),
    ("49,36,23,11@0.9,0.9004,0.3,0", "schedule rates must be strictly decreasing (at 0.001), got 0.9,0.9,0.3,0"),
    ("49,36,23,11@1.5,0.6,0.3,0", "schedule rate 1.5 is out of range [0, 1] (the share of tokens left noisy)"),
    ("49,36,23,11@0.9,0.6,0.3,-0.2", "schedule rate -0.2 is out of range [0, 1] (the share of tokens left noisy)"),
    ("49,36,23,11@0.9,0.6,0.3,0.1", "the last schedule rate must be 0 (every token decoded after the last pass), "
                                    "got 0.9,0.6,0.3,0.1"),
    ("49,36@x,0", "schedule rate 'x' in '49,36@x,0' is not a number"),
    ("uniform:4@0.9,0.6,0", "the schedule has 4 timesteps but 3 rates: give one rate per pass (the share of tokens "
                            "left noisy after it)"),
])
def test_bad_rates_get_one_precise_line(text, message):
    with pytest.raises(UsageError) as error:
        ScheduleSpec.parse(text).resolve(50)
    assert str(error.value) == message


def test_rates_are_rounded_to_a_thousandth_and_round_trip_through_a_file(tmp_path):
    schedule = ScheduleSpec.parse("uniform:4@0.91234,0.6,0.30049,0").resolve(50)
    assert schedule == Schedule((49, 36, 23, 11), 50, (0.912, 0.6, 0.3, 0.0))
    assert str(schedule) == "49,36,23,11@0.912,0.6,0.3,0"
    assert ScheduleSpec.parse(str(schedule)).resolve(50) == schedule
    write_schedule_file(str(tmp_path / "s.json"), schedule, bleu=1.0)
    assert json.loads((tmp_path / "s.json").read_text())["rates"] == [0.912, 0.6, 0.3, 0.0]
    assert ScheduleSpec.parse(str(tmp_path / "s.json")).resolve(50) == schedule
    (tmp_path / "bad.json").write_text(json.dumps({"timesteps": [49, 20], "num_timesteps": 50, "rates": [0.2, 0.5]}))
    with pytest.raises(UsageError, match="bad.json: schedule rates must be strictly decreasing"):
        ScheduleSpec.parse(str(tmp_path / "bad.json"))


# -- decoding ----------------------------------------------------------------------------------------------------
def _loaded(checkpoint, flags):
    from fairseq_tp.fairseq_search.cli import parse
    from fairseq_tp.fairseq_search.loading import load_for_decoding
    cfg, _ = parse([str(RDM / "data-bin"), "--path", str(checkpoint), "--cpu", "--batch-size", "50", "--steps", "4",
                    *flags])
    return load_for_decoding(cfg)


@pytest.mark.fixture_dir("rdm-toy")
def test_each_pass_leaves_floor_of_words_times_rate_tokens_masked():
    """The closed form of the reparameterised step: after pass i, floor(L * rate_i) of a sentence's L words are
    still masked (RDM's float32 product), whatever the timesteps."""
    loaded = _loaded(RDM / "absorbing.pt", COSINE)
    rates = (0.8, 0.45, 0.1, 0.0)
    schedule = Schedule((49, 30, 20, 2), 50, rates)
    generator = loaded.task.build_diffusion_generator(loaded.model, schedule, loaded.generator.options,
                                                      retain_history=True)
    test = loaded.subset("test", "--gen-subset")
    sample = test.collater([test[i] for i in range(40)])
    hypos = generator.generate([loaded.model], sample)
    mask = loaded.model.diffusion.mask
    for (hypo,) in hypos:
        words = len(hypo["tokens"]) - 2  # bos, eos
        for i, rate in enumerate(rates):
            masked = int((hypo["history"][i + 1]["tokens"] == mask).sum())
            assert masked == int(np.float32(words) * np.float32(rate)), (i, words, masked)


@pytest.mark.fixture_dir("rdm-toy")
def test_rates_equal_to_the_linear_curve_decode_as_the_curve(tmp_path):
    data, ckpt = RDM / "data-bin", RDM / "absorbing.pt"
    curve = generate(data, ckpt, tmp_path / "curve", "--tp-schedule", "uniform:4", *LINEAR)
    explicit = generate(data, ckpt, tmp_path / "rates", "--tp-schedule", "uniform:4@0.75,0.5,0.25,0", *LINEAR)
    other = generate(data, ckpt, tmp_path / "other", "--tp-schedule", "uniform:4@0.5,0.3,0.1,0", *LINEAR)
    assert read_hypotheses(curve) == read_hypotheses(explicit) != read_hypotheses(other)


@pytest.mark.fixture_dir("rdm-toy")
@pytest.mark.parametrize("flags, message", [
    (["--decoding-strategy", "default"], "--decoding-strategy default unmasks at the pace of the timesteps"),
    (COSINE + ["--denoising-rate", "timestep"], "drop --denoising-rate timestep"),
])
def test_rates_are_refused_where_decoding_cannot_honour_them(flags, message, tmp_path):
    from conftest import run_cli
    out = run_cli(["fairseq-generate", str(RDM / "data-bin"), "--user-dir", PLUGIN_DIR, "--task",
                   "diffusion_translation", "--path", str(RDM / "absorbing.pt"), "--gen-subset", "test", "--cpu",
                   "--tp-schedule", "uniform:4@0.75,0.5,0.25,0", *flags])
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("fairseq-tp: error: schedule rates (TIMESTEPS@RATES)") and message in last, last


def test_continuous_models_refuse_rates():
    from fairseq_tp.diffusion import DecodingOptions
    from fairseq_tp.diffusion.decoding import check_schedule_rates
    with pytest.raises(ValueError, match="continuous models have no tokens to unmask"):
        check_schedule_rates(DecodingOptions("reparam-uncond-deterministic-cosine", True), continuous=True)


# -- the space ---------------------------------------------------------------------------------------------------
CURVE = tuple(math.cos(math.pi / 2 * (i + 1) / 3) for i in range(3))


@pytest.mark.parametrize("searched", ["rates", "both"])
def test_rate_spaces_count_encode_and_enumerate_their_schedules(searched):
    space = ScheduleSpace(5, 3, searched=searched, curve=CURVE)
    timestep_choices = math.comb(4, 2) if searched == "both" else 1  # 2 free steps below 4
    assert space.size() == timestep_choices * math.comb(999, 2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        schedule = space.random_schedule(generator)
        assert schedule.rates[-1] == 0 and all(0 < r < 1 for r in schedule.rates[:-1])
        assert space.to_schedule(space.to_tensor(schedule)) == schedule
    baseline = space.baseline()
    assert baseline.rates is None and space.contains(baseline)
    assert space.to_tensor(baseline)[-2:].tolist() == pytest.approx([r * 1000 - 1 for r in CURVE[:2]])
    assert not ScheduleSpace(5, 3).contains(Schedule((4, 2, 0), 5, (0.5, 0.2, 0.0)))


def test_a_small_joint_space_enumerates_in_the_order_of_its_tensor():
    space = ScheduleSpace(4, 2, searched="both", curve=(0.5, 0.0))
    listed = list(space.enumerate())
    assert len(listed) == space.size() == 3 * 999
    assert [space.to_schedule(x) for x in space.enumeration_tensor()] == listed
    assert len(set(listed)) == len(listed)


def test_rate_spaces_refuse_what_they_cannot_search():
    with pytest.raises(UsageError, match="cannot search the rates of 1 step"):
        ScheduleSpace(50, 1, searched="rates", curve=(0.0,))
    with pytest.raises(UsageError, match="--free-first-step frees a timestep"):
        ScheduleSpace(50, 4, True, searched="rates", curve=(0.9, 0.7, 0.3, 0.0))


# -- confirmation (the library) ----------------------------------------------------------------------------------
def _trial(index, bleu, steps):
    return Trial(index, Schedule(steps, 50), bleu, "baseline" if index == 0 else "botorch", 0.0, 0.0, 0.0)


def test_candidates_are_uniform_then_the_best_distinct_schedules_earliest_first_on_ties():
    trials = [_trial(0, 20.0, (49, 30)), _trial(1, 25.0, (49, 10)), _trial(2, 22.0, (49, 20)),
              _trial(3, 25.0, (49, 5)), _trial(4, 19.0, (49, 1))]
    assert [c.timesteps for c in candidates(trials, 3)] == [(49, 30), (49, 10), (49, 5), (49, 20)]
    assert len(candidates(trials, 10)) == 5


def _statistics(per_sentence_matches):
    """[candidates, sentences, 1 draw, 10] sacreBLEU statistics: 4 words a sentence, ``m`` matching n-grams of
    every order (BLEU grows with m)."""
    rows = []
    for matches in per_sentence_matches:
        rows.append([[[4, 4, m, max(m - 1, 0), max(m - 2, 0), max(m - 3, 0), 4, 3, 2, 1]] for m in matches])
    return np.array(rows, dtype=np.int64)


def _bleu(stats):
    from fairseq_tp.fairseq_search.bleu import SacreBleu
    return SacreBleu().from_statistics(stats)


def test_a_candidate_better_on_every_sentence_is_chosen_and_an_equal_one_is_not():
    schedules = [Schedule((49, 30), 50), Schedule((49, 10), 50), Schedule((49, 5), 50)]
    better = _statistics([[2] * 30, [4] * 30, [3] * 30])
    confirmed = choose_confirmed(better, schedules, _bleu, level=0.9, seed=1)
    assert confirmed.chosen == schedules[1] and not confirmed.kept_uniform and confirmed.confidence == 1.0
    assert confirmed.bleu[1] > confirmed.bleu[2] > confirmed.bleu[0] and confirmed.gain_interval[0] > 0
    equal = _statistics([[3] * 30, [3] * 30, [3] * 30])
    kept = choose_confirmed(equal, schedules, _bleu, level=0.9, seed=1)
    assert kept.chosen == schedules[0] and kept.kept_uniform
    assert kept.why == "no candidate beat uniform on the confirmation sentences"


def test_a_pick_that_wins_on_few_sentences_fails_the_level_and_uniform_is_written():
    schedules = [Schedule((49, 30), 50), Schedule((49, 10), 50)]
    lucky = _statistics([[2] * 30, [2] * 27 + [4, 4, 0]])  # ahead on 2 sentences, behind on 1
    confirmed = choose_confirmed(lucky, schedules, _bleu, level=0.9, seed=1)
    assert confirmed.best == 1 and confirmed.kept_uniform and confirmed.chosen == schedules[0]
    assert confirmed.confidence < 0.9 and "under --confirm-level 0.9" in confirmed.why


# -- the command line --------------------------------------------------------------------------------------------
def _search(tmp_path, *extra, name="schedule.json", checkpoint="absorbing.pt"):
    output = tmp_path / name
    search_main([str(RDM / "data-bin"), "--user-dir", PLUGIN_DIR, "--path", str(RDM / checkpoint), "--cpu",
                 "--no-progress-bar", "--batch-size", "50", "--output", str(output), "--steps", "4", *extra])
    return json.loads(output.read_text())


def _log_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


@pytest.fixture(scope="module")
def rates_search(tmp_path_factory):
    """One confirmed rates search on the RDM absorbing fixture, shared by the tests below."""
    work = tmp_path_factory.mktemp("rates-search")
    record = _search(work, "--shots", "20", "--budget", "12", "--seed", "2", "--search-space", "rates",
                     "--confirm-top", "3", "--confirm-shots", "60", "--plot", str(work / "trials.png"), *COSINE)
    return work, record


@pytest.mark.fixture_dir("rdm-toy")
def test_a_rates_search_logs_rates_and_confirms_on_sentences_beside_the_shots(rates_search):
    work, record = rates_search
    assert record["search_space"] == "rates" and record["searched"]["rates"][-1] == 0
    confirmation = record["confirmation"]
    ids = confirmation["sentence_ids"]
    assert len(ids) == 60 == len(set(ids)) and not set(ids) & set(record["shot_ids"])
    assert len(confirmation["candidates"]) == 4 and confirmation["candidates"][0]["timesteps"] == [49, 36, 23, 11]
    assert "rates" not in confirmation["candidates"][0]  # uniform decodes with the strategy's curve
    lines = _log_lines(work / "schedule.trials.jsonl")
    trials = [line for line in lines if "kind" not in line]
    confirms = [line for line in lines if line.get("kind") == "confirm"]
    assert len(trials) == 12 and all(len(t["rates"]) == 4 for t in trials[1:])
    assert [c["bleu"] for c in confirms] == [c["bleu"] for c in confirmation["candidates"]]
    assert all(len(c["statistics"]) == 60 for c in confirms)
    written = confirmation["candidates"][confirmation["chosen"]]
    assert record["timesteps"] == written["timesteps"] and record.get("rates") == written.get("rates")
    assert (work / "trials.png").stat().st_size > 0


@pytest.mark.fixture_dir("rdm-toy")
def test_the_logged_bleu_of_a_rates_schedule_is_what_fairseq_generate_gets(rates_search, tmp_path):
    """The searched rates schedule, decoded by fairseq-generate on the confirmation sentences, scores the
    BLEU the trial log recorded for it there (the same sentences, the scorer recomputed by sacreBLEU)."""
    import sacrebleu
    from test_search_cli import generated_lines, shots_data_bin
    work, record = rates_search
    confirmation = record["confirmation"]
    best = confirmation["candidates"][1]  # the best rates schedule on the shots
    schedule = str(Schedule(tuple(best["timesteps"]), 50, tuple(best["rates"])))
    data = shots_data_bin(tmp_path, confirmation["sentence_ids"])
    out = generate(data, RDM / "absorbing.pt", tmp_path / "gen", "--batch-size", "50", "--tp-schedule", schedule,
                   *COSINE)
    hyps, refs = generated_lines(out, "D"), generated_lines(out, "T")
    assert sacrebleu.corpus_bleu(hyps, [refs]).score == pytest.approx(best["bleu"], abs=1e-9)


@pytest.mark.fixture_dir("rdm-toy")
def test_a_killed_confirmation_resumes_to_the_same_choice(rates_search, tmp_path):
    work, record = rates_search
    lines = (work / "schedule.trials.jsonl").read_text().splitlines(keepends=True)
    # Killed while writing the third confirmation: two whole lines and a torn one.
    first_confirm = next(i for i, line in enumerate(lines) if '"kind": "confirm"' in line)
    (tmp_path / "schedule.trials.jsonl").write_text("".join(lines[:first_confirm + 2]) +
                                                     lines[first_confirm + 2][:40])
    resumed = _search(tmp_path, "--shots", "20", "--budget", "12", "--seed", "2", "--search-space", "rates",
                      "--confirm-top", "3", "--confirm-shots", "60", "--resume", *COSINE)
    assert resumed["confirmation"]["candidates"] == record["confirmation"]["candidates"]
    assert (resumed["timesteps"], resumed.get("rates")) == (record["timesteps"], record.get("rates"))
    confirms = [line for line in _log_lines(tmp_path / "schedule.trials.jsonl") if line.get("kind") == "confirm"]
    assert len(confirms) == 4


@pytest.mark.fixture_dir("rdm-toy")
def test_confirmation_is_skipped_and_recorded_when_the_shots_are_the_whole_subset(tmp_path):
    record = _search(tmp_path, "--shots", "all", "--budget", "3", *COSINE, "--search-space", "timesteps")
    assert record["confirmation"] == {"skipped": "no sentences left beside the shots"}


@pytest.mark.fixture_dir("rdm-toy")
@pytest.mark.parametrize("flags, message", [
    (["--search-space", "rates", "--decoding-strategy", "default"],
     "--search-space rates: schedule rates (TIMESTEPS@RATES) replace the curve"),
    (["--min-confidence", "0.8"], "--min-confidence tests the pick on the shots; confirmation (on by default)"),
    (["--confirm-shots", "1"], "--confirm-shots must be a number >= 2 or 'all', got '1'"),
    (["--confirm-level", "0.3"], "--confirm-level must be a share in [0.5, 1), got 0.3"),
    (["--confirm-top", "-1"], "--confirm-top must be a non-negative integer, got -1"),
    (["--search-space", "rates", "--strategy", "paper", *COSINE], "--strategy paper searches timesteps only"),
])
def test_bad_confirmation_and_space_options_get_one_line(flags, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        _search(tmp_path, "--budget", "3", *flags)
    line = str(exit_info.value.code)
    assert line.startswith("fairseq-tp-search: error: ") and message in line and "\n" not in line, line
    assert not (tmp_path / "schedule.json").exists()


FRONT = ("--steps", "2,3", "--shots", "20", "--target", "0.9", "--confirm-shots", "40", *COSINE)


@pytest.fixture(scope="module")
def confirmed_front(tmp_path_factory):
    """A front over N = 2, 3 on the RDM absorbing fixture, every N confirmed: (its record, its folder)."""
    work = tmp_path_factory.mktemp("confirmed-front")
    return _search(work, *FRONT, "--budget", "12", "--confirm-top", "2"), work


@pytest.mark.fixture_dir("rdm-toy")
def test_the_front_chooses_n_from_shares_on_the_confirmation_sentences(confirmed_front):
    record, work = confirmed_front
    assert record["shares_from"] == "confirmation"
    front = {p["steps"]: p for p in record["front"]}
    for n in (2, 3):  # each N confirmed against its own uniform, in its own trial log
        lines = _log_lines(work / f"schedule.trials.steps{n}.jsonl")
        confirms = [line for line in lines if line.get("kind") == "confirm"]
        assert len(confirms) == 3
        # the front names what N writes and its BLEU there, as that log recorded them
        confirmed = {(tuple(c["timesteps"]), tuple(c.get("rates") or ())): c["bleu"] for c in confirms}
        assert front[n]["bleu"] == confirmed[tuple(front[n]["timesteps"]), tuple(front[n].get("rates") or ())]
        assert front[n]["uniform_bleu"] == confirmed[tuple(front[n]["uniform_timesteps"]), ()]
        assert front[n]["searched"]["few_shot_bleu"] == max(t["bleu"] for t in lines if t.get("kind") != "confirm")
    chosen_entry = front[record["steps"]]
    assert (chosen_entry["timesteps"], chosen_entry.get("rates")) == (record["timesteps"], record.get("rates"))
    shares = record["confirmation"]["front"]["shares"]
    assert record["all_steps"]["bleu"] == record["confirmation"]["front"]["all_steps_bleu"]
    assert {int(n): s for n, s in shares.items()} == {n: front[n]["share"] for n in (2, 3)}
    chosen = record["steps"]
    written = record["confirmation"]["candidates"][record["confirmation"]["chosen"]]["bleu"]
    assert front[chosen]["share"] == pytest.approx(written / record["all_steps"]["bleu"])
    reaching = [n for n in (2, 3) if front[n]["share"] >= 0.9]
    assert chosen == (min(reaching) if reaching else max((2, 3), key=lambda n: (front[n]["share"], -n)))


@pytest.mark.fixture_dir("rdm-toy")
def test_a_front_whose_searches_evaluated_only_uniform_writes_uniform_scored_on_the_confirmation_sentences(
        confirmed_front, tmp_path):
    # budget 2 over N = 2, 3: each N evaluates its uniform alone, so there is nothing to confirm (was a KeyError)
    record = _search(tmp_path, *FRONT, "--budget", "2")
    assert record["shares_from"] == "confirmation"
    assert record["confirmation"]["skipped"] == "the search evaluated no schedule besides uniform"
    # the same sentences' BLEU as the confirmed front's: its uniform candidates, as its trial logs recorded them
    reference, _ = confirmed_front
    assert record["all_steps"] == reference["all_steps"]
    confirmed = {p["steps"]: p["uniform_bleu"] for p in reference["front"]}
    for p in record["front"]:
        assert p["evaluations"] == 1 and p["timesteps"] == p["uniform_timesteps"] and "rates" not in p
        assert p["bleu"] == p["uniform_bleu"] == confirmed[p["steps"]]
        assert p["share"] == pytest.approx(p["bleu"] / record["all_steps"]["bleu"])
    assert record["timesteps"] == record["uniform_timesteps"] and "rates" not in record


@pytest.mark.fixture_dir("rdm-toy")
def test_confirmation_is_skipped_and_recorded_when_only_uniform_was_evaluated(tmp_path):
    record = _search(tmp_path, "--shots", "20", "--budget", "1", *COSINE)
    assert record["confirmation"] == {"skipped": "the search evaluated no schedule besides uniform"}
    assert record["timesteps"] == [49, 36, 23, 11] and "rates" not in record
