"""RDM's training options in the pure-torch processes: --q-sample-mode (coupled nesting, Monte Carlo
frequencies against the closed form, the loss of a hand-computed example), --time-sampler-type, and
pad/bos/eos without --not-diffusing-special-sym (RDM's closed form: specials get log-prob -30)."""
import math

import pytest
import torch

from fairseq_tp.diffusion import build_diffusion
from fairseq_tp.diffusion.training import check_training_options, training_draw
from test_diffusion_math import BOS, EOS, MASK, PAD, STATES, T, V, chain, make, multinomial_steps

ROWS = 40000
UNIGRAM = [0, 0, 0, 5, 1, 3, 9]


def build(kind, flag=True):
    if kind == "unigram":
        return build_diffusion("reparam-multinomial", T, V, pad=PAD, bos=BOS, eos=EOS, mask=MASK,
                               noise_distribution="unigram", vocab_count=UNIGRAM, not_diffusing_special_sym=flag)
    return build_diffusion(kind, T, V, pad=PAD, bos=BOS, eos=EOS, mask=MASK, not_diffusing_special_sym=flag)


def sentences(rows=ROWS):
    return torch.tensor([[BOS, 4, 6, 5, EOS, PAD]]).expand(rows, -1)


@pytest.mark.parametrize("kind", ["absorbing", "reparam-absorbing"])
@pytest.mark.parametrize("flag", [True, False])
def test_coupled_absorbing_masks_are_nested(kind, flag):
    d = build(kind, flag)
    torch.manual_seed(0)
    x0 = sentences(2000)
    t1, t2 = torch.randint(0, T, (2000,)), torch.randint(0, T, (2000,))
    corrupted, t = d.corrupt_coupled(x0, t1, t2)
    assert torch.equal(t, torch.cat([torch.maximum(t1, t2), torch.minimum(t1, t2)]))
    hi, lo = corrupted["masked"][:2000], corrupted["masked"][2000:]
    differ = (t1 != t2).unsqueeze(-1)
    assert not (lo & ~hi & differ).any(), "a position noised at t2 must be noised at t1"
    assert torch.equal(corrupted["x_t"], x0.repeat(2, 1).masked_fill(corrupted["masked"], MASK))
    specials = torch.tensor([True, False, False, False, True, True])
    assert corrupted["masked"][:, specials].any() != flag  # specials are noised only without the flag


def test_coupled_absorbing_frequencies_match_the_closed_form():
    d = make("absorbing")
    torch.manual_seed(1)
    x0 = sentences()
    for t_hi, t_lo in [(6, 2), (3, 3)]:
        corrupted, _ = d.corrupt_coupled(x0, torch.full((ROWS,), t_hi), torch.full((ROWS,), t_lo))
        hi, lo = corrupted["masked"][:ROWS, 1:4].double(), corrupted["masked"][ROWS:, 1:4].double()
        p_hi, p_lo = (t_hi + 1) / T, (t_lo + 1) / T
        # nested: P(both) = P(lo) (lo implies hi); equal times: independent, P(both) = P(hi) P(lo)
        both = p_lo if t_hi != t_lo else p_hi * p_lo
        for got, want in [(hi.mean(), p_hi), (lo.mean(), p_lo), ((hi * lo).mean(), both)]:
            assert float(got) == pytest.approx(want, abs=0.01)


def noise_over_states(d):
    noise = d.noise_probs().double()[STATES]
    return noise / noise.sum()


@pytest.mark.parametrize("kind", ["multinomial", "reparam-multinomial", "unigram"])
@pytest.mark.parametrize("t_hi,t_lo", [(6, 2), (4, 3), (5, 5)])
def test_coupled_multinomial_joint_frequencies_match_the_closed_form(kind, t_hi, t_lo):
    d = build(kind)
    steps = multinomial_steps(d, noise_over_states(d))
    torch.manual_seed(2)
    x0 = sentences()
    corrupted, _ = d.corrupt_coupled(x0, torch.full((ROWS,), t_hi), torch.full((ROWS,), t_lo))
    x_hi, x_lo = corrupted["x_t"][:ROWS], corrupted["x_t"][ROWS:]
    assert torch.equal(x_hi[:, [0, 4, 5]], x0[:, [0, 4, 5]]) and torch.equal(x_lo[:, [0, 4, 5]], x0[:, [0, 4, 5]])
    for column in (1, 2, 3):
        i = STATES.index(int(x0[0, column]))
        if t_hi == t_lo:  # independent draws
            want = torch.outer(chain(steps, -1, t_lo)[i], chain(steps, -1, t_hi)[i])
        else:  # P(x_lo = a, x_hi = b | x0) = q(a | x0) q(b | a)
            want = chain(steps, -1, t_lo)[i][:, None] * chain(steps, t_lo, t_hi)
        index = torch.full((V,), -1, dtype=torch.long)
        index[STATES] = torch.arange(len(STATES))
        cells = index[x_lo[:, column]] * len(STATES) + index[x_hi[:, column]]
        assert cells.min() >= 0  # never a special
        got = torch.bincount(cells, minlength=len(STATES) ** 2).double().view(len(STATES), -1) / ROWS
        assert torch.allclose(got, want, atol=0.01), (column, got, want)


