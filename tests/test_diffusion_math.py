"""The pure-torch processes against brute-force computation on a tiny vocabulary."""
import math

import pytest
import torch

from fairseq_tp.diffusion import DecodeState, DecodingOptions, RandomSource, ReparamStrategy, build_diffusion
from fairseq_tp.diffusion.decoding import reparam_route
from fairseq_tp.diffusion.multinomial import one_hot_log

BOS, PAD, EOS, MASK = 0, 1, 2, 3
V, T = 7, 8
STATES = [3, 4, 5, 6]  # the non-special ids (RDM counts unk among them)


def make(kind):
    return build_diffusion(kind, T, V, pad=PAD, bos=BOS, eos=EOS, mask=MASK, not_diffusing_special_sym=True)


def chain(step_matrices, s, t):
    """Product of per-step transition matrices for steps s+1..t (s = -1: from x0)."""
    out = torch.eye(step_matrices[0].size(0), dtype=torch.float64)
    for k in range(s + 1, t + 1):
        out = out @ step_matrices[k]
    return out


def absorbing_steps():
    mats = []
    for t in range(T):
        beta = 1.0 / (T - t)  # keeps P(masked at t) = (t+1)/T
        q = torch.eye(V, dtype=torch.float64) * (1 - beta)
        q[:, MASK] += beta
        q[MASK] = 0
        q[MASK, MASK] = 1
        mats.append(q)
    return mats


def multinomial_steps(diffusion, noise):
    alphas = diffusion.log_alpha.double().exp()
    return [alphas[t] * torch.eye(len(STATES), dtype=torch.float64) + (1 - alphas[t]) * noise.expand(len(STATES), -1)
            for t in range(T)]


@pytest.mark.parametrize("kind", ["absorbing", "reparam-absorbing"])
def test_absorbing_marginal_and_jump_posterior(kind):
    d, steps = make(kind), absorbing_steps()
    for t in range(T):
        brute = chain(steps, -1, t)[5]
        p_masked = d.mask_probability(torch.tensor([t])).item()  # what corrupt() draws with
        assert (brute[MASK].item(), brute[5].item()) == (pytest.approx(p_masked), pytest.approx(1 - p_masked))
        for s in range(-1, t):
            # Bayes: q(x_s = x0 | x_t = mask, x0) = q(mask | x0 at s) ... over q(mask | x0)
            p_clean_s = chain(steps, -1, s)[5, 5] if s >= 0 else 1.0
            bayes = p_clean_s * chain(steps, s, t)[5, MASK] / brute[MASK]
            assert d.unmask_probability(torch.tensor([t]), torch.tensor([s])).item() == pytest.approx(float(bayes))


@pytest.mark.parametrize("kind", ["multinomial", "reparam-multinomial"])
def test_multinomial_marginal_matches_product_of_steps(kind):
    d = make(kind)
    noise = d.noise_log_prob.double().exp()[STATES]
    noise = noise / noise.sum()
    steps = multinomial_steps(d, noise)
    for t in range(T):
        for i, x0 in enumerate(STATES):
            got = d.marginal(one_hot_log(torch.tensor([[x0]]), V), torch.tensor([t]), torch.tensor([[True]]))[0, 0]
            assert torch.allclose(got.exp().double()[STATES], chain(steps, -1, t)[i], atol=1e-5)
            assert got[[BOS, PAD, EOS]].max() <= -29


@pytest.mark.parametrize("kind", ["multinomial", "reparam-multinomial", "unigram"])
def test_multinomial_corrupt_samples_the_marginal(kind):
    if kind == "unigram":
        d = build_diffusion("reparam-multinomial", T, V, pad=PAD, bos=BOS, eos=EOS, mask=MASK,
                            noise_distribution="unigram", vocab_count=[0, 0, 0, 5, 1, 3, 9],
                            not_diffusing_special_sym=True)
    else:
        d = make(kind)
    torch.manual_seed(0)
    rows, t = 40000, 3
    x0 = torch.tensor([[BOS, 4, 6, EOS]]).expand(rows, -1)
    x_t = d.corrupt(x0, torch.full((rows,), t))["x_t"]
    assert x_t[:, [0, 3]].tolist() == [[BOS, EOS]] * rows  # specials are never noised
    for column, token in [(1, 4), (2, 6)]:
        expected = d.marginal(one_hot_log(torch.tensor([[token]]), V), torch.tensor([t]), torch.tensor([[True]]))
        expected = expected[0, 0].exp().double()
        observed = torch.bincount(x_t[:, column], minlength=V).double() / rows
        assert torch.allclose(observed, expected, atol=0.01), (observed, expected)


