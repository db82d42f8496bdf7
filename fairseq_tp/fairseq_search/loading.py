"""Loading a diffusion checkpoint, its data and fairseq-generate's text post-processing for the search."""
import ast
import hashlib
import os
from dataclasses import dataclass
from typing import Any

import torch
from fairseq import checkpoint_utils, tasks

from ..errors import UsageError
from ..fairseq_glue.generator import DiffusionGenerator
from ..schedules import Schedule
from .objective import FewShotBleu


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_diffusion_model(cfg, task, use_cuda: bool):
    path = cfg.common_eval.path
    if not path:
        raise UsageError("--path: give the checkpoint to search a schedule for")
    if os.pathsep in path:
        raise UsageError("--path: fairseq-tp-search tunes one checkpoint at a time (no ensembles)")
    if not os.path.isfile(path):
        raise UsageError(f"--path: checkpoint {path} does not exist")
    try:
        models, saved_cfg = checkpoint_utils.load_model_ensemble(
            [path], arg_overrides=ast.literal_eval(cfg.common_eval.model_overrides), task=task,
            suffix=cfg.checkpoint.checkpoint_suffix)
    except UsageError:  # the checkpoint's own options, checked when the model is built
        raise
    except Exception as e:  # torch, pickle and fairseq all raise their own kinds
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise UsageError(f"--path: cannot load checkpoint {path}: {type(e).__name__}: {first_line}") from None
    model = models[0]
    if getattr(model, "diffusion", None) is None:
        arch = getattr(getattr(saved_cfg, "model", None), "_name", None) or "unknown"
        raise UsageError(f"--path: {path} is not a diffusion model (architecture '{arch}'); "
                         f"fairseq-tp-search needs a checkpoint trained with --task diffusion_translation")
    if cfg.common.fp16:
        model.half()
    if use_cuda:
        model.cuda()
    model.prepare_for_inference_(cfg)
    model.eval()
    return model, saved_cfg


@dataclass
class LoadedModel:
    """A diffusion checkpoint loaded for decoding with fairseq-generate's options."""

    cfg: Any
    task: Any
    model: Any
    saved_cfg: Any
    use_cuda: bool
    generator: DiffusionGenerator

    def subset(self, name: str, flag: str):
        """A split of the data, loaded as the checkpoint was trained; ``flag`` names the option in errors."""
        try:
            self.task.load_dataset(name, task_cfg=self.saved_cfg.task)
        except FileNotFoundError as e:
            raise UsageError(f"{flag}: {e}") from None
        return self.task.dataset(name)

    def objective(self, dataset, sentence_ids, bleu, *, seed: int, schedules_per_batch: int,
                  replicates: int = 1, **options) -> FewShotBleu:
        """``options``: FewShotBleu's ``shard`` and ``keep_sentence_statistics``."""
        cfg = self.cfg
        return FewShotBleu(self.model, self.generator, dataset, sentence_ids, bleu, seed=seed,
                           max_tokens=cfg.dataset.max_tokens, batch_size=cfg.dataset.batch_size,
                           schedules_per_batch=schedules_per_batch, replicates=replicates,
                           post_process=cfg.common_eval.post_process,
                           decode_fn=text_post_processing(cfg, self.task), use_cuda=self.use_cuda, **options)


def load_for_decoding(cfg) -> LoadedModel:
    """Task, model and generator from a fairseq generation config, every option checked."""
    use_cuda = torch.cuda.is_available() and not cfg.common.cpu
    if cfg.dataset.max_tokens is None and cfg.dataset.batch_size is None:
        cfg.dataset.max_tokens = 12000  # fairseq-generate's default
    task = tasks.setup_task(cfg.task)
    model, saved_cfg = load_diffusion_model(cfg, task, use_cuda)
    # The generator's own schedule only serves generate(); the objective names its schedules.
    placeholder = Schedule.uniform(1, model.diffusion.num_timesteps)
    generator = task.build_diffusion_generator(model, placeholder, task.decoding_options(cfg.generation),
                                               beam_size=int(cfg.generation.iter_decode_with_beam))
    return LoadedModel(cfg, task, model, saved_cfg, use_cuda, generator)


def text_post_processing(cfg, task):
    """fairseq-generate's decode_fn: undo --bpe, then --tokenizer."""
    tokenizer = task.build_tokenizer(cfg.tokenizer)
    bpe = task.build_bpe(cfg.bpe)

    def decode_fn(text: str) -> str:
        if bpe is not None:
            text = bpe.decode(text)
        if tokenizer is not None:
            text = tokenizer.decode(text)
        return text

    return decode_fn
