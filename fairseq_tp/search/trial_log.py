"""The trial log: one JSON line per evaluated schedule, durable after each one.

Line 1 is ``{"kind": "header", "config": {...}, "search": {...}}``: ``config``
is the caller's opaque description of the search (checkpoint, data, decoding
options...), ``search`` the parameters this package needs to repeat the
proposals (seed, strategy, space, initial design size).  Every further line is
one :class:`Trial`, written, flushed and fsync'd before the next evaluation
starts, so a killed search loses at most the evaluation in flight.

Resuming checks that both sections match the new search, except for keys that
only limit how long it runs (``budget``, ``time_budget_s``).

Lines with ``"kind": "confirm"`` record the confirmation of a candidate on sentences other than
the shots (:class:`Confirmation`): its BLEU and per-sentence statistics there, so that a killed
confirmation resumes without decoding again what it finished.
"""
import contextlib
import fcntl
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple

from ..files import atomic_write_text
from ..errors import UsageError
from ..schedules import Schedule

SOURCES = ("baseline", "initial", "botorch", "random", "paper")
# Config keys that may change between a search and its resumption.
RESUMABLE_CONFIG_KEYS: FrozenSet[str] = frozenset({"budget", "time_budget_s"})


@dataclass(frozen=True)
class Trial:
    index: int
    schedule: Schedule
    bleu: float
    source: str
    objective_s: float  # objective (decoding + scoring) seconds spent on this schedule
    optimiser_s: float  # seconds spent choosing it
    time: float  # Unix time when it was recorded
    replicates: Optional[Tuple[float, ...]] = None  # one score per noise draw; ``bleu`` is their mean

    def to_record(self) -> Dict[str, Any]:
        record = {
            "index": self.index,
            **_schedule_record(self.schedule),
            "bleu": self.bleu,
            "source": self.source,
            "objective_s": self.objective_s,
            "optimiser_s": self.optimiser_s,
            "time": self.time,
        }
        if self.replicates is not None:
            record["replicates"] = list(self.replicates)
        return record

    @classmethod
    def from_record(cls, record: Any, num_timesteps: int) -> "Trial":
        """Parse one log line's record; raises ValueError/TypeError/KeyError if malformed."""
        if not isinstance(record, dict):
            raise TypeError("not a JSON object")
        source = record["source"]
        if source not in SOURCES:
            raise ValueError(f"unknown source {source!r}")
        return cls(
            index=_integer(record["index"], "index"),
            schedule=_schedule(record, num_timesteps),
            bleu=_number(record["bleu"], "bleu"),
            source=source,
            objective_s=_objective_seconds(record),
            optimiser_s=_number(record["optimiser_s"], "optimiser_s"),
            time=_number(record["time"], "time"),
            replicates=_replicates(record.get("replicates")),
        )


@dataclass(frozen=True)
class Confirmation:
    """A candidate decoded on the confirmation sentences (``sentences``: a digest of their ids)."""

    schedule: Schedule
    bleu: float
    sentences: str
    statistics: Tuple  # [sentence][noise draw][k] BLEU statistics, the sentences in ascending id order
    objective_s: float
    time: float

    def to_record(self) -> Dict[str, Any]:
        return {"kind": "confirm", **_schedule_record(self.schedule), "bleu": self.bleu, "sentences": self.sentences,
                "statistics": self.statistics, "objective_s": self.objective_s, "time": self.time}

    @classmethod
    def from_record(cls, record: Dict[str, Any], num_timesteps: int) -> "Confirmation":
        statistics = record["statistics"]
        if not (isinstance(statistics, list) and all(isinstance(s, list) for s in statistics)):
            raise TypeError("'statistics' is not a list of lists")
        sentences = record["sentences"]
        if not isinstance(sentences, str):
            raise TypeError("'sentences' is not a string")
        return cls(_schedule(record, num_timesteps), _number(record["bleu"], "bleu"), sentences, statistics,
                   _objective_seconds(record), _number(record["time"], "time"))


def _schedule_record(schedule: Schedule) -> Dict[str, Any]:
    record: Dict[str, Any] = {"timesteps": list(schedule.timesteps)}
    if schedule.rates is not None:
        record["rates"] = list(schedule.rates)
    return record


