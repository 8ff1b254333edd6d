"""What a user of ``cmrepro.optim`` meets first: the message for a misspelt keyword, and what
``diagnostics()`` returns.

A tensor ``lr`` is accepted by every class and implementation: that is
tests/test_optim_conformance.py::test_a_tensor_lr_steps_like_the_number_or_is_refused_in_one_line.
"""

from __future__ import annotations

import doctest

import pytest
import torch
from helpers import make_params, set_grads

import cmrepro.optim.diagnostics as diagnostics_module
from cmrepro.optim import MEG, SAM, SGDCG, SGDCM, AdamCG, AdamCM

CRITICAL = [AdamCM, AdamCG, SGDCM, SGDCG]


class MyAdamCM(AdamCM):
    """A user's subclass: the message names it, as Python names any class's constructor."""


@pytest.mark.parametrize("cls", [*CRITICAL, MyAdamCM], ids=lambda cls: cls.__name__)
def test_an_unknown_keyword_names_the_class_the_user_called(cls):
    # Python's own wording for a constructor (SGDCM's, torch.optim.Adam's): the same for every
    # class, and never the shared internal constructor (CriticalAdam) behind AdamCM and AdamCG.
    with pytest.raises(TypeError, match=rf"^{cls.__name__}\.__init__\(\) got an unexpected keyword argument 'foo'$"):
        cls(make_params(), lr=0.01, foo=1)


@pytest.mark.parametrize("wrapper", [SAM, MEG])
def test_a_wrapper_passes_an_unknown_keyword_to_the_base_class_that_names_it(wrapper):
    with pytest.raises(TypeError, match=r"^AdamCG\.__init__\(\) got an unexpected keyword argument 'foo'$"):
        wrapper(make_params(), AdamCG, foo=1)


@pytest.mark.parametrize("cls", CRITICAL, ids=lambda cls: cls.__name__)
def test_diagnostics_are_0d_tensors_that_item_turns_into_floats(cls):
    params = make_params()
    opt = cls(params, lr=0.01, topC=3)
    for t in range(4):
        set_grads(params, t)
        opt.step()
    stats = opt.diagnostics()
    assert set(stats) == {"buffer_variance", "buffer_cosine", "buffer_size", "insertions"}
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 for v in stats.values())
    floats = {k: v.item() for k, v in stats.items()}  # the recipe diagnostics()'s docstring gives
    assert all(type(v) is float for v in floats.values()) and floats["buffer_size"] == 3.0


def test_the_diagnostics_docstring_example_runs_as_written():
    results = doctest.testmod(diagnostics_module, extraglobs={"AdamCM": AdamCM, "torch": torch}, report=False)
    assert results.attempted >= 5 and results.failed == 0, results
