"""Decoding speed and BLEU of whole schedules on a subset, as fairseq-generate would decode them."""
import os
import platform
import statistics
from typing import Dict, Optional

from ..schedules import Schedule
from .objective import FewShotBleu


def time_schedules(objective: FewShotBleu, schedules: Dict[str, Schedule], repeats: int = 3,
                   progress: Optional[str] = None):
    """BLEU and median sentences/s of each schedule on the objective's sentences, decoding from
    scratch one schedule at a time; repeats interleave the schedules so drift hits them alike.
    ``progress``: a tqdm bar on stderr with this description, one step per decode."""
    from tqdm import tqdm

    objective.translate([min(schedules.values(), key=lambda s: s.steps)])  # warm-up: no row pays first-call costs
    runs = {name: [] for name in schedules}
    with tqdm(total=repeats * len(schedules), desc=progress, unit="decode", disable=progress is None) as bar:
        for _ in range(repeats):
            for name, schedule in schedules.items():
                bar.set_postfix_str(name, refresh=True)
                runs[name].append(objective.timed(schedule))
                bar.update()
    return {name: {"timesteps": list(schedules[name].timesteps), "bleu": r[0][0],
                   "sents_per_s": statistics.median(speed for _, speed in r)} for name, r in runs.items()}


def machine_facts() -> Dict[str, object]:
    """What a timing depends on: CPU model, cores, torch, the threads torch uses here."""
    import torch
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def machine_summary() -> str:
    """One line for a table's caption: CPU model, cores, GPU if any, torch."""
    facts = machine_facts()
    gpu = f", GPU {facts['gpu']}" if facts["gpu"] else ""
    return f"{facts['cpu']}, {facts['cores']} cores{gpu}, torch {facts['torch']}"
