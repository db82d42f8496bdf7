"""Every option of RDM's task, model and criterion (names and defaults copied from its source:
diffusion_mt/tasks/diffusion_translation_task.py, models/diffusion_transformer.py, criterions/diffusion_loss.py)
is accepted with RDM's name and default, or refused with one line naming it."""
import pytest
import torch

from conftest import PLUGIN_DIR, TINY_MODEL
from fairseq_tp.errors import UsageError

# RDM's DiffusionTranslationConfig fields and defaults.
RDM_TASK = {
    "timestep_emb_type": "sinusoidal", "num_diffusion_timesteps": 20, "diffusion_type": "absorbing",
    "noise_scheduler_type": "cosine", "noise_distribution": "uniform", "scale_attn_masking": False,
    "q_sample_mode": "default", "time_sampler_type": "uniform", "not_diffusing_special_sym": False,
    "reweighting_type": "linear", "lambda_direct_xentropy": -1.0, "decoder_loss_type": "orig",
    "argmax_decoding": False, "decoding_time_difference": 0, "temperature_annealing": False,
    "return_all_cands": False, "decoding_strategy": "default", "beam_within_length": 1, "load_ema_weights": False,
}
# RDM's DiffusionTransformerModel.add_args (length_loss_factor: no default there, the architecture sets 0.1).
RDM_MODEL = {
    "encoder_concat_pe": True, "decoder_concat_pe": True, "decoder_use_rpe": False, "decoder_rpe_num_buckets": 64,
    "encoder_use_rpe": False, "encoder_rpe_num_buckets": 64, "src_embedding_copy": False,
    "pred_length_offset": False, "sg_length_pred": False, "length_loss_factor": 0.1,
}
RDM_CRITERION = {"label_smoothing": 0.0}
# Where our default differs in spelling only: None resolves to cosine for every RDM family.
SAME_MEANING = {"noise_scheduler_type": None}

# Training options, each against the flags it is added to: (base, option, whether the first batch's loss or
# gradients change).  An option accepted and ignored would leave both as they are; where RDM itself shows no
# change on a first batch, equality is the check.  (--sg-length-pred needs --apply-bert-init: fairseq's
# Embedding(..., None) zeroes the length embedding, so no length gradient reaches the encoder at first.)
TRAINING = [
    ([], ["--q-sample-mode", "coupled"], True), ([], ["--q-sample-mode", "multi-step"], True),
    ([], ["--q-sample-mode", "multi-sample"], True),
    ([], ["--timestep-emb-type", "learnable"], True), ([], ["--not-diffusing-special-sym"], True),
    ([], ["--lambda-direct-xentropy", "0.5"], True), ([], ["--label-smoothing", "0.1"], True),
    ([], ["--pred-length-offset"], True), (["--apply-bert-init"], ["--sg-length-pred"], True), ([], ["--length-loss-factor", "0.2"], True),
    (["--diffusion-type", "reparam-absorbing", "--q-sample-mode", "coupled"], ["--reweighting-type", "reciprocal"], True),
    # the loss types differ only at t = 0: T = 2 draws it
    (["--diffusion-type", "multinomial", "--not-diffusing-special-sym", "--num-diffusion-timesteps", "2"],
     ["--decoder-loss-type", "simple"], True),
    (["--diffusion-type", "multinomial", "--not-diffusing-special-sym"], ["--noise-scheduler-type", "linear"], True),
    (["--diffusion-type", "reparam-multinomial"], ["--noise-distribution", "unigram"], True),
    # RDM's importance sampler draws uniformly until every timestep has a loss history (test_rdm_training).
    ([], ["--time-sampler-type", "is"], False),
    ([], ["--encoder-concat-pe", "--decoder-concat-pe"], False),  # RDM's defaults
    ([], ["--scale-attn-masking"], False),  # a no-op in RDM too (its decoder never gets the mask); we warn
    # RDM reads the bucket counts only with relative positions, which are refused below.
    ([], ["--encoder-rpe-num-buckets", "32", "--decoder-rpe-num-buckets", "16"], False),
]
# Decoding options: where each lands in the generator (their effects: test_rdm_decoding, test_rdm_fixture_options;
# --load-ema-weights: test_end_to_end).
DECODING = {
    "--decoding-time-difference 2": lambda g: g.options.time_difference == 2,
    "--temperature-annealing": lambda g: g.options.temperature_annealing is True,
    "--beam-within-length 3": lambda g: g.beam_within_length == 3,
    "--return-all-cands": lambda g: g.return_all_cands is True,
    "--argmax-decoding --decoding-strategy reparam-cond-deterministic-cosine":
        lambda g: g.options.argmax is True and g.options.strategy == "reparam-cond-deterministic-cosine",
}
REFUSED = [
    (["--time-sampler-type", "none"], "--time-sampler-type none"),
    (["--encoder-use-rpe"], "--encoder-use-rpe"),
    (["--decoder-use-rpe"], "--decoder-use-rpe"),
    (["--src-embedding-copy"], "--src-embedding-copy"),
    (["--diffusion-type", "multinomial"], "--diffusion-type multinomial needs --not-diffusing-special-sym"),
    # fairseq translation options RDM's task ignored
    (["--load-alignments"], "--load-alignments"),
    (["--truncate-source"], "--truncate-source"),
    (["--num-batch-buckets", "2"], "--num-batch-buckets"),
]
# fairseq-generate options RDM's generator reads, refused when they cannot be honoured.
REFUSED_WHEN_DECODING = [
    (["--iter-decode-with-external-reranker"], "--iter-decode-with-external-reranker"),
    (["--decoding-time-difference", "2", "--decoding-strategy", "reparam-uncond-deterministic-cosine"],
     "--decoding-time-difference applies"),
    (["--temperature-annealing", "--argmax-decoding"], "--temperature-annealing"),
]


