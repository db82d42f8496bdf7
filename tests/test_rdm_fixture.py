"""Checkpoints trained by the public RDM plugin decode here as under RDM's own generator.

The fixture (../shared/fixtures/rdm-toy, see its README) holds RDM's hypotheses and BLEU for six settings.
"""
import re
import statistics

import pytest

from conftest import FIXTURES, generate, read_hypotheses

RDM = FIXTURES / "rdm-toy"
pytestmark = pytest.mark.fixture_dir("rdm-toy")


class _Settings(dict):
    """settings.txt as {name: [RDM's flags, the --tp-schedule spelling]}, read when first used."""

    def __missing__(self, name):
        for line in (RDM / "settings.txt").read_text().splitlines():
            if line and not line.startswith("#"):
                self[line.split("|")[0]] = line.split("|")[1:]
        return dict.__getitem__(self, name)


SETTINGS = _Settings()
DETERMINISTIC = ["s10-b1-reparam-uncond-cosine", "s4-b3-reparam-cond-linear"]


def rdm_bleu(checkpoint, setting):
    for line in (RDM / "bleu.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0] == checkpoint and cells[1].startswith(setting):
            return [float(v) for v in cells[2].split("/")]
    raise KeyError((checkpoint, setting))


def decode(tmp_path, checkpoint, flags, seed=1):
    out = generate(RDM / "data-bin", RDM / f"{checkpoint}.pt", tmp_path, "--seed", str(seed), "--batch-size", "50",
                   *flags.split())
    text = out.read_text()
    return read_hypotheses(out), float(re.search(r"BLEU4 = ([\d.]+)", text).group(1))


def rdm_hypotheses(checkpoint, setting):
    lines = (RDM / "refs" / f"{checkpoint}.{setting}.txt").read_text().splitlines()
    return {int(i): text for i, text in (line.split("\t", 1) if "\t" in line else (line, "") for line in lines)}


@pytest.mark.parametrize("setting", DETERMINISTIC)
@pytest.mark.parametrize("spelling", [0, 1], ids=["rdm-flags", "tp-schedule"])
def test_deterministic_settings_give_rdms_hypotheses(setting, spelling, tmp_path):
    ours, bleu = decode(tmp_path, "absorbing", SETTINGS[setting][spelling])
    assert ours == rdm_hypotheses("absorbing", setting)
    assert bleu == rdm_bleu("absorbing", setting)[0]


@pytest.mark.parametrize("checkpoint", ["absorbing", "multinomial"])
def test_default_strategy_matches_rdms_bleu_over_five_seeds(checkpoint, tmp_path):
    ours = [decode(tmp_path / str(seed), checkpoint, SETTINGS["s4-b1-default"][1], seed)[1] for seed in range(1, 6)]
    rdm = rdm_bleu(checkpoint, "s4-b1-default, seeds")
    assert abs(statistics.mean(ours) - statistics.mean(rdm)) <= 1.5, (ours, rdm)


RANDOM = ["s50-b1-default", "s10-b3-default", "s7-b1-default-ema"]


@pytest.mark.parametrize("checkpoint,setting", [("absorbing", s) for s in RANDOM] +
                         [("multinomial", s) for s in RANDOM + DETERMINISTIC])
def test_random_settings_within_three_bleu_of_rdm(checkpoint, setting, tmp_path):
    _, ours = decode(tmp_path, checkpoint, SETTINGS[setting][0])
    assert abs(ours - rdm_bleu(checkpoint, setting)[0]) <= 3.0


def test_multinomial_shows_the_degradation_the_paper_reports(tmp_path):
    _, full = decode(tmp_path / "50", "multinomial", SETTINGS["s50-b1-default"][1])
    _, four = decode(tmp_path / "4", "multinomial", SETTINGS["s4-b1-default"][1])
    assert four > full + 20



@pytest.mark.parametrize("setting,steps", [("s10-b1-reparam-uncond-cosine", 10), ("s4-b3-reparam-cond-linear", 4)])
def test_subset_decoder_scores_rdms_hypotheses(setting, steps):
    """The benchmarks' decoding-only API (fairseq-generate's command line, no --steps): sacreBLEU of RDM's own
    hypotheses against the raw references."""
    import sacrebleu

    from fairseq_tp.fairseq_search.decoder import SubsetDecoder
    from fairseq_tp.schedules import Schedule

    flags = SETTINGS[setting][1].split()
    flags = [f for i, f in enumerate(flags) if f != "--tp-schedule" and (i == 0 or flags[i - 1] != "--tp-schedule")]
    decoder = SubsetDecoder([str(RDM / "data-bin"), "--path", str(RDM / "absorbing.pt"), "--cpu", *flags])
    rdm = rdm_hypotheses("absorbing", setting)
    references = (RDM / "raw" / "test.tgt").read_text().splitlines()
    expected = sacrebleu.corpus_bleu([rdm[i] for i in range(len(references))], [references]).score
    assert decoder.bleu(Schedule.uniform(steps, decoder.num_timesteps)) == pytest.approx(expected, abs=1e-9)
