"""The schedule file: what ``fairseq-tp-search`` writes and ``--tp-schedule FILE`` reads.

``{"timesteps": [...], "num_timesteps": T, "rates": [...], "steps": N, "decoding": {...}, ...}``: the
schedule (``rates`` only when it carries them),
the decoding options it was searched under (:func:`decoding_record`; fairseq-generate warns when
its own differ), and the search's provenance (BLEU, shots, checkpoint hash...), which readers ignore.
"""
import json
import os
from typing import Any, Dict, List, Tuple

from ..files import atomic_write_text
from ..errors import UsageError
from .value import Schedule

# Recorded only when they differ from these, so records of discrete decoding stay as they were.
OPTIONAL_DECODING_KEYS = {"continuous_sampler": "ddim", "ddim_eta": 0.0, "clamp_to_embeddings": False,
                          "mbr_samples": 1, "time_difference": 0, "temperature_annealing": False,
                          "beam_within_length": 1}


def decoding_record(options, length_beam: int, ema: bool, beam_within_length: int = 1) -> Dict[str, Any]:
    """The decoding options (a ``DecodingOptions``, the length beam and candidates per length, EMA) a
    schedule is tied to."""
    record = {"strategy": options.strategy, "argmax": options.argmax, "temperature": options.temperature,
              "length_beam": length_beam, "ema": bool(ema), "denoising_rate": options.rate_from}
    values = {**{k: getattr(options, k, d) for k, d in OPTIONAL_DECODING_KEYS.items()},
              "beam_within_length": beam_within_length}
    for key, default in OPTIONAL_DECODING_KEYS.items():
        if values[key] != default:
            record[key] = values[key]
    return record


def decoding_differences(recorded: Dict[str, Any], current: Dict[str, Any]) -> List[str]:
    """``"key old -> new"`` for each recorded decoding option the current ones change."""
    recorded = {**OPTIONAL_DECODING_KEYS, **recorded}
    current = {**OPTIONAL_DECODING_KEYS, **current}
    return [f"{k} {recorded[k]!r} -> {v!r}" for k, v in current.items() if k in recorded and recorded[k] != v]


def write_schedule_file(path: str, schedule: Schedule, **provenance: Any) -> None:
    """Write ``schedule`` and its provenance as JSON, atomically."""
    payload = {**schedule.to_dict(), "steps": schedule.steps, **provenance}
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def read_schedule_file(path: str) -> Tuple[Schedule, Dict[str, Any]]:
    """(the schedule, the other keys) of a schedule file, validated; UsageError otherwise."""
    if os.path.exists(path) and not os.path.isfile(path):  # a FIFO or device would block or never end
        raise UsageError(f"schedule file {path} is not a regular file")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise UsageError(f"cannot read schedule file {path}: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"schedule file {path} is not valid JSON: {e}") from None
    except RecursionError:
        raise UsageError(f"schedule file {path} is nested too deeply to be a schedule file") from None
    if not isinstance(data, dict):
        raise UsageError(f"schedule file {path} must hold a JSON object")
    steps, T = data.get("timesteps"), data.get("num_timesteps")
    if not isinstance(steps, list):
        raise UsageError(f"schedule file {path} has no 'timesteps' list")
    if isinstance(T, bool) or not isinstance(T, int):
        raise UsageError(f"schedule file {path} has no integer 'num_timesteps'")
    rates = data.get("rates")
    try:  # validate now, before any model is loaded
        schedule = Schedule(tuple(steps), T, None if rates is None else _rates_list(rates))
    except UsageError as e:
        raise UsageError(f"schedule file {path}: {e}") from None
    return schedule, {k: v for k, v in data.items() if k not in ("timesteps", "num_timesteps", "rates")}


def _rates_list(rates: Any) -> Tuple[Any, ...]:
    if not isinstance(rates, list):
        raise UsageError(f"'rates' must be a list of numbers, got {rates!r}")
    return tuple(rates)
