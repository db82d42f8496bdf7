"""The step schedule: which diffusion timesteps the decoder visits.

A schedule is parsed and validated once, at the edge (command line or file);
everything else receives a :class:`Schedule`.

Timesteps are 0-based: for a model with ``T`` steps, ``T - 1`` is the fully
noised state and ``0`` the last noisy one.  ``49,33,12,0`` means four decoder
passes; after the last listed step the generator outputs its x0 prediction.
RDM counts from 1, so RDM's step ``t`` is our ``t - 1``.

Named spacings (``N`` passes, ``T`` steps):

- ``uniform:N`` -- RDM's own spacing: with ``s = T // N`` and ``b = T - s*N``,
  pass ``i`` visits RDM step ``T - i*(s+1)`` for ``i < b`` and ``s*(N-i)``
  otherwise (larger strides first); we subtract 1.  T=50, N=4 -> 49,36,23,11.
  When N divides T this is also what DiffuSeq's decoding visits with ``--step N``
  (``range(T)[::-1][::T // N]``; T=2000, N=4 -> 1999,1499,999,499), so continuous
  models use the same spacing.
- ``cosine:N`` -- ``ceil(T * cos(pi/2 * i/N)) - 1``: passes crowd the noisy end.
- ``quadratic:N`` -- ``ceil(T * (1 - i/N)**2) - 1``: passes crowd the clean end.

Rounded named spacings are made strictly decreasing by pulling each step
below its predecessor (and above the room the remaining steps need).

A schedule may also carry ``rates``: the share of tokens left noisy after each pass
(strictly decreasing, ending at 0, rounded to 0.001).  RDM's reparameterised strategies
then use them in place of their ``-linear``/``-cosine`` curve of the pass index.  Written
``49,36,23,11@0.9,0.6,0.3,0`` or ``uniform:4@0.9,0.6,0.3,0``; without ``@`` the curve applies.
"""
import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import UsageError

SPACINGS = ("uniform", "cosine", "quadratic")
_LIST_RE = re.compile(r"^[\s\d,+-]+$")
_NAMED_RE = re.compile(r"^([A-Za-z_]+):(.*)$")
RATE_DIGITS = 3  # rates are kept to 0.001


def _format(timesteps: Sequence[int]) -> str:
    return ",".join(str(t) for t in timesteps)


def _format_rates(rates: Sequence[float]) -> str:
    return ",".join(f"{r:g}" for r in rates)


