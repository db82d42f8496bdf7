"""``--task diffusion_translation``: translation with a diffusion decoder, discrete
(RDM's families) or continuous (DiffuSeq's Gaussian diffusion over embeddings).

Option names match the public RDM plugin so its checkpoints and command lines
work unchanged; ``--tp-schedule`` picks the decoder's timesteps.
"""
import logging
from dataclasses import dataclass, field
from typing import Optional

from fairseq.data import LanguagePairDataset
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask, load_langpair_dataset
from fairseq import utils

from ..diffusion import CONTINUOUS_SAMPLERS, DIFFUSION_TYPES, DecodingOptions
from ..diffusion.decoding import RATE_SOURCES, check_schedule_rates
from ..diffusion.absorbing import REWEIGHTING_TYPES
from ..diffusion.multinomial import DECODER_LOSS_TYPES, NOISE_DISTRIBUTIONS
from ..diffusion.training import Q_SAMPLE_MODES, TIME_SAMPLERS, check_training_options
from ..errors import UsageError
from ..schedules import Schedule, ScheduleSpec, decoding_differences, decoding_record
from . import criterion  # noqa: F401  (registers diffusion_loss, which the task's users name)
from .checkpoints import allow_fairseq_checkpoints, install_ema_loading
from .denormals import flushed_denormals
from .generator import DiffusionGenerator
from .model import TIMESTEP_EMBEDDINGS

logger = logging.getLogger(__name__)

allow_fairseq_checkpoints()
install_ema_loading()


