"""The weight-decay form of each optimizer: ``optimizer.weight_decay_form`` (standard library only).

The paper trains ImageNet "with a weight decay (Loshchilov & Hutter, 2019) of 10^-4", citing the
paper of decoupled weight decay (AdamW), but the official code applies it in two forms: decoupled (AdamW style,
``theta *= 1 - lr * wd`` before the update) in Adam+CM, and coupled L2 (``wd * theta`` added to
the aggregated gradient, so it passes through Adam's scaling) in Adam+CG and SGD+CG.

- ``official`` (the default) keeps each optimizer's own form, listed in :data:`OFFICIAL_FORMS`;
- ``decoupled`` or ``coupled`` gives every optimizer the same form.

:func:`cmrepro.optim.from_config.optimizer_arguments` (the one place) turns the resolved form
into the optimizer's ``decoupled_weight_decay`` argument; the report reads it to say which form
each run used. Both resolve it here, so neither can drift from the other.
"""

from __future__ import annotations

from collections.abc import Mapping

FORMS = ("official", "decoupled", "coupled")

#: The form of each base optimizer under ``official``. Adam+CM, Adam+CG and SGD+CG: the official
#: package's. SGD+CM (not in it) follows Adam+CM. Adam: decoupled, as the paper's citation of
#: Loshchilov & Hutter reads; SGD: L2, the only form ``torch.optim.SGD`` has.
#: A wrapper (SAM, MEG: ``adam_sam_cm``) applies its base optimizer's form.
OFFICIAL_FORMS = {
    "adam": "decoupled",
    "adamw": "decoupled",
    "sgd": "coupled",
    "adam_cm": "decoupled",
    "adam_cg": "coupled",
    "sgd_cm": "decoupled",
    "sgd_cg": "coupled",
}
#: torch's SGD and AdamW have one form and no ``decoupled_weight_decay`` argument.
SINGLE_FORM = ("sgd", "adamw")


def base_optimizer(name: str) -> str | None:
    """The base optimizer of a config name: ``adam_sam_cm`` -> ``adam_cm``; None if unknown."""
    if name in OFFICIAL_FORMS:
        return name
    first, _, rest = name.partition("_")
    wrapper_removed = "_".join([first, *rest.split("_")[1:]])  # the wrapper is the second word
    return wrapper_removed if wrapper_removed in OFFICIAL_FORMS else None


def weight_decay_form(optimizer: Mapping) -> str | None:
    """``"decoupled"`` or ``"coupled"``: the form a run's optimizer config applies.

    None for an optimizer this table does not know (its class default applies). A ValueError
    with one line for a bad ``weight_decay_form``, a form the optimizer does not have, or a raw
    ``decoupled_weight_decay`` key (the switch is ``weight_decay_form``, one place).
    """
    name = optimizer.get("name")
    form = optimizer.get("weight_decay_form", "official")
    if form not in FORMS:
        raise ValueError(f"invalid optimizer.weight_decay_form: {form!r} (choose one of: {', '.join(FORMS)})")
    if "decoupled_weight_decay" in optimizer:
        raise ValueError(
            f"invalid optimizer.decoupled_weight_decay: {optimizer['decoupled_weight_decay']!r} "
            "(set optimizer.weight_decay_form: official | decoupled | coupled instead)"
        )
    base = base_optimizer(str(name))
    if base is None:
        return None if form == "official" else form
    official = OFFICIAL_FORMS[base]
    if base in SINGLE_FORM and form not in ("official", official):
        raise ValueError(
            f"invalid optimizer.weight_decay_form: {form!r} for {name!r} (torch's {base} has {official} "
            "weight decay only; use official)"
        )
    return official if form == "official" else form
