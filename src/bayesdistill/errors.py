"""Exceptions raised at bayesdistill's boundaries.

Every error a user can cause (a bad config, a missing file, malformed data, a corrupt
checkpoint) is one of these, with a message that names what was given, what is allowed
and how to fix it. They subclass the built-in exception a Python user would expect
(`ValueError`, `FileNotFoundError`), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BayesDistillError(Exception):
    """Base class of every error raised on purpose by bayesdistill."""


class ConfigError(BayesDistillError, ValueError):
    """A configuration value or key is not allowed."""


class UnknownNameError(ConfigError, KeyError):
    """A registry lookup for a name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain.
        return str(self.args[0]) if self.args else ""


class DataError(BayesDistillError, ValueError):
    """Input data is malformed: wrong shape, NaN/inf, labels out of range, ..."""


class DataFileNotFoundError(BayesDistillError, FileNotFoundError):
    """A dataset file the user pointed to does not exist."""


class CheckpointError(BayesDistillError, ValueError):
    """A checkpoint or saved teacher cannot be read (truncated, corrupt, wrong format)."""


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The closest match to ``name`` among ``choices``, or None if nothing is close."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """A ``" Did you mean 'x'?"`` suffix for an error message, or an empty string."""
    match = closest(name, choices)
    return f" Did you mean '{match}'?" if match else ""