@dataclass
class DiffusionTranslationConfig(TranslationConfig):
    # the process (stored with the model; RDM's names and meanings)
    diffusion_type: ChoiceEnum(DIFFUSION_TYPES) = field(default="absorbing", metadata={"help": "the diffusion process"})
    num_diffusion_timesteps: int = field(default=20, metadata={"help": "number of diffusion timesteps T (RDM's default)"})
    noise_scheduler_type: Optional[str] = field(default=None, metadata={
        "help": "noise schedule: cosine, linear, sqrt (default: cosine for multinomial as RDM, sqrt for continuous "
                "as DiffuSeq)"})
    noise_distribution: ChoiceEnum(NOISE_DISTRIBUTIONS) = field(default="uniform", metadata={
        "help": "reparam-multinomial noise"})
    not_diffusing_special_sym: bool = field(default=False, metadata={"help": "never corrupt pad/bos/eos while training"})
    reweighting_type: ChoiceEnum(REWEIGHTING_TYPES) = field(default="linear", metadata={"help": "reparam loss weighting"})
    lambda_direct_xentropy: float = field(default=-1.0, metadata={"help": "weight of an extra plain cross-entropy term"})
    decoder_loss_type: ChoiceEnum(DECODER_LOSS_TYPES) = field(default="orig", metadata={
        "help": "multinomial log p(x0|x1) form"})
    timestep_emb_type: ChoiceEnum(TIMESTEP_EMBEDDINGS) = field(default="sinusoidal", metadata={"help": "timestep embedding"})
    scale_attn_masking: bool = field(default=False, metadata={
        "help": "RDM's option; it has no effect there (its decoder is never given the mask it needs), nor here"})
    # training-time sampling (RDM's)
    q_sample_mode: ChoiceEnum(Q_SAMPLE_MODES) = field(default="default", metadata={
        "help": "x_t drawn per sentence: default (one), coupled (two nested, at t1 > t2), multi-sample (two at one "
                "t), multi-step (two independent t)"})
    time_sampler_type: ChoiceEnum(TIME_SAMPLERS) = field(default="uniform", metadata={
        "help": "training timesteps: uniform, or is (RDM's importance sampler, which never leaves uniform)"})
    # decoding (RDM's options, honoured under stock fairseq-generate)
    argmax_decoding: bool = field(default=False, metadata={"help": "take the argmax of p(x0|x_t) instead of sampling"})
    decoding_strategy: str = field(default="default", metadata={
        "help": "default, or reparam-<cond|uncond>-<deterministic|stochasticF>-<linear|cosine>"})
    load_ema_weights: bool = field(default=False, metadata={"help": "decode with the EMA weights (--store-ema)"})
    decoding_time_difference: int = field(default=0, metadata={
        "help": "default strategy: start each reverse step of size h = t - s from max(n - D, floor(1.5 h)) "
                "instead of RDM's step n (Bit Diffusion's asymmetric time interval)"})
    temperature_annealing: bool = field(default=False, metadata={
        "help": "when sampling, temperature 0.5 - 0.05 * i / (N - 1) at pass i of N (0.5 for N = 1)"})
    beam_within_length: int = field(default=1, metadata={
        "help": "candidates per length (differing by their noise); the best mean score is kept"})
    return_all_cands: bool = field(default=False, metadata={
        "help": "output every candidate of the length beam, in RDM's order, instead of the best"})
    # ours
    tp_schedule: Optional[str] = field(default=None, metadata={
        "help": "timesteps to decode at: '49,33,12,0', 'uniform:N', 'cosine:N', 'quadratic:N' or a JSON file "
                "from fairseq-tp-search (default: uniform:--iter-decode-max-iter)"})
    denoising_rate: ChoiceEnum(RATE_SOURCES) = field(default="pass-index", metadata={
        "help": "reparam strategies' denoising rate from the pass index (RDM) or the schedule's timesteps"})
    continuous_sampler: ChoiceEnum(CONTINUOUS_SAMPLERS) = field(default="ddim", metadata={
        "help": "continuous models' reverse step t -> s: ddim (Song et al.; deterministic at --ddim-eta 0) or "
                "ddpm (a sample of the posterior q(x_s | x_t, x0_hat))"})
    ddim_eta: float = field(default=0.0, metadata={
        "help": "DDIM's eta in [0, 1]: 0 deterministic, 1 the posterior's variance"})
    clamp_to_embeddings: bool = field(default=False, metadata={
        "help": "continuous models: replace the x0 estimate by its nearest embedding before every step "
                "(DiffuSeq's clamping, which its decoding applies by default)"})
    mbr_samples: int = field(default=1, metadata={
        "help": "decode this many samples per sentence and output the one with the highest mean "
                "sentence-BLEU against the others (minimum Bayes risk, as DiffuSeq reports)"})


