"""One search spread over the processes of a ``torchrun`` job (torch.distributed, as fairseq scales out).

Rank 0 owns the optimiser, the trial log and the outputs; every rank loads the model and the shots.
Each evaluation's schedules are broadcast; every rank decodes its share of the batches of shots (batch
b on rank b mod world size, keeping its global number and so its noise) and returns BLEU's integer
statistics, which ``all_reduce`` sums; rank 0 scores the sums.  Scores therefore equal a one-process
search's exactly.  Without torchrun (WORLD_SIZE unset or 1) nothing here is used.
"""
import datetime
import os
import sys
from typing import List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist

from ..schedules import Schedule

# Fault injection for the tests: the rank named here raises on its first evaluation.
FAIL_ON_RANK = "FAIRSEQ_TP_FAIL_ON_RANK"
FIRST_FAILURE = "fairseq_tp/first_failure"  # key in the process group's store


def world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def shard() -> Tuple[int, int]:
    """(rank, world size) of this process: batch b of an objective is decoded by rank b mod world size."""
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def start(timeout_s: float, use_cuda: bool) -> int:
    """Join the torchrun job's process group (nccl on GPUs, gloo on CPU); returns this rank."""
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                            timeout=datetime.timedelta(seconds=timeout_s))
    return dist.get_rank()


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


SEARCH, CONFIRM = "search", "confirm"  # the objectives every rank serves


class ShardedObjective:
    """Rank 0's view of FewShotBleu objectives whose batches are spread over the ranks: the search's
    (``evaluate``) and the confirmation's (``sentence_statistics``)."""

    def __init__(self, objective, confirmation=None):
        self.objective, self.confirmation = objective, confirmation

    def evaluate(self, schedules: Sequence[Schedule]):
        return self.objective.scores(_summed(self.objective, list(schedules)))

    def sentence_statistics(self, schedules: Sequence[Schedule]):
        """The confirmation objective's per-sentence statistics, each rank decoding its batches."""
        _gathered(self.confirmation, list(schedules))
        return self.confirmation.sentence_statistics(schedules)

    def close(self) -> None:
        """Let the other ranks' :func:`serve` return."""
        dist.broadcast_object_list([None], src=0)


def serve(objective, confirmation=None) -> None:
    """A rank other than 0: decode its share of every evaluation and confirmation until rank 0 closes."""
    while True:
        message: List[Optional[tuple]] = [None]
        dist.broadcast_object_list(message, src=0)
        if message[0] is None:
            return
        kind, schedules = message[0]
        if kind == SEARCH:
            _summed(objective, schedules)
        else:
            _gathered(confirmation, schedules)


def _gathered(objective, schedules: Optional[list]) -> None:
    """Every rank's per-sentence statistics of ``schedules``, added to each rank's ``objective``."""
    if dist.get_rank() == 0:
        dist.broadcast_object_list([(CONFIRM, schedules)], src=0)
    local = objective.shard_sentence_statistics(schedules)
    parts: List[Optional[dict]] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, local)
    for part in parts:
        objective.add_sentence_statistics(part)


def _summed(objective, schedules: Optional[list]):
    if dist.get_rank() == 0:
        dist.broadcast_object_list([(SEARCH, schedules)], src=0)
    if os.environ.get(FAIL_ON_RANK) == str(dist.get_rank()):
        raise RuntimeError(f"failure injected by {FAIL_ON_RANK}")
    local = torch.tensor(objective.statistics(schedules), dtype=torch.int64)
    if local.device.type == "cpu" and dist.get_backend() == "nccl":
        local = local.cuda()
    dist.all_reduce(local, op=dist.ReduceOp.SUM)
    return local.cpu().tolist()


def fail(prog: str, message: str) -> None:
    """Our last stderr line on a failed rank, then exit non-zero.  The first rank to fail records
    its cause in the job's store; a rank that fails because of it (a collective whose peer is gone)
    prints that first cause instead of its own, so every rank's line names the rank that failed."""
    rank = dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))
    line = f"rank {rank} of {world()}: {message}"
    try:
        store = dist.distributed_c10d._get_default_store()
        line = store.compare_set(FIRST_FAILURE, "", line).decode()
    except Exception:  # no process group, or its store is gone: our own cause is all we know
        pass
    print(f"{prog}: error: {line}", file=sys.stderr, flush=True)
    raise SystemExit(1)