def test_coupled_loss_of_a_hand_computed_example():
    """Two copies, t = (hi, lo) = (6, 2), nested masks, weight T each, logits 0 (CE log V per masked token)."""
    x0 = torch.tensor([[BOS, 4, 5, EOS]]).repeat(2, 1)
    masked = torch.tensor([[False, True, True, False], [False, False, True, False]])
    corrupted = {"x_t": x0.masked_fill(masked, MASK), "masked": masked}
    t, weight, logits = torch.tensor([6, 2]), torch.full((2,), float(T)), torch.zeros(2, 4, V)
    for kind, reweights in [("absorbing", (1 / 7, 1 / 3)), ("reparam-absorbing", (1 - 6 / T, 1 - 2 / T))]:
        _, nll = make(kind).loss(logits, x0, corrupted, t, weight, 0.0)
        want = (T * reweights[0] * 2 * math.log(V) / 4 + T * reweights[1] * 1 * math.log(V) / 4) / 2
        assert nll.item() == pytest.approx(want, rel=1e-6), kind


@pytest.mark.parametrize("mode", ["default", "coupled", "multi-sample", "multi-step"])
def test_training_draw_shapes_times_and_weights(mode, monkeypatch):
    d = make("reparam-absorbing")
    draws = iter([torch.tensor([1, 7, 3]), torch.tensor([5, 2, 3])])
    monkeypatch.setattr(d, "sample_time", lambda b, device: (next(draws), torch.tensor([8.0, 8.0, 8.0])))
    corrupted, t, weight = training_draw(d, sentences(3), mode)
    want_t = {"default": [1, 7, 3], "coupled": [5, 7, 3, 1, 2, 3], "multi-sample": [1, 7, 3, 1, 7, 3],
              "multi-step": [1, 7, 3, 5, 2, 3]}[mode]
    assert t.tolist() == want_t
    assert weight.tolist() == [8.0] * len(want_t)
    assert corrupted["x_t"].shape == (len(want_t), 6)


def test_time_samplers_and_training_refusals():
    check_training_options("coupled", "uniform")
    check_training_options("default", "is")  # RDM's importance sampler never leaves uniform
    refusals = [
        (("default", "none"), "--time-sampler-type none"),
        (("default", "lossaware"), "--time-sampler-type must be"),
        (("twice", "uniform"), "--q-sample-mode must be"),
        (("default", "uniform", "multinomial", False), "--not-diffusing-special-sym"),
        (("coupled", "uniform", "continuous"), "--q-sample-mode coupled"),
    ]
    for args, start in refusals:
        with pytest.raises(ValueError) as info:
            check_training_options(*args)
        assert start in str(info.value) and "\n" not in str(info.value)
    check_training_options("default", "uniform", "reparam-multinomial", False)  # RDM trains it without the flag


def rdm_closed_form(d, x0_token, t):
    """RDM's q_xt_given_x0 for one position with non_special_sym_mask all ones (no flag):
    logaddexp(log x0 + log abar_t, log(1 - abar_t) + log noise), then pad/bos/eos set to -30."""
    log_x0 = torch.log(torch.nn.functional.one_hot(torch.tensor(x0_token), V).float().clamp(min=1e-30))
    log_probs = torch.logaddexp(log_x0 + d.log_cumprod_alpha[t], d.log_1_min_cumprod_alpha[t] + d.vocab_log_prob)
    log_probs[[PAD, BOS, EOS]] = -30
    return torch.softmax(log_probs.double(), -1)


@pytest.mark.parametrize("kind", ["reparam-multinomial", "unigram"])
def test_specials_without_the_flag_follow_rdms_noise_distribution(kind):
    d = build(kind, flag=False)
    torch.manual_seed(3)
    x0, t = sentences(), 3
    x_t = d.corrupt(x0, torch.full((ROWS,), t))["x_t"]
    for column in range(6):
        observed = torch.bincount(x_t[:, column], minlength=V).double() / ROWS
        want = rdm_closed_form(d, int(x0[0, column]), t)
        assert torch.allclose(observed, want, atol=0.01), (column, observed, want)
    assert not x_t[:, [0, 4, 5]].eq(torch.tensor([BOS, EOS, PAD])).any()  # every special became a token


def test_reparam_multinomial_loss_without_the_flag_counts_noised_specials():
    d = build("reparam-multinomial", flag=False)
    x0 = torch.tensor([[BOS, 5, 6, EOS]])
    x_t = torch.tensor([[4, 5, 6, MASK]])  # both specials noised (MASK is an ordinary id here), words clean
    _, nll = d.loss(torch.zeros(1, 4, V), x0, {"x_t": x_t}, torch.tensor([2]), torch.tensor([float(T)]), 0.0)
    special_ce = 30 + math.log(len(STATES) + 3 * math.exp(-30))  # target logit -30 among 4 zeros
    assert nll.item() == pytest.approx(T * (1 - 2 / T) * 2 * special_ce / 4, rel=1e-6)
    _, with_flag = build("reparam-multinomial").loss(torch.zeros(1, 4, V), x0, {"x_t": x_t}, torch.tensor([2]),
                                                     torch.tensor([float(T)]), 0.0)
    assert with_flag.item() == 0.0  # with the flag specials count as clean
