"""fairseq-tp-search end to end: search -> schedule.json -> fairseq-generate, resume, and bad input."""
import json
import os
import re
import shutil
import subprocess

import pytest
import sacrebleu

from conftest import FIXTURES, PLUGIN_DIR, TINY_MODEL, fairseq_main, generate, run_cli
from fairseq_tp.fairseq_search.bleu import TokenizedBleu, Translation, compound_split
from fairseq_tp.fairseq_search.cli import main as search_main

RDM = FIXTURES / "rdm-toy"
DETERMINISTIC = ["--argmax-decoding", "--decoding-strategy", "reparam-uncond-deterministic-cosine"]


def search(data, checkpoint, out_dir, *extra, name="schedule.json"):
    output = out_dir / name
    search_main([str(data), "--user-dir", PLUGIN_DIR, "--path", str(checkpoint), "--cpu", "--no-progress-bar",
                 "--output", str(output), *extra])
    return json.loads(output.read_text())


def search_error(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        search_main(list(args))
    message = str(exit_info.value.code)
    assert message.startswith("fairseq-tp-search: error: ") and "\n" not in message, message
    return message


def generated_lines(path, prefix):
    lines = {}
    for line in path.read_text().splitlines():
        if line.startswith(prefix + "-"):
            head, *fields = line.split("\t")
            lines[int(head[len(prefix) + 1:])] = fields[-1] if fields else ""
    return [lines[i] for i in sorted(lines)]


def shots_data_bin(tmp_path, shot_ids):
    """The searched shots of the fixture's valid subset as a data-bin of their own."""
    raw = tmp_path / "shots"
    raw.mkdir()
    for side in ("src", "tgt"):
        lines = (RDM / "raw" / f"valid.{side}").read_text().splitlines()
        (raw / f"test.{side}").write_text("".join(lines[i] + "\n" for i in shot_ids))
    fairseq_main("preprocess", ["--source-lang", "src", "--target-lang", "tgt", "--testpref", str(raw / "test"),
                                "--srcdict", str(RDM / "data-bin" / "dict.src.txt"),
                                "--tgtdict", str(RDM / "data-bin" / "dict.tgt.txt"),
                                "--destdir", str(tmp_path / "shots-bin"), "--workers", "1"])
    return tmp_path / "shots-bin"


@pytest.mark.fixture_dir("rdm-toy")
@pytest.mark.parametrize("bleu", ["sacrebleu", "tokenized"])
def test_fairseq_generate_on_the_shots_reproduces_the_recorded_bleu(bleu, tmp_path):
    record = search(RDM / "data-bin", RDM / "absorbing.pt", tmp_path, "--steps", "4", "--shots", "20",
                    "--budget", "6", "--batch-size", "50", "--bleu", bleu, *DETERMINISTIC)
    assert len(record["shot_ids"]) == 20 and record["shots"] == 20 and record["subset"] == "valid"
    expected_scorer = "tokenized" if bleu == "tokenized" else f"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|" \
        f"version:{sacrebleu.__version__}"
    assert record["scorer"] == expected_scorer
    assert 30 < record["bleu"] and record["bleu"] >= record["uniform_bleu"]
    data = shots_data_bin(tmp_path, record["shot_ids"])
    scoring = ["--scoring", "sacrebleu"] if bleu == "sacrebleu" else []
    out = generate(data, RDM / "absorbing.pt", tmp_path / "gen", "--batch-size", "50",
                   "--tp-schedule", str(tmp_path / "schedule.json"), *DETERMINISTIC, *scoring)
    refs = generated_lines(out, "T")
    if bleu == "sacrebleu":
        hyps = generated_lines(out, "D")
        assert sacrebleu.corpus_bleu(hyps, [refs]).score == record["bleu"]
        printed = re.search(r"BLEU = ([\d.]+)", out.read_text()).group(1)
    else:  # fairseq's scripts/compound_split_bleu.sh, run as written
        split = "perl -ple 's{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g'"
        for prefix, name in (("H", "sys"), ("T", "ref")):
            (tmp_path / name).write_text("".join(x + "\n" for x in generated_lines(out, prefix)))
            subprocess.run(f"{split} < {tmp_path / name} > {tmp_path / name}.split", shell=True, check=True)
        scored = run_cli(["fairseq-score", "--sys", str(tmp_path / "sys.split"), "--ref", str(tmp_path / "ref.split")])
        printed = re.search(r"BLEU4 = ([\d.]+)", scored.stdout).group(1)
        hyps = generated_lines(out, "H")
        translations = [Translation(i, h, h, r) for i, (h, r) in enumerate(zip(hyps, refs))]
        assert TokenizedBleu().score(translations) == record["bleu"]
    assert printed == f"{record['bleu']:.2f}"


def test_search_writes_a_schedule_file_fairseq_generate_reads(toy_data, checkpoints, tmp_path):
    record = search(toy_data / "bin", checkpoints["absorbing"], tmp_path, "--steps", "3", "--shots", "all",
                    "--budget", "5", "--plot", str(tmp_path / "trials.png"), "--eval-subset", "test")
    expected_keys = {"timesteps", "num_timesteps", "steps", "bleu", "uniform_bleu", "shots", "seed", "strategy",
                     "evaluations", "scorer", "checkpoint", "checkpoint_sha256", "elapsed_s", "decoding"}
    assert expected_keys <= set(record)
    assert record["num_timesteps"] == 50 and record["steps"] == 3 and record["timesteps"][0] == 49
    assert record["shots"] == "all" and record["shot_ids"] == list(range(24)) and record["evaluations"] == 5
    assert record["decoding"] == {"strategy": "default", "argmax": False, "temperature": 1.0, "length_beam": 1,
                                  "ema": False, "denoising_rate": "pass-index"}
    assert set(record["eval"]) == {"subset", "uniform", "searched"} and record["eval"]["searched"]["sents_per_s"] > 0
    trials = (tmp_path / "schedule.trials.jsonl").read_text().splitlines()
    assert len(trials) == 1 + 5 and (tmp_path / "trials.png").stat().st_size > 0
    out = generate(toy_data / "bin", checkpoints["absorbing"], tmp_path / "gen", "--tp-schedule",
                   str(tmp_path / "schedule.json"), "--print-step")
    steps = {line.split("\t")[1] for line in out.read_text().splitlines() if line.startswith("I-")}
    assert steps == {"3"}


def test_resumed_search_matches_an_uninterrupted_one(toy_data, checkpoints, tmp_path):
    args = [toy_data / "bin", checkpoints["multinomial"]]
    common = ["--steps", "3", "--shots", "12", "--seed", "3"]
    whole = search(*args, tmp_path, *common, "--budget", "11", name="whole.json")
    search(*args, tmp_path, *common, "--budget", "5", name="part.json")
    resumed = search(*args, tmp_path, *common, "--budget", "11", "--resume", name="part.json")

    def trials(name):
        lines = [json.loads(line) for line in (tmp_path / name).read_text().splitlines()[1:]]
        return [(line["timesteps"], line["bleu"]) for line in lines if line.get("kind") != "confirm"]

    assert trials("part.trials.jsonl") == trials("whole.trials.jsonl") and len(trials("whole.trials.jsonl")) == 11
    assert (resumed["timesteps"], resumed["bleu"]) == (whole["timesteps"], whole["bleu"])


def test_candidate_schedules_decoded_together_score_as_alone(toy_data, checkpoints):
    # Sampling decoding: equal scores need each schedule to see the same noise in any batch.
    from fairseq_tp.fairseq_search.bleu import SacreBleu
    from fairseq_tp.fairseq_search.cli import parse
    from fairseq_tp.fairseq_search.loading import load_for_decoding
    from fairseq_tp.search import ScheduleSpace
    cfg, _ = parse([str(toy_data / "bin"), "--path", str(checkpoints["reparam-multinomial"]), "--steps", "3",
                    "--cpu", "--decoding-strategy", "reparam-uncond-stochastic1.0-linear"])
    loaded = load_for_decoding(cfg)
    valid = loaded.subset("valid", "--gen-subset")
    space = ScheduleSpace(50, 3)
    schedules = [space.baseline()] + space.initial_design(6, 0)
    scores = {}
    for per_batch in (8, 3, 1):
        objective = loaded.objective(valid, range(16), SacreBleu(), seed=1, schedules_per_batch=per_batch)
        scores[per_batch] = objective.evaluate(schedules)
    assert scores[8] == scores[3] == scores[1]
    assert len(set(scores[1])) > 1  # the schedules do score differently


def test_encoder_runs_once_per_batch_of_shots(toy_data, checkpoints, monkeypatch, tmp_path):
    from fairseq_tp.fairseq_glue.generator import DiffusionGenerator
    calls = []
    original = DiffusionGenerator.encode
    monkeypatch.setattr(DiffusionGenerator, "encode", lambda self, *a: calls.append(1) or original(self, *a))
    search(toy_data / "bin", checkpoints["absorbing"], tmp_path, "--steps", "3", "--shots", "all",
           "--batch-size", "10", "--budget", "9")
    assert len(calls) == 3  # 24 sentences in batches of <= 10, for 9 evaluations


def test_compound_split_matches_fairseqs_perl_one_liner():
    line = "a well-known state-of-the-art x- a-b-c -d e--f"
    perl = subprocess.run(["perl", "-ple", "s{(\\S)-(\\S)}{$1 ##AT##-##AT## $2}g"], input=line + "\n",
                          capture_output=True, text=True, check=True).stdout.rstrip("\n")
    assert compound_split(line) == perl == ("a well ##AT##-##AT## known state ##AT##-##AT## of ##AT##-##AT## the "
                                            "##AT##-##AT## art x- a ##AT##-##AT## b-c -d e ##AT##-##AT## -f")


@pytest.fixture(scope="module")
def transformer_checkpoint(toy_data, tmp_path_factory):
    save = tmp_path_factory.mktemp("transformer")
    fairseq_main("train", [str(toy_data / "bin"), "--task", "translation", *TINY_MODEL, "--arch", "transformer",
                           "--optimizer", "adam", "--lr", "0.001", "--max-update", "1", "--max-tokens", "1024",
                           "--save-dir", str(save), "--no-epoch-checkpoints", "--cpu", "--no-progress-bar"])
    return save / "checkpoint_last.pt"


def test_bad_input_gets_one_line_and_writes_nothing(toy_data, checkpoints, transformer_checkpoint, capsys,
                                                    tmp_path):
    data, ckpt = str(toy_data / "bin"), str(checkpoints["absorbing"])
    output = tmp_path / "s.json"
    base = [data, "--cpu", "--no-progress-bar", "--output", str(output)]
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    cases = {
        "does not exist": ["--path", str(tmp_path / "missing.pt"), "--steps", "4"],
        "cannot load checkpoint": ["--path", str(garbage), "--steps", "4"],
        "is not a diffusion model (architecture 'transformer')": ["--path", str(transformer_checkpoint),
                                                                   "--steps", "4"],
        "cannot search 50 steps for a model with T = 50": ["--path", ckpt, "--steps", "50"],
        "--shots 25 is more than the 24 sentences in subset 'valid'": ["--path", ckpt, "--steps", "4",
                                                                       "--shots", "25"],
        "Dataset not found: nosuch": ["--path", ckpt, "--steps", "4", "--gen-subset", "nosuch"],
        "--output: directory": ["--path", ckpt, "--steps", "4", "--output", str(tmp_path / "no" / "s.json")],
    }
    for expected, args in cases.items():
        message = search_error(capsys, *base, *args)
        assert expected in message, (expected, message)
    assert not output.exists() and not (tmp_path / "s.trials.jsonl").exists()


def test_a_user_dir_of_another_checkout_is_refused_naming_both(toy_data, checkpoints, capsys, tmp_path):
    other = tmp_path / "other" / "fairseq_tp"
    other.mkdir(parents=True)
    message = search_error(capsys, str(toy_data / "bin"), "--user-dir", str(other), "--path",
                           str(checkpoints["absorbing"]), "--steps", "3", "--cpu", "--output", str(tmp_path / "s.json"))
    found, ours = os.path.realpath(other), os.path.realpath(PLUGIN_DIR)
    assert message == (f"fairseq-tp-search: error: --user-dir {other} is {found}, but fairseq-tp-search runs the "
                       f"fairseq_tp in {ours}; run the fairseq-tp-search installed from {found}, or leave --user-dir out")
    # Our own package, by path or by the bare name, is accepted.
    record = search(toy_data / "bin", checkpoints["absorbing"], tmp_path, "--steps", "2", "--shots", "4",
                    "--budget", "2")
    assert record["evaluations"] == 2


def test_n_init_is_checked_before_the_model_is_loaded(toy_data, capsys, tmp_path):
    message = search_error(capsys, str(toy_data / "bin"), "--path", str(tmp_path / "missing.pt"), "--steps", "3",
                           "--n-init", "-1", "--cpu", "--output", str(tmp_path / "s.json"))
    assert message == "fairseq-tp-search: error: --n-init must be a non-negative integer, got -1"


def test_eval_subset_is_checked_before_the_search(toy_data, checkpoints, capsys, tmp_path):
    message = search_error(capsys, str(toy_data / "bin"), "--path", str(checkpoints["absorbing"]), "--steps", "3",
                           "--eval-subset", "tset", "--cpu", "--output", str(tmp_path / "s.json"))
    assert message.startswith("fairseq-tp-search: error: --eval-subset: Dataset not found: tset")
    assert not (tmp_path / "s.trials.jsonl").exists() and not (tmp_path / "s.json").exists()


def test_schedule_file_is_written_when_the_search_ends_then_rewritten_with_the_evaluation(
        toy_data, checkpoints, monkeypatch, tmp_path):
    from fairseq_tp.fairseq_search import timing
    args = ("--steps", "3", "--shots", "6", "--budget", "4", "--eval-subset", "test")

    def evaluation_fails(*_, **__):
        raise RuntimeError("the evaluation died")

    monkeypatch.setattr(timing, "time_schedules", evaluation_fails)
    with pytest.raises(RuntimeError, match="the evaluation died"):
        search(toy_data / "bin", checkpoints["absorbing"], tmp_path, *args)
    searched = json.loads((tmp_path / "schedule.json").read_text())
    assert searched["evaluations"] == 4 and "eval" not in searched
    monkeypatch.undo()
    record = search(toy_data / "bin", checkpoints["absorbing"], tmp_path, *args, "--resume")
    assert record["timesteps"] == searched["timesteps"] and record["bleu"] == searched["bleu"]
    assert set(record["eval"]) == {"subset", "uniform", "searched"} and record["eval"]["subset"] == "test"
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "schedule.json").st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