def parse(toy_data, flags, kind="train"):
    from fairseq import options
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    import fairseq_tp
    fairseq_tp.register()
    base = [str(toy_data / "bin"), "--user-dir", PLUGIN_DIR, "--task", "diffusion_translation", "--cpu"]
    if kind == "train":
        parser = options.get_training_parser()
        base += ["--criterion", "diffusion_loss", *TINY_MODEL]
    else:
        parser = options.get_generation_parser()
    args = options.parse_args_and_arch(parser, input_args=base + flags)
    return args, convert_namespace_to_omegaconf(args)


def build(toy_data, flags):
    """What fairseq-train builds before the first batch: task, model, criterion."""
    from fairseq import tasks
    args, cfg = parse(toy_data, flags)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    return args, task, model, task.build_criterion(cfg.criterion)


def test_rdm_defaults(toy_data):
    args, _ = parse(toy_data, [])
    for name, default in {**RDM_TASK, **RDM_MODEL, **RDM_CRITERION}.items():
        assert getattr(args, name) == SAME_MEANING.get(name, default), name


def test_default_noise_schedule_is_rdms_cosine(toy_data):
    flags = ["--diffusion-type", "multinomial", "--not-diffusing-special-sym"]
    default = build(toy_data, flags)[2].diffusion
    cosine = build(toy_data, flags + ["--noise-scheduler-type", "cosine"])[2].diffusion
    assert torch.equal(default.log_cumprod_alpha, cosine.log_cumprod_alpha)


def reaches_the_namespace(args, flags):
    for i, flag in enumerate(flags):
        if flag.startswith("--"):
            given = flags[i + 1] if i + 1 < len(flags) and not flags[i + 1].startswith("--") else True
            got = getattr(args, flag[2:].replace("-", "_"))
            assert (got is True) if given is True else str(got) == given, (flag, got)


def first_batch(toy_data, flags):
    """The loss and gradients of one training batch, from the same seed for model and noise."""
    torch.manual_seed(1)
    args, task, model, criterion = build(toy_data, flags)
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    sample = dataset.collater([dataset[i] for i in range(4)])
    torch.manual_seed(2)
    loss, _, _ = criterion(model.train(), sample)
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return args, loss.detach(), grads


def same_batch(a, b):
    return torch.equal(a[1], b[1]) and a[2].shape == b[2].shape and torch.equal(a[2], b[2])


_baselines = {}


def reproducible_baseline(toy_data, base):
    if tuple(base) not in _baselines:
        baseline = first_batch(toy_data, base)
        assert same_batch(baseline, first_batch(toy_data, base)), "not reproducible: a difference would mean nothing"
        _baselines[tuple(base)] = baseline
    return _baselines[tuple(base)]


@pytest.mark.parametrize("base,option,changes", TRAINING, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_training_option_reaches_the_first_batch(base, option, changes, toy_data):
    baseline = reproducible_baseline(toy_data, base)
    with_option = first_batch(toy_data, base + option)
    reaches_the_namespace(with_option[0], option)
    assert torch.isfinite(with_option[1])
    assert same_batch(baseline, with_option) != changes


@pytest.mark.parametrize("flags", sorted(DECODING))
def test_decoding_option_reaches_the_generator(flags, toy_data):
    from fairseq import tasks
    _, _, model, _ = build(toy_data, [])
    args, cfg = parse(toy_data, flags.split(), kind="generate")
    reaches_the_namespace(args, flags.split())
    generator = tasks.setup_task(cfg.task).build_generator([model.eval()], cfg.generation)
    assert DECODING[flags](generator)


@pytest.mark.parametrize("flags,start", REFUSED, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_refused_in_one_line_before_training(flags, start, toy_data):
    with pytest.raises(UsageError) as info:
        build(toy_data, flags)
    assert info.value.message.startswith(start) and "\n" not in info.value.message


@pytest.mark.parametrize("flags,start", REFUSED_WHEN_DECODING, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_refused_in_one_line_before_decoding(flags, start, toy_data):
    from fairseq import tasks
    _, _, model, _ = build(toy_data, [])
    args, cfg = parse(toy_data, flags, kind="generate")
    with pytest.raises(UsageError) as info:  # by the task (option values) or its generator (the model's family)
        tasks.setup_task(cfg.task).build_generator([model.eval()], cfg.generation)
    assert info.value.message.startswith(start) and "\n" not in info.value.message


def test_required_seq_len_multiple_pads_the_batches(toy_data):
    """fairseq's --required-seq-len-multiple, which RDM's task dropped."""
    _, task, _, _ = build(toy_data, ["--required-seq-len-multiple", "8"])
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    batch = dataset.collater([dataset[i] for i in range(6)])
    assert batch["net_input"]["src_tokens"].size(1) % 8 == 0 and batch["target"].size(1) % 8 == 0