def _schedule(record: Dict[str, Any], num_timesteps: int) -> Schedule:
    timesteps, rates = record["timesteps"], record.get("rates")
    if not isinstance(timesteps, list):
        raise TypeError("'timesteps' is not a list")
    if rates is not None and not isinstance(rates, list):
        raise TypeError("'rates' is not a list")
    return Schedule(tuple(timesteps), num_timesteps, None if rates is None else tuple(rates))


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"'{name}' is not an integer")
    return value


def _objective_seconds(record) -> float:
    """Decoding + scoring seconds; logs written before 2026-12-04 call them model_s."""
    key = "objective_s" if "objective_s" in record or "model_s" not in record else "model_s"
    return _number(record[key], key)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"'{name}' is not a finite number")
    return float(value)


def _replicates(value: Any) -> Optional[Tuple[float, ...]]:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise TypeError("'replicates' is not a non-empty list")
    return tuple(_number(v, "replicates") for v in value)


def _json_line(record: Dict[str, Any]) -> str:
    return json.dumps(record, allow_nan=False, sort_keys=False) + "\n"


def _normalised(data: Dict[str, Any]) -> Dict[str, Any]:
    """What a dict looks like after a trip through JSON (tuples become lists...)."""
    return json.loads(json.dumps(data, allow_nan=False))


def differing_keys(
    old: Dict[str, Any], new: Dict[str, Any], ignore: Iterable[str] = RESUMABLE_CONFIG_KEYS
) -> List[str]:
    ignored = set(ignore)
    keys = sorted((set(old) | set(new)) - ignored)
    missing = object()
    return [k for k in keys if old.get(k, missing) != new.get(k, missing)]


@dataclass
class _Contents:
    header: Optional[Dict[str, Any]]
    trials: List[Trial]
    needs_rewrite: bool  # a torn last line must go before anything is appended
    confirmations: List[Confirmation] = field(default_factory=list)


def _garbled(path: str, why: str) -> UsageError:
    return UsageError(
        f"trial log {path} is not a valid trial log ({why}); remove it or choose another --log"
    )