def test_reparam_multinomial_loss_counts_only_noisy_positions():
    d = make("reparam-multinomial")
    logits = torch.zeros(1, 4, V)
    logits[0, 1, 5] = math.log(3.0)
    x0 = torch.tensor([[BOS, 5, 6, EOS]])
    corrupted = {"x_t": torch.tensor([[BOS, 4, 6, EOS]])}  # position 1 is noise, position 2 clean
    loss, nll = d.loss(logits, x0, corrupted, torch.tensor([2]), torch.tensor([float(T)]), 0.0)
    ce = -math.log(3.0 / (len(STATES) - 1 + 3))  # pad/bos/eos logits are pushed to -30
    assert nll.item() == pytest.approx(T * (1 - 2 / T) * ce / 4, rel=1e-5)  # weight T, linear, mean of 4
    assert loss.item() == pytest.approx(nll.item())


def test_multinomial_jump_posterior_is_bayes():
    d = make("multinomial")
    steps = multinomial_steps(d, torch.full((len(STATES),), 1.0 / len(STATES), dtype=torch.float64))
    for t, s in [(7, 3), (5, 4), (3, 0), (6, -1), (0, -1)]:
        for i, x0 in enumerate(STATES):
            for j, xt in enumerate(STATES):
                prior = chain(steps, -1, s)[i] if s >= 0 else torch.eye(len(STATES), dtype=torch.float64)[i]
                bayes = prior * chain(steps, s, t)[:, j]
                bayes = bayes / bayes.sum()
                got = d.posterior(one_hot_log(torch.tensor([[x0]]), V), one_hot_log(torch.tensor([[xt]]), V),
                                  torch.tensor([t]), torch.tensor([s]), torch.tensor([[True]]))[0, 0]
                assert torch.allclose(got.exp().double()[STATES], bayes, atol=1e-4)


def posterior_given_noisy(d, log_x0, log_xt, t, s):
    """q(x_s | x_t, x0, x_t is noise) from the two pieces the reparameterised step samples with."""
    log_route = d.route_to_x0_log_prob(t, s)
    noise = torch.log_softmax(d.noise_posterior(log_xt, t, s), dim=-1)
    return torch.logaddexp(log_route + log_x0, torch.log(-torch.expm1(log_route)) + noise)


def test_reparam_multinomial_noisy_posterior_is_bayes_on_the_augmented_chain():
    d = make("reparam-multinomial")
    p = d.vocab_log_prob.double().exp()[STATES]
    alphas = d.log_alpha.double().exp()
    K = len(STATES)
    # augmented states: (x, b) flattened as b * K + x; b = 1 means "still x0"
    def step(t):
        q = torch.zeros(2 * K, 2 * K, dtype=torch.float64)
        for b in (0, 1):
            for x in range(K):
                q[b * K + x, b * K + x] += alphas[t]
                q[b * K + x, :K] += (1 - alphas[t]) * p
        return q
    steps = [step(t) for t in range(T)]
    for t, s in [(7, 2), (4, 3), (5, -1)]:
        for i, x0 in enumerate(STATES):
            for j, xt in enumerate(STATES):
                start = torch.zeros(2 * K, dtype=torch.float64)
                start[K + i] = 1
                at_s = start @ chain(steps, -1, s) if s >= 0 else start
                joint = at_s * chain(steps, s, t)[:, j]  # x_t = xt with b_t = 0
                by_x = joint[:K] + joint[K:]
                got = posterior_given_noisy(d, one_hot_log(torch.tensor([[x0]]), V), one_hot_log(torch.tensor([[xt]]), V),
                                              torch.tensor([t]), torch.tensor([s]))[0, 0]
                assert torch.allclose(got.exp().double()[STATES], by_x / by_x.sum(), atol=1e-4)


def confident_logits(target, rows):
    logits = torch.full((rows, target.size(1), V), -20.0)
    return logits.scatter(-1, target.expand(rows, -1).unsqueeze(-1), 20.0)


