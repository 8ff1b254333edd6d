"""What SAM and MEG share: an optimizer around a base optimizer that behaves like one optimizer.

The wrapper's ``param_groups`` and ``state`` *are* the base optimizer's (reading and
assigning both reach it), so schedulers, ``zero_grad``, ``opt.state.clear()`` and
``opt.state = defaultdict(dict)`` act on the optimizer that steps. The wrapper
copies, pickles and saves with its base optimizer; hooks registered on the wrapper
run on its ``state_dict``, ``load_state_dict`` and ``step``, and the base optimizer's
step runs inside the wrapper's, so global step hooks fire once per step.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor
from torch.optim import Optimizer


class OptimizerWrapper(Optimizer):
    """Subclasses call :meth:`_wrap` at the end of ``__init__``, set :attr:`kept` and
    write :meth:`_fill_group` (their own group defaults and checks)."""

    #: Attributes of the wrapper (besides the base optimizer) that copies and pickles keep.
    kept: tuple[str, ...] = ()

    def _wrap(self, base_optimizer: Callable[..., Optimizer], kwargs: dict) -> None:
        """Build the base optimizer over the wrapper's groups and hand it groups and state."""
        groups = self.__dict__.pop("_own_param_groups")
        self.__dict__.pop("_own_state")
        self.base_optimizer = base_optimizer(groups, **kwargs)
        self.defaults = {**self.base_optimizer.defaults, **self.defaults}

    # param_groups and state: the base optimizer's, once it exists (during
    # Optimizer.__init__ the wrapper keeps its own, to give them to the base).
    def _shared(name: str):
        own = f"_own_{name}"

        def get(self):
            base = self.__dict__.get("base_optimizer")
            return getattr(base, name) if base is not None else self.__dict__[own]

        def set_(self, value) -> None:
            base = self.__dict__.get("base_optimizer")
            if base is not None:
                setattr(base, name, value)
            else:
                self.__dict__[own] = value

        return property(get, set_)

    param_groups = _shared("param_groups")
    state = _shared("state")
    del _shared

    def add_param_group(self, param_group: dict) -> None:
        self._fill_group(param_group)
        if "base_optimizer" in self.__dict__:
            self.base_optimizer.add_param_group(param_group)
        else:  # during __init__, before the base optimizer exists
            super().add_param_group(param_group)

    def _fill_group(self, param_group: dict) -> None:
        raise NotImplementedError

    def _base_step(self) -> None:
        """The base optimizer's step, without torch's hook wrapper: the wrapper's step already ran the hooks."""
        step = type(self.base_optimizer).step
        if getattr(step, "hooked", False):  # torch.optim.Optimizer.profile_hook_step
            step = step.__wrapped__
        step(self.base_optimizer)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base_optimizer.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        for hook in self._optimizer_state_dict_pre_hooks.values():
            hook(self)
        saved = self._save()
        for hook in self._optimizer_state_dict_post_hooks.values():
            result = hook(self, saved)
            if result is not None:
                saved = result
        return saved

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        for hook in self._optimizer_load_state_dict_pre_hooks.values():
            result = hook(self, state_dict)
            if result is not None:
                state_dict = result
        self._load(state_dict)
        for hook in self._optimizer_load_state_dict_post_hooks.values():
            hook(self)

    def _save(self) -> dict:
        """The state dict before the wrapper's hooks: the base optimizer's."""
        return self.base_optimizer.state_dict()

    def _load(self, state_dict: dict) -> None:
        self.base_optimizer.load_state_dict(state_dict)

    def __getstate__(self) -> dict:
        return {
            "defaults": self.defaults,
            "base_optimizer": self.base_optimizer,
            **{name: getattr(self, name) for name in self.kept},
        }

    def diagnostics(self) -> dict[str, Tensor]:
        """The base optimizer's buffer diagnostics (0-d tensors, see ``BufferDiagnostics``), if it has a buffer."""
        diagnostics = getattr(self.base_optimizer, "diagnostics", None)
        return diagnostics() if diagnostics is not None else {}