@dataclass(frozen=True)
class Schedule:
    """Strictly decreasing timesteps in ``[0, num_timesteps)``, and optionally the share of tokens
    left noisy after each pass (``rates``; None: the decoding strategy's own curve)."""

    timesteps: Tuple[int, ...]
    num_timesteps: int
    rates: Optional[Tuple[float, ...]] = None

    def __post_init__(self):
        steps, T = self.timesteps, self.num_timesteps
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise UsageError(f"the number of diffusion timesteps must be a positive integer, got {T!r}")
        if len(steps) == 0:
            raise UsageError("the schedule is empty: give at least one timestep")
        for t in steps:
            if isinstance(t, bool) or not isinstance(t, int):
                raise UsageError(f"schedule timestep {t!r} is not an integer")
        for a, b in zip(steps, steps[1:]):
            if b >= a:
                raise UsageError(
                    f"schedule timesteps must be strictly decreasing, got {_format(steps)}"
                )
        if steps[0] >= T or steps[-1] < 0:
            bad = steps[0] if steps[0] >= T else steps[-1]
            raise UsageError(
                f"schedule timestep {bad} is out of range [0, {T - 1}] for a model with T = {T} steps"
            )
        if self.rates is not None:
            object.__setattr__(self, "rates", _checked_rates(self.rates, len(steps)))

    @property
    def steps(self) -> int:
        """Number of decoder passes (network evaluations)."""
        return len(self.timesteps)

    def __str__(self) -> str:
        if self.rates is None:
            return _format(self.timesteps)
        return f"{_format(self.timesteps)}@{_format_rates(self.rates)}"

    def targets(self) -> Tuple[int, ...]:
        """Where each pass jumps to: the next timestep, and -1 (x0) after the last."""
        return self.timesteps[1:] + (-1,)

    # -- named spacings ---------------------------------------------------
    @classmethod
    def named(cls, spacing: str, steps: int, num_timesteps: int) -> "Schedule":
        _check_spacing(spacing)
        _check_steps(f"{spacing}:{steps}", steps, num_timesteps)
        T, N = num_timesteps, steps
        if spacing == "uniform":
            stride, bigger = divmod(T, N)
            visits = [T - i * (stride + 1) if i < bigger else stride * (N - i) for i in range(N)]
            return cls(tuple(v - 1 for v in visits), T)
        if spacing == "cosine":
            raw = [math.ceil(T * math.cos(math.pi / 2 * i / N)) - 1 for i in range(N)]
        else:
            raw = [math.ceil(T * (1 - i / N) ** 2) - 1 for i in range(N)]
        return cls(tuple(strictly_decreasing(raw, T - 1)), T)

    @classmethod
    def uniform(cls, steps: int, num_timesteps: int) -> "Schedule":
        return cls.named("uniform", steps, num_timesteps)

    def to_dict(self) -> Dict[str, Any]:
        record = {"timesteps": list(self.timesteps), "num_timesteps": self.num_timesteps}
        if self.rates is not None:
            record["rates"] = list(self.rates)
        return record

    def with_rates(self, rates: Optional[Sequence[float]]) -> "Schedule":
        return Schedule(self.timesteps, self.num_timesteps, None if rates is None else tuple(rates))


def _checked_rates(rates, passes: int) -> Tuple[float, ...]:
    """``rates`` rounded to 0.001, or UsageError: one per pass, in [0, 1], strictly decreasing, last 0."""
    if not isinstance(rates, (list, tuple)):
        raise UsageError(f"schedule rates must be a list of numbers, got {rates!r}")
    for r in rates:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r):
            raise UsageError(f"schedule rate {r!r} is not a finite number")
    if len(rates) != passes:
        raise UsageError(f"the schedule has {passes} timesteps but {len(rates)} rates: give one rate per pass "
                            f"(the share of tokens left noisy after it)")
    rounded = tuple(round(float(r), RATE_DIGITS) + 0.0 for r in rates)
    bad = next((r for r in rounded if not 0 <= r <= 1), None)
    if bad is not None:
        raise UsageError(f"schedule rate {bad:g} is out of range [0, 1] (the share of tokens left noisy)")
    for a, b in zip(rounded, rounded[1:]):
        if b >= a:
            raise UsageError(f"schedule rates must be strictly decreasing (at 0.001), got {_format_rates(rounded)}")
    if rounded[-1] != 0:
        raise UsageError(f"the last schedule rate must be 0 (every token decoded after the last pass), "
                            f"got {_format_rates(rounded)}")
    return rounded


def _check_spacing(spacing: str) -> None:
    if spacing not in SPACINGS:
        raise UsageError(f"unknown schedule spacing '{spacing}' (choose from {', '.join(SPACINGS)})")


def _check_steps(text: str, steps: int, num_timesteps: Optional[int] = None) -> None:
    """N >= 1, and N <= T once T is known."""
    if steps < 1:
        raise UsageError(f"{text}: the number of steps must be at least 1")
    if num_timesteps is not None and steps > num_timesteps:
        raise UsageError(
            f"{text} asks for {steps} steps but the model has only T = {num_timesteps}"
        )