@pytest.mark.parametrize("kind", ["absorbing", "multinomial", "reparam-multinomial"])
def test_default_step_samples_the_jump_posterior(kind):
    torch.manual_seed(0)
    d, rows, t, s = make(kind), 20000, 6, 2
    x0 = torch.tensor([[BOS, 5, EOS]])
    xt_token = MASK if "absorbing" in kind else 4
    tokens = torch.tensor([[BOS, xt_token, EOS]]).expand(rows, -1).clone()
    state = DecodeState(tokens, torch.zeros(tokens.shape), d.non_special(tokens))
    out = d.reverse_step(state, confident_logits(x0, rows), torch.full((rows,), t), torch.full((rows,), s),
                         torch.full((rows,), 0.5, dtype=torch.float64), DecodingOptions(), RandomSource())
    freq = torch.bincount(out.tokens[:, 1], minlength=V).double() / rows
    log_x0 = one_hot_log(x0[:, 1:2], V)
    if kind == "absorbing":
        expected = torch.zeros(V, dtype=torch.float64)
        expected[5] = d.unmask_probability(torch.tensor([t]), torch.tensor([s])).item()
        expected[MASK] = 1 - expected[5]
    elif kind == "multinomial":
        expected = d.posterior(log_x0, one_hot_log(torch.tensor([[4]]), V), torch.tensor([t]), torch.tensor([s]),
                               torch.tensor([[True]]))[0, 0].exp().double()
    else:
        expected = posterior_given_noisy(d, log_x0, one_hot_log(torch.tensor([[4]]), V), torch.tensor([t]),
                                           torch.tensor([s]))[0, 0].exp().double()
    assert torch.allclose(freq, expected, atol=0.015)
    assert (out.tokens[:, 0] == BOS).all() and (out.tokens[:, 2] == EOS).all()


def test_reparam_routing_keeps_the_lowest_share_noisy():
    tokens = torch.tensor([[BOS, MASK, MASK, MASK, MASK, EOS]])
    state = DecodeState(tokens, torch.zeros(1, 6), torch.tensor([[False, True, True, True, True, False]]))
    scores = torch.tensor([[-0.1, -0.5, -3.0, -0.2, -2.0, -0.1]])
    cur = torch.tensor([[BOS, 4, 5, 6, 4, EOS]])
    noise = torch.full_like(tokens, MASK)
    strategy = ReparamStrategy.parse("reparam-uncond-deterministic-linear")
    out = reparam_route(state, scores, cur, noise, state.noisy, torch.tensor([0.5], dtype=torch.float64),
                        strategy, RandomSource())
    # 4 words, rate 0.5 -> the 2 lowest scores (positions 2 and 4) stay masked
    assert out.tokens.tolist() == [[BOS, 4, MASK, 6, MASK, EOS]]
    assert out.noisy.tolist() == [[False, False, True, False, True, False]]
    assert out.scores[0, 1].item() == pytest.approx(-0.5) and out.scores[0, 2].item() == -math.inf


def test_absorbing_loss_on_a_hand_computed_example():
    d = make("absorbing")
    logits = torch.zeros(1, 3, V)
    logits[0, 1, 5] = math.log(3.0)  # p(5) = 3 / (V - 1 + 3)
    x0 = torch.tensor([[BOS, 5, EOS]])
    corrupted = {"x_t": torch.tensor([[BOS, MASK, EOS]]), "masked": torch.tensor([[False, True, False]])}
    loss, nll = d.loss(logits, x0, corrupted, torch.tensor([1]), torch.tensor([float(T)]), 0.0)
    ce = -math.log(3.0 / (V - 1 + 3))
    assert nll.item() == pytest.approx(T * (1 / 2) * ce / 3)  # weight T, 1/(t+1), mean over 3 positions
    assert loss.item() == pytest.approx(nll.item())


@pytest.mark.parametrize("kind,expected", [("reciprocal", 1 / 3), ("linear", 1 - 2 / T), ("none", 1.0)])
def test_reparam_reweighting(kind, expected):
    d = build_diffusion("reparam-absorbing", T, V, pad=PAD, bos=BOS, eos=EOS, mask=MASK, reweighting_type=kind)
    assert d.reweighting(torch.tensor([2])).item() == pytest.approx(expected)


def test_bad_strategy_names():
    for bad in ["reparam", "reparam-x-deterministic-linear", "reparam-cond-stochasticX-linear", "greedy"]:
        with pytest.raises(ValueError, match="unknown --decoding-strategy"):
            ReparamStrategy.parse(bad)
    assert ReparamStrategy.parse("reparam-cond-stochastic0.5-cosine").noise_scale == 0.5
