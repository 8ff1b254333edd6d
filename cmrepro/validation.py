"""One wording for a bad config or hyperparameter value: ``invalid KEY: VALUE (must be RULE)``.

Every layer checks its own inputs (the optimizers their hyperparameters, the
models, data, metrics and training their config sections), and every check
words its error the same way, so a user reads one shape of message wherever it
comes from. This module is a leaf: standard library only, importing nothing
from cmrepro, so that even the bottom layers (``cmrepro.optim``,
``cmrepro.models``) may use it without depending on anything above them.
"""

from __future__ import annotations

from numbers import Integral, Real


def invalid_value(key: str, value: object, must: str) -> str:
    """The one-line message: ``invalid {key}: {value!r} (must be {must})``.

    ``must`` completes "must be ...", e.g. ``"an integer >= 1"`` or ``"true or false"``.
    """
    return f"invalid {key}: {value!r} (must be {must})"


def check(condition: bool, key: str, value: object, must: str, error: type[Exception] = ValueError) -> None:
    """Raise ``error(invalid_value(key, value, must))`` unless ``condition`` holds.

    ``error`` lets a layer raise its own type (training's ``ConfigError``) with the same wording.
    """
    if not condition:
        raise error(invalid_value(key, value, must))


def is_integer(value: object) -> bool:
    """An integer, but not a bool: YAML's ``true`` is not the number 1 here."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A real number (int or float), but not a bool."""
    return isinstance(value, Real) and not isinstance(value, bool)