def strictly_decreasing(values: Sequence[int], upper: int) -> List[int]:
    """The nearest strictly decreasing sequence in ``[0, upper]``: each value pulled below its
    predecessor, and never below the room the values after it need (the last may be 0)."""
    out, n = [], len(values)
    for i, v in enumerate(values):
        v = min(v, upper) if i == 0 else min(v, out[-1] - 1)
        out.append(max(v, n - 1 - i))
    return out


@dataclass(frozen=True)
class ScheduleSpec:
    """A ``--tp-schedule`` value checked for syntax; :meth:`resolve` binds it to a model's T.

    One of: an explicit list (``49,33,12,0``), a named spacing (``uniform:4``),
    or a JSON file with ``timesteps`` and ``num_timesteps`` (other keys kept in
    ``extra`` for provenance checks, e.g. the search's decoding options).
    """

    text: str
    timesteps: Optional[Tuple[int, ...]] = None
    spacing: Optional[str] = None
    steps: Optional[int] = None
    file_num_timesteps: Optional[int] = None
    rates: Optional[Tuple[float, ...]] = None
    extra: Dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def parse(cls, text: str) -> "ScheduleSpec":
        text = str(text).strip()
        if not text:
            raise UsageError("the schedule is empty: give at least one timestep")
        if "@" in text and not os.path.exists(text):
            steps_text, rates_text = text.split("@", 1)
            spec = cls.parse(steps_text)
            if spec.is_file:
                raise UsageError(f"{text}: rates follow timesteps or a spacing, not a file (put them in the file)")
            if not steps_text.strip() or "@" in rates_text:
                raise UsageError(f"schedule '{text}' must be TIMESTEPS@RATES, e.g. 49,36,23,11@0.9,0.6,0.3,0")
            rates = _parse_number_list(rates_text, text)
            if spec.timesteps is not None:
                _checked_rates(rates, len(spec.timesteps))
            return dataclasses.replace(spec, text=text, rates=rates)
        looks_like_list = _LIST_RE.match(text) or ("," in text and not os.path.exists(text))
        if looks_like_list:
            return cls(text, timesteps=_parse_int_list(text))
        named = _NAMED_RE.match(text)
        if named and not os.path.exists(text):
            spacing, count = named.group(1).lower(), named.group(2).strip()
            _check_spacing(spacing)
            try:
                steps = int(count)
            except ValueError:
                raise UsageError(f"{text}: the number of steps must be an integer") from None
            _check_steps(text, steps)
            return cls(text, spacing=spacing, steps=steps)
        return cls._from_file(text)

    @classmethod
    def _from_file(cls, path: str) -> "ScheduleSpec":
        from .file import read_schedule_file

        schedule, extra = read_schedule_file(path)
        return cls(path, timesteps=schedule.timesteps, file_num_timesteps=schedule.num_timesteps,
                   rates=schedule.rates, extra=extra)

    @property
    def is_file(self) -> bool:
        return self.file_num_timesteps is not None

    def resolve(self, num_timesteps: int) -> Schedule:
        if self.spacing is not None:
            return Schedule.named(self.spacing, self.steps, num_timesteps).with_rates(self.rates)
        if self.is_file and self.file_num_timesteps != num_timesteps:
            raise UsageError(
                f"schedule file {self.text} was made for T = {self.file_num_timesteps} "
                f"but the checkpoint has T = {num_timesteps}"
            )
        return Schedule(self.timesteps, num_timesteps, self.rates)


def _parse_number_list(text: str, whole: str) -> Tuple[float, ...]:
    values = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise UsageError(f"schedule rates '{text}' have an empty entry")
        try:
            value = float(item)
        except ValueError:
            raise UsageError(f"schedule rate '{item}' in '{whole}' is not a number") from None
        values.append(value)
    return tuple(values)


def _parse_int_list(text: str) -> Tuple[int, ...]:
    values = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise UsageError(f"schedule '{text}' has an empty entry")
        try:
            values.append(int(item))
        except ValueError:
            raise UsageError(f"schedule entry '{item}' is not an integer") from None
    return tuple(values)
