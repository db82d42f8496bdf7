"""RDM's decoding options, pass by pass, against RDM's arithmetic written out as data:
--decoding-time-difference, --temperature-annealing, adaptive decoding (no --iter-decode-force-max-iter),
--beam-within-length and --return-all-cands."""
from types import SimpleNamespace

import pytest
import torch

from fairseq_tp.diffusion import DecodingOptions, RandomSource, build_diffusion
from fairseq_tp.diffusion.decoding import rdm_uniform_step
from fairseq_tp.fairseq_glue.generator import DiffusionGenerator, Encoded
from fairseq_tp.schedules import Schedule

BOS, PAD, EOS, UNK = 0, 1, 2, 3
V = 9

# (T, K, D) -> per pass, what RDM's sample_step computes from its step_array (step n, size h):
# absorbing: n' = max(n - D, int(1.5 h)) if n > h else h, unmask probability h / n';
# multinomial (0-based step m = n - 1): m' = max(m - D, floor(1.5 h)) if m >= h else m, posterior t = m', s = m' - h.
TIME_DIFFERENCE = {
    (50, 10, 2): {"absorbing_n": [48, 43, 38, 33, 28, 23, 18, 13, 8, 5], "h": [5] * 10,
                  "multinomial_t": [47, 42, 37, 32, 27, 22, 17, 12, 7, 4]},
    (50, 4, 3): {"absorbing_n": [47, 34, 21, 12], "h": [13, 13, 12, 12], "multinomial_t": [46, 33, 20, 11]},
    (50, 10, 10): {"absorbing_n": [40, 35, 30, 25, 20, 15, 10, 7, 7, 5], "h": [5] * 10,
                   "multinomial_t": [39, 34, 29, 24, 19, 14, 9, 7, 7, 4]},
}


def diffusion(kind, T):
    return build_diffusion(kind, T, V, pad=PAD, bos=BOS, eos=EOS, mask=UNK, not_diffusing_special_sym=True)


@pytest.mark.parametrize("key", list(TIME_DIFFERENCE))
def test_time_difference_per_pass_is_rdms_arithmetic(key):
    T, K, D = key
    want = TIME_DIFFERENCE[key]
    schedule = Schedule.uniform(K, T)
    t, s = torch.tensor(schedule.timesteps), torch.tensor(schedule.targets())
    assert (t - s).tolist() == want["h"]
    absorbing = diffusion("absorbing", T)
    t_a, s_a = absorbing.shifted_times(t, s, D)
    assert (t_a + 1).tolist() == want["absorbing_n"] and (t_a - s_a).tolist() == want["h"]
    unmask = absorbing.unmask_probability(t_a, s_a).tolist()
    assert unmask == pytest.approx([h / n for h, n in zip(want["h"], want["absorbing_n"])])
    for kind in ("multinomial", "reparam-multinomial"):
        t_m, s_m = diffusion(kind, T).shifted_times(t, s, D)
        assert t_m.tolist() == want["multinomial_t"] and (t_m - s_m).tolist() == want["h"]
    assert absorbing.shifted_times(t, s, 0) == (t, s)


def test_time_difference_on_any_schedule_stays_in_range():
    d = diffusion("multinomial", 50)
    t, s = torch.tensor([49, 9, 3]), torch.tensor([9, 3, -1])  # step sizes 40, 6, 4 (the last: to x0)
    t2, s2 = d.shifted_times(t, s, 2)
    assert t2.tolist() == [49, 9, 3] and s2.tolist() == [9, 3, -1]  # floor(1.5 * 40) = 60 is capped at T - 1


ANNEALED = {1: [0.5], 2: [0.5, 0.45], 5: [0.5, 0.4875, 0.475, 0.4625, 0.45]}  # 0.5 - 0.05 i / (N - 1)


@pytest.mark.parametrize("passes", list(ANNEALED))
def test_temperature_annealing_per_pass(passes):
    options = DecodingOptions(temperature_annealing=True)
    got = [options.for_pass(i, passes).temperature for i in range(passes)]
    assert got == pytest.approx(ANNEALED[passes])
    assert DecodingOptions(temperature=0.7).for_pass(3, 5).temperature == 0.7