def test_trial_log_mismatches_are_refused(toy_data, checkpoints, capsys, tmp_path):
    base = [str(toy_data / "bin"), "--cpu", "--no-progress-bar", "--output", str(tmp_path / "s.json"),
            "--path", str(checkpoints["absorbing"]), "--steps", "3", "--shots", "8", "--budget", "3"]
    search_main(base)
    assert "already exists; resume it with --resume" in search_error(capsys, *base)
    assert "(shot_ids, shots differ)" in search_error(capsys, *base[:-4], "--shots", "9", "--budget", "3",
                                                      "--resume")
    assert "(decoding differs)" in search_error(capsys, *base, "--argmax-decoding", "--resume")
    other = str(checkpoints["reparam-absorbing"])
    assert "(checkpoint_sha256 differs)" in search_error(capsys, *[other if a == base[6] else a for a in base],
                                                         "--resume")
    log = tmp_path / "s.trials.jsonl"
    log.write_text("{not json\n")
    assert "is not a valid trial log" in search_error(capsys, *base, "--resume")


def test_command_line_tool_is_installed_and_exits_non_zero_on_bad_input(toy_data, checkpoints, tmp_path):
    shutil.copy(checkpoints["absorbing"], tmp_path / "ckpt.pt")
    result = run_cli(["fairseq-tp-search", str(toy_data / "bin"), "--user-dir", "fairseq_tp", "--path",
                      str(tmp_path / "ckpt.pt"), "--steps", "60", "--cpu"], cwd=tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == ["fairseq-tp-search: error: --steps: cannot search 60 steps for a model with T = 50: "
                      "with N >= T at most one schedule exists (every timestep), nothing to search"]
    ok = run_cli(["fairseq-tp-search", str(toy_data / "bin"), "--user-dir", "fairseq_tp", "--path", "ckpt.pt",
                  "--steps", "2", "--shots", "5", "--budget", "3", "--cpu"], cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    record = json.loads((tmp_path / "schedule.json").read_text())
    assert record["evaluations"] == 3
    searched = [line.split() for line in ok.stdout.splitlines() if line.startswith("searched ")]
    assert searched == [["searched", ",".join(map(str, record["searched"]["timesteps"])), "BLEU",
                         f"{record['searched_bleu']:.2f}", f"({record['searched_bleu'] - record['uniform_bleu']:+.2f})",
                         "on", "the", "shots"]]


@pytest.mark.fixture_dir("rdm-toy")
def test_search_takes_rdm_checkpoints_and_rdm_decoding_flags(tmp_path):
    record = search(RDM / "data-bin", RDM / "multinomial.pt", tmp_path, "--steps", "4", "--shots", "16",
                    "--budget", "4", "--iter-decode-with-beam", "3", "--load-ema-weights", "--remove-bpe",
                    "--argmax-decoding", "--decoding-strategy", "reparam-uncond-stochastic0.5-cosine",
                    "--iter-decode-eos-penalty", "0", "--iter-decode-force-max-iter")
    assert record["decoding"] == {"strategy": "reparam-uncond-stochastic0.5-cosine", "argmax": True,
                                  "temperature": 1.0, "length_beam": 3, "ema": True, "denoising_rate": "pass-index"}
    # The fixture's multinomial model degrades with more steps but is well trained at 4 (RDM: BLEU4 ~40).
    assert record["uniform_bleu"] > 20 and record["bleu"] >= record["uniform_bleu"]


def test_killed_command_resumes_to_the_uninterrupted_result(toy_data, checkpoints, tmp_path):
    import signal
    import time
    args = [str(toy_data / "bin"), "--path", str(checkpoints["absorbing"]), "--steps", "3", "--shots", "12",
            "--budget", "14", "--cpu", "--no-progress-bar"]
    whole = search(toy_data / "bin", checkpoints["absorbing"], tmp_path, *args[3:-2], name="whole.json")
    log = tmp_path / "killed.trials.jsonl"
    command = ["fairseq-tp-search", *args, "--output", str(tmp_path / "killed.json")]
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 10):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(log.read_text().splitlines()) - 1
    assert 9 <= finished < 14 and not (tmp_path / "killed.json").exists()
    resumed = search(toy_data / "bin", checkpoints["absorbing"], tmp_path, *args[3:-2], "--resume",
                     name="killed.json")
    trials = lambda name: [(json.loads(x)["timesteps"], json.loads(x)["bleu"])  # noqa: E731
                           for x in (tmp_path / name).read_text().splitlines()[1:]]
    assert trials("killed.trials.jsonl") == trials("whole.trials.jsonl")
    assert (resumed["timesteps"], resumed["bleu"]) == (whole["timesteps"], whole["bleu"])


def test_replicates_share_noise_across_schedules_and_differ_between_draws(toy_data, checkpoints):
    import torch
    from fairseq_tp.fairseq_search.bleu import SacreBleu
    from fairseq_tp.fairseq_search.cli import parse
    from fairseq_tp.fairseq_search.loading import load_for_decoding
    from fairseq_tp.schedules import Schedule
    cfg, _ = parse([str(toy_data / "bin"), "--path", str(checkpoints["absorbing"]), "--steps", "3", "--cpu",
                    "--batch-size", "8"])  # default strategy: where to unmask is random
    loaded = load_for_decoding(cfg)
    valid = loaded.subset("valid", "--gen-subset")
    objective = loaded.objective(valid, range(len(valid)), SacreBleu(), seed=3, schedules_per_batch=3, replicates=3)
    first_draws = [torch_rand(g) for g in objective._noise(0, [0, 1, 0, 2]).generators]
    assert torch.equal(first_draws[0], first_draws[2])  # the same draw for every schedule...
    assert not torch.equal(first_draws[0], first_draws[1]) and not torch.equal(first_draws[1], first_draws[3])
    a, b = Schedule((49, 30, 10), 50), Schedule((49, 20, 5), 50)
    runs = [(a, 0), (b, 0), (a, 1), (b, 1), (a, 2)]
    together = objective._translate_runs(runs)  # chunks of 3: the pairs share batches with different others
    alone = [objective._translate_runs([run])[0] for run in runs]
    text = lambda translations: [t.hypothesis for t in translations]  # noqa: E731
    assert [text(t) for t in together] == [text(t) for t in alone]
    assert text(alone[0]) != text(alone[2])  # ...and draws differ from each other
    scores = objective.evaluate([a, b])
    assert scores == [[SacreBleu().score(alone[0]), SacreBleu().score(alone[2]), SacreBleu().score(alone[4])],
                      [SacreBleu().score(alone[1]), SacreBleu().score(alone[3]),
                       SacreBleu().score(objective._translate_runs([(b, 2)])[0])]]


def torch_rand(generator):
    import torch
    return torch.rand(5, generator=generator)  # what the generator's first draw will be


@pytest.mark.parametrize("flags, replicates, why", [
    (DETERMINISTIC, 1, "default: decoding is deterministic"),
    ([], 4, "default: decoding draws random numbers, so each schedule is scored over 4 noise draws"),
    (["--replicates", "2"], 2, "given by --replicates"),
])
def test_replicates_default_by_determinism_and_are_logged(flags, replicates, why, toy_data, checkpoints, tmp_path):
    record = search(toy_data / "bin", checkpoints["absorbing"], tmp_path, "--steps", "3", "--shots", "6",
                    "--budget", "4", *flags)
    assert (record["replicates"], record["replicates_why"]) == (replicates, why)
    lines = [json.loads(line) for line in (tmp_path / "schedule.trials.jsonl").read_text().splitlines()[1:]]
    trials = [line for line in lines if line.get("kind") != "confirm"]
    assert len(trials) == 4
    for trial in trials:
        if replicates == 1:
            assert "replicates" not in trial
        else:
            assert len(trial["replicates"]) == replicates
            assert trial["bleu"] == pytest.approx(sum(trial["replicates"]) / replicates, abs=1e-12)


def test_shot_seed_draws_the_shots_and_seed_the_noise(toy_data, checkpoints, tmp_path):
    base = ("--steps", "3", "--shots", "6", "--budget", "2", "--replicates", "1")
    one = search(toy_data / "bin", checkpoints["absorbing"], tmp_path, *base, "--seed", "1", name="a.json")
    other_noise = search(toy_data / "bin", checkpoints["absorbing"], tmp_path, *base, "--seed", "2",
                         "--shot-seed", "1", name="b.json")
    other_shots = search(toy_data / "bin", checkpoints["absorbing"], tmp_path, *base, "--seed", "2", name="c.json")
    assert one["shot_ids"] == other_noise["shot_ids"] != other_shots["shot_ids"]
    assert one["uniform_bleu"] != other_noise["uniform_bleu"]  # the same sentences, other noise


@pytest.mark.fixture_dir("rdm-toy")
def test_front_over_steps_writes_the_chosen_schedule_the_front_and_a_plot(toy_data, checkpoints, capsys, tmp_path):
    record = search(RDM / "data-bin", RDM / "absorbing.pt", tmp_path, "--steps", "3,2", "--shots", "10",
                    "--budget", "10", "--target", "0.01", "--front-plot", str(tmp_path / "front.png"), *DETERMINISTIC,
                    "--confirm-top", "0")
    front = {p["steps"]: p for p in record["front"]}
    assert record["shares_from"] == "shots"
    assert sorted(front) == [2, 3] and record["all_steps"]["timesteps"] == list(range(49, -1, -1))
    assert [front[2]["evaluations"], front[3]["evaluations"]] == [4, 6]  # 10 divided in proportion to N
    for p in front.values():
        assert p["share"] == pytest.approx(p["bleu"] / record["all_steps"]["bleu"])
    assert record["all_steps"]["bleu"] > 20  # a trained model: shares mean something
    assert min(p["share"] for p in front.values()) >= 0.01  # both N reach the target: the fewer passes win
    assert record["target_met"] is True and record["steps"] == 2 and record["timesteps"] == front[2]["timesteps"]
    assert (tmp_path / "schedule.trials.steps2.jsonl").exists() and (tmp_path / "schedule.trials.steps3.jsonl").exists()
    assert (tmp_path / "front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    message = search_error(capsys, str(toy_data / "bin"), "--path", str(checkpoints["absorbing"]), "--steps", "3",
                           "--target", "0.9", "--cpu", "--output", str(tmp_path / "t.json"))
    assert message == "fairseq-tp-search: error: --target and --front-plot need several --steps (e.g. --steps 2,3,4,6)"


class FakeTimingObjective:
    """BLEU = the schedule's steps; speeds handed out in call order."""
    def __init__(self, speeds):
        self.speeds = iter(speeds)

    def translate(self, schedules):  # the warm-up
        pass

    def timed(self, schedule):
        return float(schedule.steps), float(next(self.speeds))


def test_time_schedules_gives_median_speeds_and_a_bar_step_per_decode(capsys):
    from fairseq_tp.fairseq_search.timing import time_schedules
    from fairseq_tp.schedules import Schedule
    schedules = {"two": Schedule((49, 24), 50), "four": Schedule((49, 36, 23, 11), 50)}
    rows = time_schedules(FakeTimingObjective([10, 1, 30, 2, 20, 3]), schedules, repeats=3, progress="timing")
    assert rows == {"two": {"timesteps": [49, 24], "bleu": 2.0, "sents_per_s": 20.0},
                    "four": {"timesteps": [49, 36, 23, 11], "bleu": 4.0, "sents_per_s": 2.0}}
    bar = capsys.readouterr().err
    assert "timing: 100%" in bar and "6/6" in bar
    time_schedules(FakeTimingObjective([1, 1]), schedules, repeats=1)
    assert capsys.readouterr().err == ""  # no progress asked, none shown