@register_task("diffusion_translation", dataclass=DiffusionTranslationConfig)
class DiffusionTranslationTask(TranslationTask):
    cfg: DiffusionTranslationConfig

    def __init__(self, cfg, src_dict, tgt_dict):
        super().__init__(cfg, src_dict, tgt_dict)
        # Parse at the edge, before any model is loaded or any sentence decoded.
        try:
            self.schedule_spec = ScheduleSpec.parse(cfg.tp_schedule) if cfg.tp_schedule is not None else None
        except UsageError as e:
            raise UsageError(f"--tp-schedule: {e}") from None
        self.decoding_options(None)  # refuses bad decoding options before any model is loaded
        check_training_options(str(cfg.q_sample_mode), str(cfg.time_sampler_type))
        if cfg.beam_within_length < 1:
            raise UsageError(f"--beam-within-length must be at least 1, got {cfg.beam_within_length}")
        if cfg.load_alignments:
            raise UsageError("--load-alignments: diffusion_translation has no use for word alignments")
        if cfg.truncate_source:  # fairseq truncates before the <bos> this task prepends: one position too long
            raise UsageError("--truncate-source is not supported by diffusion_translation; drop or shorten the "
                             "long sources, or skip them with --skip-invalid-size-inputs-valid-test")
        if cfg.num_batch_buckets:  # fairseq 0.12 buckets with numpy.percentile(interpolation=), gone in numpy 2
            raise UsageError("--num-batch-buckets is not supported by diffusion_translation (fairseq 0.12's "
                             "bucketing calls numpy.percentile with an argument numpy 2 removed)")

    @property
    def wants_ema_weights(self) -> bool:
        return bool(self.cfg.load_ema_weights)

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        paths = utils.split_paths(self.cfg.data)
        data_path = paths[(epoch - 1) % len(paths)]
        try:
            self.datasets[split] = self._load_langpair(data_path, split, combine)
        except UnicodeDecodeError as e:  # --dataset-impl raw reads text
            raise UsageError(f"subset '{split}' in {data_path} is not UTF-8 text ({e.reason} at byte {e.start})") \
                from None

    def _load_langpair(self, data_path, split, combine):
        return load_langpair_dataset(
            data_path, split, self.cfg.source_lang, self.src_dict, self.cfg.target_lang, self.tgt_dict,
            combine=combine, dataset_impl=self.cfg.dataset_impl, upsample_primary=self.cfg.upsample_primary,
            left_pad_source=self.cfg.left_pad_source, left_pad_target=self.cfg.left_pad_target,
            max_source_positions=self.cfg.max_source_positions, max_target_positions=self.cfg.max_target_positions,
            prepend_bos=True,  # the target is <bos> words <eos>, as RDM trains it
            pad_to_multiple=self.cfg.required_seq_len_multiple,
            # shuffle stays load_langpair_dataset's default (every split), as RDM's task loads it: the same
            # batches as RDM's generator for the same --seed
        )

    def get_batch_iterator(self, dataset, **kwargs):
        # fairseq 0.12 drops a last batch whose size is not a multiple of
        # --required-batch-size-multiple (default 8).  Harmless in training,
        # but fairseq-generate would silently skip up to 7 sentences.
        if dataset is not self.datasets.get(self.cfg.train_subset):
            kwargs["required_batch_size_multiple"] = 1
            if kwargs.get("max_positions") is not None and not kwargs.get("ignore_invalid_inputs", False):
                check_sizes(dataset, kwargs["max_positions"])
        return super().get_batch_iterator(dataset, **kwargs)

    def train_step(self, sample, model, *args, **kwargs):
        if next(model.parameters()).device.type != "cpu":
            return super().train_step(sample, model, *args, **kwargs)
        with flushed_denormals():
            return super().train_step(sample, model, *args, **kwargs)

    def build_dataset_for_inference(self, src_tokens, src_lengths, constraints=None):
        if constraints is not None:
            raise NotImplementedError("constrained decoding is not supported by diffusion_translation")
        return LanguagePairDataset(src_tokens, src_lengths, self.source_dictionary, append_bos=True)

    def resolve_schedule(self, num_timesteps: int, max_iter: int) -> Schedule:
        try:
            if self.schedule_spec is not None:
                return self.schedule_spec.resolve(num_timesteps)
            return Schedule.uniform(max_iter, num_timesteps)
        except UsageError as e:
            raise UsageError(f"--tp-schedule: {e}" if self.schedule_spec else f"--iter-decode-max-iter: {e}") from None

    def decoding_options(self, generation_args) -> DecodingOptions:
        return DecodingOptions(self.cfg.decoding_strategy, bool(self.cfg.argmax_decoding),
                               float(getattr(generation_args, "temperature", 1.0)), str(self.cfg.denoising_rate),
                               continuous_sampler=str(self.cfg.continuous_sampler),
                               ddim_eta=float(self.cfg.ddim_eta),
                               clamp_to_embeddings=bool(self.cfg.clamp_to_embeddings),
                               mbr_samples=int(self.cfg.mbr_samples),
                               time_difference=int(self.cfg.decoding_time_difference),
                               temperature_annealing=bool(self.cfg.temperature_annealing))

    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, **unused):
        if len(models) > 1:
            raise UsageError("diffusion_translation decodes one model at a time (no ensembles)")
        if getattr(args, "iter_decode_with_external_reranker", False):
            raise UsageError("--iter-decode-with-external-reranker needs an autoregressive reranker as a second "
                             "--path model, and diffusion_translation decodes one model: not supported")
        diffusion = getattr(models[0], "diffusion", None)
        if diffusion is None:
            arch = getattr(getattr(models[0], "cfg", None), "_name", None) or type(models[0]).__name__
            raise UsageError(f"--path is not a diffusion model (architecture '{arch}'): --task diffusion_translation "
                             f"decodes diffusion_transformer checkpoints")
        schedule = self.resolve_schedule(diffusion.num_timesteps, getattr(args, "iter_decode_max_iter", 10))
        options = self.decoding_options(args)
        # RDM's adaptive decoding: only for --iter-decode-max-iter (a --tp-schedule runs every step).
        adaptive = self.schedule_spec is None and not getattr(args, "iter_decode_force_max_iter", False)
        if adaptive and diffusion.continuous:
            logger.warning("continuous models run every step (RDM's adaptive early stop is for its discrete "
                           "families); --iter-decode-force-max-iter is implied")
            adaptive = False
        if self.schedule_spec is not None and self.schedule_spec.is_file:
            warn_if_decoding_differs(self.schedule_spec, options, getattr(args, "iter_decode_with_beam", 1),
                                     self.cfg.load_ema_weights, int(self.cfg.beam_within_length))
        passes = (f"RDM's adaptive decoding: at most {schedule.steps} passes, each sentence stopping after as "
                  f"many as it has words" if adaptive else f"{schedule.steps} passes at timesteps {schedule}")
        logger.info(f"diffusion decoding: {passes} of T = {diffusion.num_timesteps}; {options}")
        return self.build_diffusion_generator(models[0], schedule, options,
                                              beam_size=getattr(args, "iter_decode_with_beam", 1),
                                              retain_history=getattr(args, "retain_iter_history", False),
                                              adaptive=adaptive)

    def build_diffusion_generator(self, model, schedule: Schedule, options: DecodingOptions, beam_size: int = 1,
                                  retain_history: bool = False, adaptive: bool = False) -> DiffusionGenerator:
        """The generator for ``model``, refusing options its diffusion family cannot honour;
        ``--beam-within-length`` and ``--return-all-cands`` come from the task's options."""
        model.diffusion.check_decoding(options)
        if schedule.rates is not None:
            check_schedule_rates(options, model.diffusion.continuous)
        return DiffusionGenerator(self.target_dictionary, schedule, options, beam_size, retain_history,
                                  beam_within_length=int(self.cfg.beam_within_length),
                                  return_all_cands=bool(self.cfg.return_all_cands), adaptive=adaptive)


def check_sizes(dataset, max_positions) -> None:
    """One line for the first sentence longer than the model's positions (stock fairseq raises an exception
    from inside its batching), before anything is decoded."""
    import numpy as np
    _, too_long = dataset.filter_indices_by_size(np.arange(len(dataset), dtype=np.int64), max_positions)
    if len(too_long):
        first = int(too_long[0])
        raise UsageError(f"sentence {first} has {int(dataset.src_sizes[first])} source and "
                         f"{int(dataset.tgt_sizes[first]) if dataset.tgt_sizes is not None else 0} target tokens, "
                         f"more than the model's positions {tuple(max_positions)} "
                         f"(--skip-invalid-size-inputs-valid-test leaves such sentences out)")


def warn_if_decoding_differs(spec: ScheduleSpec, options: DecodingOptions, beam: int, ema: bool,
                             within_length: int) -> None:
    recorded = spec.extra.get("decoding")
    if not isinstance(recorded, dict):
        return
    differing = decoding_differences(recorded, decoding_record(options, beam, ema, within_length))
    if differing:
        logger.warning(f"schedule {spec.text} was searched with other decoding options: {'; '.join(differing)}")