@pytest.mark.parametrize("kwargs,start", [
    (dict(time_difference=-1), "--decoding-time-difference must be"),
    (dict(strategy="reparam-uncond-deterministic-cosine", time_difference=2), "--decoding-time-difference applies"),
    (dict(argmax=True, temperature_annealing=True), "--temperature-annealing sets the sampling"),
    (dict(temperature=0.3, temperature_annealing=True), "--temperature-annealing sets the temperature"),
])
def test_decoding_options_rdm_ignores_are_refused(kwargs, start):
    with pytest.raises(ValueError) as info:
        DecodingOptions(**kwargs)
    assert str(info.value).startswith(start) and "\n" not in str(info.value)


@pytest.mark.parametrize("T", [7, 50])
def test_rdm_batched_spacing_is_uniform_n(T):
    for passes in range(1, T + 1):
        schedule = Schedule.uniform(passes, T)
        rows = torch.full((3,), passes)
        for i in range(passes):
            t, s = rdm_uniform_step(i, rows, T)
            assert t.tolist() == [schedule.timesteps[i]] * 3 and s.tolist() == [schedule.targets()[i]] * 3


class StubModel:
    """Records the network time each row sees; predicts token 5 everywhere (a word)."""

    def __init__(self, kind, T):
        self.diffusion = diffusion(kind, T)
        self.seen = []

    def select_encoder_rows(self, enc, index):
        return {"rows": enc["rows"][index]}

    def denoise(self, tokens, enc, t, x_t=None, cross_attention_cache=None):
        network_time = self.diffusion.network_time_at_decoding(t)  # as DiffusionTransformerModel.denoise
        self.seen.append(dict(zip(enc["rows"].tolist(), network_time.tolist())))
        logits = torch.zeros(tokens.shape + (V,))
        logits[..., 5] = 3.0
        return logits


def adaptive_run(kind, lengths, K, T=50, **kwargs):
    torch.manual_seed(0)
    model = StubModel(kind, T)
    tgt_dict = SimpleNamespace(pad=lambda: PAD, eos=lambda: EOS, bos=lambda: BOS)
    generator = DiffusionGenerator(tgt_dict, Schedule.uniform(K, T), DecodingOptions(argmax=True, **kwargs),
                                   adaptive=True, retain_history=True)
    lengths = torch.tensor(lengths)
    encoded = Encoded({"rows": torch.arange(len(lengths))}, lengths, len(lengths), 1)
    hypos = generator.decode(model, encoded, [generator.schedule], RandomSource())[0]
    per_row = [[seen[r] for seen in model.seen if r in seen] for r in range(len(lengths))]
    return [h[0] for h in hypos], per_row


LENGTHS = [3, 5, 8, 12, 20]  # bos + words + eos: 1, 3, 6, 10, 18 words


@pytest.mark.parametrize("kind", ["multinomial", "reparam-multinomial"])
def test_adaptive_multinomial_spaces_each_sentence_over_its_words(kind):
    K = 8
    hypos, seen = adaptive_run(kind, LENGTHS, K)
    for hypo, times in zip(hypos, seen):
        # Vanilla multinomial starts from any id, pad/bos/eos included (as RDM), so count the words there.
        start = hypo["history"][0]["tokens"]
        words = int((start.ne(BOS) & start.ne(EOS) & start.ne(PAD)).sum())
        passes = min(K, max(words, 1))
        assert hypo["steps"] == passes and len(hypo["history"]) == passes + 1
        assert times == list(Schedule.uniform(passes, 50).timesteps)  # the network sees 0-based t


@pytest.mark.parametrize("kind", ["absorbing", "reparam-absorbing"])
def test_adaptive_absorbing_stops_early_on_the_global_schedule(kind):
    K = 8
    hypos, seen = adaptive_run(kind, LENGTHS, K)
    full = [t + 1 for t in Schedule.uniform(K, 50).timesteps]  # RDM feeds absorbing models t + 1
    for length, hypo, times in zip(LENGTHS, hypos, seen):
        passes = min(K, length - 2)
        assert hypo["steps"] == passes and times == full[:passes]
    stopped_early = [h["tokens"] for h, length in zip(hypos, LENGTHS) if length - 2 < K]
    assert any((tokens == UNK).any() for tokens in stopped_early), "RDM's early stop leaves masks"


def test_adaptive_with_time_difference_runs_per_row():
    hypos, seen = adaptive_run("reparam-multinomial", [6, 20], 8, time_difference=2)
    assert [h["steps"] for h in hypos] == [4, 8]
    # the network sees each sentence's own step; only the posterior moves
    assert seen == [list(Schedule.uniform(4, 50).timesteps), list(Schedule.uniform(8, 50).timesteps)]