def _read(path: str, num_timesteps: int) -> _Contents:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UsageError(f"cannot read trial log {path}: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _garbled(path, "not UTF-8 text") from None
    lines = text.split("\n")
    torn = lines.pop()  # "" when the file ends with a newline
    needs_rewrite = False
    if torn:
        # A kill mid-write leaves a line without its newline.  Any proper
        # prefix of a JSON object fails to parse; a line that parses is whole.
        try:
            json.loads(torn)
            lines.append(torn)
        except (ValueError, RecursionError):
            pass
        needs_rewrite = True
    if not lines:
        return _Contents(None, [], needs_rewrite)

    records = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except (ValueError, RecursionError):
            raise _garbled(path, f"line {number} is not JSON") from None
    header = records[0]
    is_header = isinstance(header, dict) and header.get("kind") == "header"
    if not (is_header and isinstance(header.get("config"), dict)):
        raise _garbled(path, "line 1 is not a header record")
    trials, confirmations = [], []
    for number, record in enumerate(records[1:], start=2):
        try:
            if isinstance(record, dict) and record.get("kind") == "confirm":
                confirmations.append(Confirmation.from_record(record, num_timesteps))
                continue
            trial = Trial.from_record(record, num_timesteps)
        except (KeyError, TypeError, ValueError, UsageError) as e:
            detail = f"missing {e}" if isinstance(e, KeyError) else str(e)
            raise _garbled(path, f"line {number}: {detail}") from None
        if trial.index != len(trials):
            raise _garbled(path, f"line {number} has index {trial.index}, expected {len(trials)}")
        trials.append(trial)
    return _Contents(header, trials, needs_rewrite, confirmations)


def read_trial_log(path: str, num_timesteps: int) -> Tuple[Dict[str, Any], List[Trial]]:
    """The header and the finished trials of a log (e.g. for plotting)."""
    contents = _read(path, num_timesteps)
    if contents.header is None:
        raise _garbled(path, "it is empty")
    return contents.header, contents.trials


def read_confirmations(path: str, num_timesteps: int) -> List[Confirmation]:
    """The confirmations a log records (none when it does not exist yet)."""
    if not (os.path.exists(path) and os.path.getsize(path) > 0):
        return []
    return _read(path, num_timesteps).confirmations


class TrialLog:
    """An open trial log; use :meth:`open`, then :meth:`append` per evaluation."""

    def __init__(self, path: str, header: Dict[str, Any], trials: List[Trial]):
        self.path = path
        self.header = header
        self.trials = trials  # finished evaluations read back on resume
        try:
            self._file = open(path, "a", encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot write trial log {path}: {e.strerror or e}") from None

    @classmethod
    def open(
        cls,
        path: str,
        config: Dict[str, Any],
        search: Dict[str, Any],
        num_timesteps: int,
        resume: bool,
        ignore_keys: Iterable[str] = RESUMABLE_CONFIG_KEYS,
    ) -> "TrialLog":
        """Start a new log, or (``resume``) continue an existing one for the same search."""
        try:
            header = {"kind": "header", "config": _normalised(config), "search": _normalised(search)}
        except (TypeError, ValueError) as e:
            raise UsageError(f"the search config cannot be written as JSON: {e}") from None
        exists = os.path.exists(path) and os.path.getsize(path) > 0
        if exists and not resume:
            raise UsageError(
                f"trial log {path} already exists; resume it, remove it or choose another --log"
            )
        contents = _read(path, num_timesteps) if exists else _Contents(None, [], False)
        if contents.header is None:
            _write_all(path, header, [])
            return cls(path, header, [])
        old = contents.header
        differ = differing_keys(old["config"], header["config"], ignore_keys)
        search_differ = differing_keys(old.get("search", {}), header["search"], ignore_keys)
        differ += [k for k in search_differ if k not in differ]
        if differ:
            raise UsageError(
                f"trial log {path} was written for a different search "
                f"({', '.join(differ)} {'differs' if len(differ) == 1 else 'differ'}); "
                f"remove it or choose another --log"
            )
        if contents.needs_rewrite:
            _write_all(path, old, contents.trials, contents.confirmations)
        return cls(path, old, contents.trials)

    @classmethod
    def append_to(cls, path: str) -> "TrialLog":
        """An existing log, open to append confirmations after its search has finished."""
        return cls(path, {}, [])

    def append(self, trial: Trial) -> None:
        self._write(trial.to_record())
        self.trials.append(trial)

    def append_confirmation(self, confirmation: Confirmation) -> None:
        self._write(confirmation.to_record())

    def _write(self, record: Dict[str, Any]) -> None:
        try:
            self._file.write(_json_line(record))
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as e:  # a full disk: what is on disk may end in a torn line, which a resume drops
            raise UsageError(f"cannot write trial log {self.path}: {e.strerror or e}") from None

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "TrialLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_HELD: Dict[str, int] = {}  # lock files this process holds -> how many holders


@contextlib.contextmanager
def locked(path: str):
    """Hold the advisory lock of trial log ``path`` (``PATH.lock`` beside it, which stays) for the block: a
    second search on the same log, in any process, is refused naming the holder's pid.  Re-entrant within
    a process, so the command can hold it across search and confirmation while the search takes it too."""
    lock_path = os.path.realpath(path) + ".lock"
    if lock_path in _HELD:
        _HELD[lock_path] += 1
        try:
            yield
        finally:
            _HELD[lock_path] -= 1
        return
    try:
        handle = open(lock_path, "a+", encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot create the lock file {lock_path}: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise UsageError(f"trial log {path} is in use by another search (pid {holder}); wait for it to end "
                              f"or choose another --log") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        _HELD[lock_path] = 1
        try:
            yield
        finally:
            del _HELD[lock_path]
    finally:
        handle.close()  # releases the lock


def _write_all(path: str, header: Dict[str, Any], trials: List[Trial],
               confirmations: Sequence[Confirmation] = ()) -> None:
    text = _json_line(header) + "".join(_json_line(t.to_record()) for t in [*trials, *confirmations])
    try:
        atomic_write_text(path, text)
    except OSError as e:
        raise UsageError(f"cannot write trial log {path}: {e.strerror or e}") from None
