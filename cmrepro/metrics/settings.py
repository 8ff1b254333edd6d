"""The ``metrics`` config (``conf/metrics/*.yaml``) read into typed settings, checked on the way.

Every bad value is a ``ValueError`` with one line naming the key, which the
training's config check turns into its ``ConfigError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..validation import check, is_integer, is_number


@dataclass(frozen=True)
class Schedule:
    """Whether a metric is computed, and after which epochs."""

    enabled: bool = False
    every_n_epochs: int = 1

    def due(self, epoch: int, last_epoch: int) -> bool:
        """After every ``every_n_epochs``-th epoch, and after the last one (the "final" value of Figure 9)."""
        return self.enabled and (epoch % self.every_n_epochs == 0 or epoch == last_epoch)


@dataclass(frozen=True)
class SharpnessSettings:
    schedule: Schedule = Schedule()
    batches: int = 4
    tol: float = 1e-3
    max_iterations: int = 30


@dataclass(frozen=True)
class MSharpnessSettings:
    schedule: Schedule = Schedule()
    batches: int = 4
    m: int = 16
    radius: float = 0.05


@dataclass(frozen=True)
class MetricsSettings:
    distance: Schedule = Schedule()
    # Logged on its own schedule, but summed over every optimizer step (distance.PathLength).
    path_length: Schedule = Schedule()
    buffer: Schedule = Schedule()
    sharpness: SharpnessSettings = SharpnessSettings()
    m_sharpness: MSharpnessSettings = MSharpnessSettings()

    @property
    def batches_needed(self) -> int:
        """Size of the fixed batch set: the most that an enabled metric uses."""
        counts = [s.batches for s in (self.sharpness, self.m_sharpness) if s.schedule.enabled]
        return max(counts, default=0)


def metrics_settings(cfg: Mapping | None, batch_size: int | None = None) -> MetricsSettings:
    """Read and check ``cfg`` (the run config's ``metrics``); missing entries keep their defaults.

    ``batch_size`` (the training batch size), when given, bounds m-sharpness's ``m``:
    its mini-batches are cut from training batches.
    """
    cfg = cfg or {}
    default_every = _int(cfg, "every_n_epochs", 1, "metrics")

    def schedule(name: str, absent: Schedule | None = None) -> Schedule:
        """``absent``, when given: the schedule of a config without this section."""
        if absent is not None and name not in cfg:
            return absent
        section = cfg.get(name) or {}
        return Schedule(
            enabled=_bool(section, "enabled", False, f"metrics.{name}"),
            every_n_epochs=_int(section, "every_n_epochs", default_every, f"metrics.{name}"),
        )

    sharp = cfg.get("sharpness") or {}
    m_sharp = cfg.get("m_sharpness") or {}
    distance = schedule("distance")
    settings = MetricsSettings(
        distance=distance,
        path_length=schedule("path_length", absent=distance),  # beside the distance, unless set apart
        buffer=schedule("buffer"),
        sharpness=SharpnessSettings(
            schedule=schedule("sharpness"),
            batches=_int(sharp, "batches", 4, "metrics.sharpness"),
            tol=_positive(sharp, "tol", 1e-3, "metrics.sharpness"),
            max_iterations=_int(sharp, "max_iterations", 30, "metrics.sharpness"),
        ),
        m_sharpness=MSharpnessSettings(
            schedule=schedule("m_sharpness"),
            batches=_int(m_sharp, "batches", 4, "metrics.m_sharpness"),
            m=_int(m_sharp, "m", 16, "metrics.m_sharpness"),
            radius=_positive(m_sharp, "radius", 0.05, "metrics.m_sharpness"),
        ),
    )
    if batch_size is not None and settings.m_sharpness.schedule.enabled:
        m = settings.m_sharpness.m
        must = f"at most dataset.batch_size={batch_size}: mini-batches are cut from training batches"
        check(m <= batch_size, "metrics.m_sharpness.m", m, must)
    return settings


def _int(section: Mapping, key: str, default: int, prefix: str) -> int:
    value = section.get(key, default)
    check(is_integer(value) and value >= 1, f"{prefix}.{key}", value, "an integer >= 1")
    return int(value)


def _positive(section: Mapping, key: str, default: float, prefix: str) -> float:
    value = section.get(key, default)
    check(is_number(value) and value > 0, f"{prefix}.{key}", value, "a number > 0")
    return float(value)


def _bool(section: Mapping, key: str, default: bool, prefix: str) -> bool:
    value = section.get(key, default)
    check(isinstance(value, bool), f"{prefix}.{key}", value, "true or false")
    return value
