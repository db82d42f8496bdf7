"""The continuous (DiffuSeq) process against closed forms, Monte Carlo and hand-computed numbers."""
import math

import numpy as np
import pytest
import torch

from fairseq_tp.diffusion import DecodeState, DecodingOptions, RandomSource, X0Prediction, build_diffusion
from fairseq_tp.schedules import Schedule

BOS, PAD, EOS, UNK, WORD = 0, 1, 2, 3, 4


def make(T, dim=2, vocab=5):
    return build_diffusion("continuous", T, vocab, pad=PAD, bos=BOS, eos=EOS, mask=UNK, embed_dim=dim)


def diffuseq_alphas_cumprod(T):
    """DiffuSeq's get_named_beta_schedule('sqrt', T) -> alphas_cumprod, written out from its source."""
    abar = lambda u: 1 - np.sqrt(u + 0.0001)  # noqa: E731
    betas = np.array([min(1 - abar((i + 1) / T) / abar(i / T), 0.999) for i in range(T)])
    return np.cumprod(1.0 - betas)


def tensor(*values):
    return torch.tensor(values, dtype=torch.float64)


@pytest.mark.parametrize("T", [8, 50, 2000])
def test_schedule_is_diffuseqs_sqrt(T):
    got = make(T).alpha_bar(torch.arange(-1, T)).numpy()
    assert got[0] == 1.0
    np.testing.assert_allclose(got[1:], diffuseq_alphas_cumprod(T), rtol=1e-10, atol=1e-15)


def test_forward_marginal_closed_form_and_monte_carlo():
    torch.manual_seed(0)
    T, d = 8, make(8, dim=1)
    abar = diffuseq_alphas_cumprod(T)
    betas = 1 - abar / np.append(1.0, abar[:-1])
    x0 = torch.full((200_000, 1, 1), 1.5, dtype=torch.float64)
    x = x0
    for t in range(T):  # one step at a time: x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) z
        x = math.sqrt(1 - betas[t]) * x + math.sqrt(betas[t]) * torch.randn_like(x)
        mean, std = d.marginal(x0[:1], torch.tensor([t]))
        assert mean.item() == pytest.approx(1.5 * math.sqrt(abar[t]), rel=1e-12)
        assert std.item() == pytest.approx(math.sqrt(1 - abar[t]), rel=1e-12)
        assert x.mean().item() == pytest.approx(mean.item(), abs=0.01)
        assert x.std().item() == pytest.approx(std.item(), abs=0.01)


@pytest.mark.parametrize("t,s", [(7, 3), (5, 4), (3, 0), (7, 0)])
def test_jump_posterior_is_the_regression_of_x_s_on_x_t(t, s):
    # Draw x_s ~ q(x_s | x0), then x_t from x_s by single steps; for fixed x0, E[x_s | x_t] is
    # linear in x_t and the residual variance is the posterior's.
    torch.manual_seed(1)
    T, d, n = 8, make(8, dim=1), 400_000
    abar = diffuseq_alphas_cumprod(T)
    x0 = 0.8
    x_s = math.sqrt(abar[s]) * x0 + math.sqrt(1 - abar[s]) * torch.randn(n, dtype=torch.float64)
    x_t = x_s.clone()
    for k in range(s + 1, t + 1):
        alpha = abar[k] / abar[k - 1]
        x_t = math.sqrt(alpha) * x_t + math.sqrt(1 - alpha) * torch.randn_like(x_t)
    slope = torch.cov(torch.stack([x_s, x_t]))[0, 1] / x_t.var()
    intercept = x_s.mean() - slope * x_t.mean()
    residual = (x_s - intercept - slope * x_t).var()
    # The closed form, read as mean = coef_x0 * x0 + coef_xt * x_t:
    zero, one = torch.zeros(1, 1, 1, dtype=torch.float64), torch.ones(1, 1, 1, dtype=torch.float64)
    tt, ss = torch.tensor([t]), torch.tensor([s])
    coef_xt = (d.posterior(zero, one, tt, ss)[0]).item()
    coef_x0_times_x0 = d.posterior(x0 * one, zero, tt, ss)[0].item()
    variance = d.posterior(zero, zero, tt, ss)[1].item()
    assert slope.item() == pytest.approx(coef_xt, abs=0.01)
    assert intercept.item() == pytest.approx(coef_x0_times_x0, abs=0.01)
    assert residual.item() == pytest.approx(variance, rel=0.02)


