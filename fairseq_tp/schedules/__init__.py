"""Step schedules (pure Python, no fairseq): the validated value and its JSON file."""
from .file import decoding_differences, decoding_record, read_schedule_file, write_schedule_file
from .value import SPACINGS, Schedule, ScheduleSpec, strictly_decreasing

__all__ = ["SPACINGS", "Schedule", "ScheduleSpec", "decoding_differences", "decoding_record",
           "read_schedule_file", "strictly_decreasing", "write_schedule_file"]
