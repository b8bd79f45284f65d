"""``resilience replay``: a traffic log through rate-limiting policies, side by side.

Parsing (:mod:`~resilience.replay.clf`, :mod:`~resilience.replay.structured`),
the engine and its statistics (:mod:`~resilience.replay.engine`,
:mod:`~resilience.replay.stats`), and output (:mod:`~resilience.replay.report`,
:mod:`~resilience.replay.plot`) are separate modules; :func:`replay_file` runs
the whole thing from Python.
"""

from resilience.replay.engine import PolicyResult, Replay, ReplayResult
from resilience.replay.key_spec import KeySpec
from resilience.replay.runner import ReplayOptions, prepare, replay_file, run

__all__ = [
    "KeySpec",
    "PolicyResult",
    "Replay",
    "ReplayOptions",
    "ReplayResult",
    "prepare",
    "replay_file",
    "run",
]
