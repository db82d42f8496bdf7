"""``--criterion diffusion_loss``: the diffusion process's own loss plus the length loss."""
import math
from dataclasses import dataclass, field

import torch.nn.functional as F
from fairseq import metrics, utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from ..diffusion.training import check_training_options, note_time_sampler
from ..errors import UsageError


@dataclass
class DiffusionLossConfig(FairseqDataclass):
    label_smoothing: float = field(default=0.0, metadata={"help": "epsilon for label smoothing, 0 means none"})


@register_criterion("diffusion_loss", dataclass=DiffusionLossConfig)
class DiffusionLoss(FairseqCriterion):
    def __init__(self, task, label_smoothing):
        super().__init__(task)
        if label_smoothing > 0 and str(getattr(getattr(task, "cfg", None), "diffusion_type", None)) == "continuous":
            raise UsageError("--label-smoothing applies to discrete diffusion; continuous models train "
                             "DiffuSeq's mse + rounding + tT loss")
        self.label_smoothing = label_smoothing
        # The criterion exists only in training: RDM's training-only rules are checked here,
        # before the first batch.
        cfg = getattr(task, "cfg", None)
        if cfg is not None and hasattr(cfg, "q_sample_mode"):
            check_training_options(str(cfg.q_sample_mode), str(cfg.time_sampler_type), str(cfg.diffusion_type),
                                   bool(cfg.not_diffusing_special_sym))
            note_time_sampler(str(cfg.time_sampler_type))

    def forward(self, model, sample, reduce=True):
        net_input = sample["net_input"]
        out = model(net_input["src_tokens"], net_input["src_lengths"], tgt_tokens=sample["target"])
        # out["x0"]: the target once per corrupted copy (--q-sample-mode)
        word_loss, word_nll = model.diffusion.loss(
            out["logits"], out["x0"], out["corrupted"], out["t"], out["weight"], self.label_smoothing)
        length_nll = F.cross_entropy(out["length_logits"].float(), out["length_target"])
        factor = model.decoder.length_loss_factor
        loss = word_loss + factor * length_nll
        logging_output = {
            "loss": loss.data,
            "nll_loss": (word_nll + length_nll).data,
            "word_ins-loss": utils.item(word_loss.data),
            "length-loss": utils.item(length_nll.data),
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": 1,
        }
        # Losses are already means over the batch, so the sample size is 1 (as RDM).
        return loss, 1, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        sample_size = utils.item(sum(log.get("sample_size", 0) for log in logging_outputs))
        for key in ("loss", "nll_loss", "word_ins-loss", "length-loss"):
            total = utils.item(sum(log.get(key, 0) for log in logging_outputs))
            name = key[:-5] if key.endswith("-loss") else key
            metrics.log_scalar(name, total / sample_size / math.log(2) if sample_size else 0.0, sample_size, round=3)
        metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["loss"].avg))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