@pytest.mark.parametrize("t,s", [(6, 2), (1, 0), (7, 6)])
def test_jump_posterior_is_bayes_on_a_grid(t, s):
    # q(x_s | x_t, x0) ∝ N(x_s; sqrt(abar_s) x0, 1 - abar_s) N(x_t; sqrt(abar_t / abar_s) x_s, 1 - abar_t / abar_s)
    abar = diffuseq_alphas_cumprod(8)
    x0, xt = -0.7, 0.4
    a_s, jump = abar[s], abar[t] / abar[s]
    grid = np.linspace(-6, 6, 400_001)
    log_p = -(grid - math.sqrt(a_s) * x0) ** 2 / (2 * (1 - a_s)) - (xt - math.sqrt(jump) * grid) ** 2 / (2 * (1 - jump))
    p = np.exp(log_p - log_p.max())
    p /= p.sum()
    mean = (p * grid).sum()
    var = (p * (grid - mean) ** 2).sum()
    got_mean, got_var = make(8, dim=1).posterior(tensor(x0).view(1, 1, 1), tensor(xt).view(1, 1, 1),
                                                  torch.tensor([t]), torch.tensor([s]))
    assert got_mean.item() == pytest.approx(mean, abs=1e-6)
    assert got_var.item() == pytest.approx(var, rel=1e-4)


def test_one_step_posterior_is_diffuseqs_and_s_minus_one_is_x0():
    abar = diffuseq_alphas_cumprod(8)
    d, x0, xt = make(8, dim=1), tensor(0.3).view(1, 1, 1), tensor(-1.1).view(1, 1, 1)
    for t in range(1, 8):
        prev, beta = abar[t - 1], 1 - abar[t] / abar[t - 1]
        mean, var = d.posterior(x0, xt, torch.tensor([t]), torch.tensor([t - 1]))
        expected = (beta * math.sqrt(prev) / (1 - abar[t]) * 0.3
                    + (1 - prev) * math.sqrt(1 - beta) / (1 - abar[t]) * -1.1)
        assert mean.item() == pytest.approx(expected, rel=1e-9)
        assert var.item() == pytest.approx(beta * (1 - prev) / (1 - abar[t]), rel=1e-9)
    mean, var = d.posterior(x0, xt, torch.tensor([5]), torch.tensor([-1]))
    assert mean.item() == pytest.approx(0.3, abs=1e-12) and var.item() == pytest.approx(0.0, abs=1e-12)


def test_ddim_with_eta_zero_recovers_x0_when_the_estimate_is_exact():
    torch.manual_seed(2)
    d = make(2000, dim=3)
    x0 = torch.randn(4, 5, 3, dtype=torch.float64)
    eps = torch.randn_like(x0)
    schedule = Schedule((1999, 1200, 400, 0), 2000)
    x = d.marginal(x0, torch.full((4,), 1999))[0] + d.marginal(x0, torch.full((4,), 1999))[1] * eps
    for t, s in zip(schedule.timesteps, schedule.targets()):
        x = d.ddim_step(x0, x, torch.full((4,), t), torch.full((4,), s), eta=0.0)
        if s >= 0:  # stays on the deterministic path of the same eps
            mean, std = d.marginal(x0, torch.full((4,), s))
            assert torch.allclose(x, mean + std * eps, atol=1e-10)
    assert torch.allclose(x, x0, atol=1e-12)


