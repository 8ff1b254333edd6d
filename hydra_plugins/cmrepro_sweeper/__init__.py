"""cmrepro's sweeper where Hydra looks for plugins: Hydra instantiates a sweeper only from the
``hydra_plugins`` namespace, and imports every module there at each start, so this one holds a
name and nothing more (the sweeper and what it imports are loaded when a sweep uses it)."""

from cmrepro.sweeper import SkipEndedSweeper as _SkipEndedSweeper


class SkipEndedSweeper(_SkipEndedSweeper):
    """:class:`cmrepro.sweeper.SkipEndedSweeper` (``conf/hydra/sweeper/skip_ended.yaml``)."""