def test_ddim_with_eta_one_has_the_posteriors_mean_and_variance():
    d, t, s = make(50, dim=1), torch.tensor([40]), torch.tensor([10])
    x0, xt = tensor(0.5).view(1, 1, 1), tensor(1.3).view(1, 1, 1)
    mean, var = d.posterior(x0, xt, t, s)
    assert d.ddim_step(x0, xt, t, s, eta=1.0).item() == pytest.approx(mean.item(), rel=1e-9)
    unit = torch.ones(1, 1, 1, dtype=torch.float64)
    sigma = d.ddim_step(x0, xt, t, s, eta=1.0, noise=unit) - d.ddim_step(x0, xt, t, s, eta=1.0)
    assert sigma.item() ** 2 == pytest.approx(var.item(), rel=1e-9)


# A hand-made embedding table: rows bos, pad, eos, unk, word.
E = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])


def test_loss_terms_on_a_hand_computed_example():
    T = 2
    d = make(T)
    # sqrt schedule at T = 2 by hand: f(u) = 1 - sqrt(u + 1e-4) on u = 0, 1/2, 1; the last ratio
    # is negative and clipped to 1 - 0.999.
    f0, f1 = 1 - math.sqrt(1e-4), 1 - math.sqrt(0.5 + 1e-4)
    abar_last = (f1 / f0) * 0.001
    tokens = torch.tensor([[BOS, WORD, EOS], [BOS, EOS, PAD]])
    embedded = E[tokens]
    x_start = embedded + torch.tensor([[[0, 0], [0.1, 0], [0, 0]], [[0, 0.2], [0, 0], [5, 5]]])
    x0_hat = torch.tensor([[[1, 0], [0, -0.5], [0, 1]], [[0.5, 0], [0, 1], [9, 9]]])
    corrupted = {"x_start": x_start, "embedded": embedded, "positions": tokens.ne(PAD)}
    t = torch.tensor([1, 0])  # sentence 2 at t = 0: its mse target is the embedding itself
    loss, nll = d.loss(X0Prediction(x0_hat, E), tokens, corrupted, t, torch.ones(2), 0.0)

    def ce(x, token):  # logits x . E without pad: [a, -, b, -a, -b]
        a, b = x
        logits = {BOS: a, EOS: b, UNK: -a, WORD: -b}
        return -(logits[token] - math.log(sum(math.exp(v) for v in logits.values())))

    # sentence 1 (t = 1): target x_start; 3 positions, 2 dims
    mse1 = ((0 - 0.1) ** 2 + (-0.5 + 1) ** 2) / 2 / 3
    tT1 = abar_last * (1 + (0.1 ** 2 + 1) + 1) / 2 / 3
    round1 = (ce((1, 0), BOS) + ce((0.1, -1), WORD) + ce((0, 1), EOS)) / 3
    nll1 = (ce((1, 0), BOS) + ce((0, -0.5), WORD) + ce((0, 1), EOS)) / 3
    # sentence 2 (t = 0): target E[tokens]; the pad position counts nowhere
    mse2 = ((0.5 - 1) ** 2 + (1 - 1) ** 2) / 2 / 2
    tT2 = abar_last * ((1 + 0.04) + 1) / 2 / 2
    round2 = (ce((1, 0.2), BOS) + ce((0, 1), EOS)) / 2
    nll2 = (ce((0.5, 0), BOS) + ce((0, 1), EOS)) / 2
    assert loss.item() == pytest.approx(((mse1 + tT1 + round1) + (mse2 + tT2 + round2)) / 2, rel=1e-6)
    assert nll.item() == pytest.approx((nll1 + nll2) / 2, rel=1e-6)


def test_time_is_uniform_with_unit_weight():
    t, weight = make(2000).sample_time(5000, "cpu")
    assert t.min() >= 0 and t.max() <= 1999 and torch.equal(weight, torch.ones(5000))
    assert abs(t.float().mean().item() - 999.5) < 30


def test_last_step_outputs_the_rounded_estimate_in_a_frame_and_clamping_snaps_to_embeddings():
    d = make(50)
    tokens = torch.tensor([[BOS, UNK, UNK, EOS], [BOS, UNK, EOS, PAD]])
    state = DecodeState(tokens, torch.zeros(2, 4), tokens.ne(PAD), torch.randn(2, 4, 2))
    x0_hat = torch.tensor([[[0, 0.9], [0.1, -2], [3, 0.2], [0.1, 0]], [[0, -1], [-0.4, -0.3], [1, 0], [7, 7]]])
    for clamp in (False, True):
        options = DecodingOptions(clamp_to_embeddings=clamp)
        out = d.reverse_step(state, X0Prediction(x0_hat, E), torch.tensor([4, 4]), torch.tensor([-1, -1]),
                             None, options, RandomSource())
        # words round to their argmax logit (never pad); the ends are bos/eos of the length
        assert out.tokens.tolist() == [[BOS, WORD, BOS, EOS], [BOS, UNK, EOS, PAD]]
        expected = E[torch.tensor([[EOS, WORD, BOS, BOS], [WORD, UNK, BOS, BOS]])] if clamp else x0_hat
        assert torch.equal(out.x, expected * tokens.ne(PAD).unsqueeze(-1))
        if not clamp:  # log p(word | [0.1, -2]) with logits bos 0.1, eos -2, unk -0.1, word 2
            expected_score = 2 - math.log(math.exp(0.1) + math.exp(-2) + math.exp(-0.1) + math.exp(2))
            assert out.scores[0, 1].item() == pytest.approx(expected_score, abs=1e-6)


def test_initial_state_is_unit_noise_inside_the_predicted_length():
    d = make(2000, dim=3)
    state = d.initial_state(torch.tensor([4, 3]), 4, RandomSource())
    assert state.tokens.tolist() == [[BOS, UNK, UNK, EOS], [BOS, UNK, EOS, PAD]]
    assert state.x.shape == (2, 4, 3) and torch.equal(state.x[1, 3], torch.zeros(3))


def test_grouped_gaussian_noise_does_not_depend_on_the_other_groups():
    seeded = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    together = RandomSource([seeded(), torch.Generator().manual_seed(9)]).normal((6, 3, 2), "cpu")
    alone = RandomSource([seeded()]).normal((3, 3, 2), "cpu")
    assert torch.equal(together[:3], alone)


@pytest.mark.parametrize("N", [1, 2, 4, 5, 8, 10, 16, 20, 50, 100, 250, 400, 1000])
def test_uniform_spacing_is_diffuseqs_decoding_stride(N):
    # DiffuSeq's sample_seq2seq.py with --step N < T visits range(T)[::-1][::T // N] (it never passes
    # a timestep_respacing, so improved-diffusion's space_timesteps is not what it decodes with).
    T = 2000
    assert Schedule.uniform(N, T).timesteps == tuple(list(range(T))[::-1][::T // N])


def test_bad_continuous_option_values():
    for kwargs, message in [({"continuous_sampler": "euler"}, "--continuous-sampler must be one of ddim, ddpm"),
                            ({"ddim_eta": 1.5}, r"--ddim-eta must be in \[0, 1\]"),
                            ({"mbr_samples": 0}, "--mbr-samples must be a positive integer")]:
        with pytest.raises(ValueError, match=message):
            DecodingOptions(**kwargs)
    with pytest.raises(ValueError, match="is for discrete diffusion"):
        make(50).check_decoding(DecodingOptions("reparam-cond-deterministic-linear"))
    absorbing = build_diffusion("absorbing", 50, 5, pad=PAD, bos=BOS, eos=EOS, mask=UNK)
    with pytest.raises(ValueError, match="apply only to --diffusion-type continuous"):
        absorbing.check_decoding(DecodingOptions(continuous_sampler="ddpm"))
    absorbing.check_decoding(DecodingOptions(mbr_samples=3))  # MBR works for any family
