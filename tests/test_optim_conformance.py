"""torch.optim's generic optimizer checks, applied to every cmrepro optimizer.

The optimizers are described with the ``OptimizerInfo`` / ``OptimizerInput`` machinery
that ships with torch (``torch.testing._internal.common_optimizers``, the one behind
pytorch's ``TestOptimRenewed``): one entry per class, each with the configurations
(``optim_inputs_func``) a check runs through. ``torch.optim.Adam`` and ``SGD`` run
every check too, from torch's own entries, as controls: a check that torch fails is
not a check. The check bodies are written here, from the behaviour
``torch.optim.Optimizer`` documents (hooks, ``state_dict`` / ``load_state_dict``,
``zero_grad``, ``add_param_group``, ``state``) and the generic checks of
``TestOptimRenewed``.

Each check runs per class and implementation: ``eager`` (``foreach=False``),
``foreach`` and ``fused`` (``fused=True``; for torch's controls, their fused CPU
kernels). SAM and MEG wrap Adam+CM. Where cmrepro departs from torch on purpose,
docs/optimizers.md ("Differences from torch.optim") says why, and the check says
which entry.
"""

from __future__ import annotations

import copy
import inspect
import io
import pickle
from collections import defaultdict

import pytest
import torch
import torch.backends
from torch.nn.utils import parameters_to_vector, vector_to_parameters
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from cmrepro.optim import MEG, SAM, SGDCG, SGDCM, AdamCG, AdamCM

# Importing torch's test utilities freezes torch.backends flags for the whole process
# (torch.backends.disable_global_flags): training code in the same pytest worker sets
# cudnn.benchmark, so the flags are released again right after the import.
_frozen = torch.backends.flags_frozen()
from torch.testing._internal.common_optimizers import OptimizerInfo, OptimizerInput, optim_db  # noqa: E402

if not _frozen:
    setattr(torch.backends, "__allow_nonbracketed_mutation_flag", True)

SHAPES = [(3, 2), (4,), (2, 2)]


# ---- the optimizers under test ---------------------------------------------------------------


class SAMAdamCM(SAM):
    """Adam+SAM+CM as a class (an OptimizerInfo describes a class)."""

    def __init__(self, params, **kwargs):
        super().__init__(params, AdamCM, **kwargs)


class MEGAdamCM(MEG):
    """Adam+MEG+CM as a class, with MEG's heavy ball on (its w_{t-1} is state too)."""

    def __init__(self, params, **kwargs):
        super().__init__(params, AdamCM, **{"heavy_ball": 0.3, **kwargs})


def _inputs(*configs):
    """An ``optim_inputs_func``: the configurations a check runs every optimizer through."""

    def optim_inputs_func(device, dtype=None):
        return [OptimizerInput(params=None, kwargs=kwargs, desc=desc) for desc, kwargs in configs]

    return optim_inputs_func


ADAM_INPUTS = _inputs(
    ("default", {}),
    ("non-default lr, small buffer", {"lr": 0.02, "topC": 2, "decay": 0.9}),
    ("maximize", {"weight_decay": 0.1, "maximize": True}),
)
SGD_INPUTS = _inputs(
    ("default", {"lr": 0.05}),
    ("momentum, small buffer", {"lr": 0.05, "momentum": 0.5, "topC": 2}),
    ("maximize", {"lr": 0.05, "weight_decay": 0.1, "maximize": True}),
)
# Of torch's own configurations (its OptimizerInfo entries), those that keep the checks short
# and cover state (momentum, amsgrad) and maximize.
CONTROL_INPUTS = ("default", "momentum", "maximize", "amsgrad")


def _info(cls, inputs, *, closure=False):
    return OptimizerInfo(
        cls,
        optim_inputs_func=inputs,
        supported_impls=("foreach", "fused"),
        supports_fused_on=("cpu", "cuda"),
        step_requires_closure=closure,
    )


TORCH_INFOS = {info.optim_cls.__name__: info for info in optim_db}
INFOS = {
    "torch.Adam": TORCH_INFOS["Adam"],
    "torch.SGD": TORCH_INFOS["SGD"],
    "AdamCM": _info(AdamCM, ADAM_INPUTS),
    "AdamCG": _info(AdamCG, ADAM_INPUTS),
    "SGDCM": _info(SGDCM, SGD_INPUTS),
    "SGDCG": _info(SGDCG, SGD_INPUTS),
    "SAM(AdamCM)": _info(SAMAdamCM, ADAM_INPUTS, closure=True),
    "MEG(AdamCM)": _info(MEGAdamCM, ADAM_INPUTS, closure=True),
}
IMPLS = {"eager": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
CONTROLS = ("torch.Adam", "torch.SGD")
EVERY = [(name, impl) for name in INFOS for impl in IMPLS]


def is_ours(name: str) -> bool:
    return name not in CONTROLS


def configs(name: str, impl: str) -> list[dict]:
    """Every configuration of the class, with the implementation's flags."""
    inputs = INFOS[name].optim_inputs_func(device="cpu")
    if not is_ours(name):
        inputs = [i for i in inputs if i.desc in CONTROL_INPUTS]
    return [{**i.kwargs, **IMPLS[impl]} for i in inputs]


def make(name: str, params, kwargs: dict):
    return INFOS[name].optim_cls(params, **kwargs)


# ---- a deterministic problem -----------------------------------------------------------------


def make_params(dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*s, generator=g, dtype=dtype)) for s in SHAPES]


def set_grads(params, t: int, sign: float = 1.0) -> torch.Tensor:
    """A gradient that depends on the parameters (SAM and MEG see a different one at their
    second point) plus noise whose scale changes with t (the buffers replace)."""
    loss = 0.0
    for i, p in enumerate(params):
        noise = torch.randn(p.shape, generator=torch.Generator().manual_seed(7919 * t + i), dtype=p.dtype)
        scale = 1.0 + 0.9 * torch.sin(torch.tensor(0.37 * t + i))
        p.grad = sign * (torch.sin(3 * p.detach()) + 0.3 * p.detach() + scale * noise)
        loss = loss + float(p.detach().square().sum())
    return torch.tensor(loss)


def step(opt, params, t: int, sign: float = 1.0):
    """One step; SAM and MEG re-evaluate the gradient through the closure, the others ignore it."""
    set_grads(params, t, sign)
    return opt.step(lambda: set_grads(params, t, sign))


def run(opt, params, steps: range) -> None:
    for t in steps:
        step(opt, params, t)


def twins(name: str, kwargs: dict, dtype=torch.float32):
    a, b = make_params(dtype), make_params(dtype)
    return (make(name, a, kwargs), a), (make(name, b, kwargs), b)


def assert_same(a, b) -> None:
    for x, y in zip(a, b):
        assert torch.equal(x.detach(), y.detach()), (x, y)


def roundtrip(state_dict: dict) -> dict:
    """Through torch.save and a safe torch.load, as a checkpoint goes."""
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# ---- issue 25, item 1: parameters whose storage was replaced -------------------------------------


def _reassign(params, how: str, model=None) -> None:
    if how == "vector_to_parameters":
        vector_to_parameters(parameters_to_vector(params).detach().clone(), params)
    elif how == "p.data":
        for p in params:
            p.data = p.data.clone()
    else:  # a dtype round trip, as model.double().float()
        model.double().float()


@pytest.mark.parametrize("how", ["vector_to_parameters", "p.data", "double().float()"])
@pytest.mark.parametrize("name, impl", EVERY)
def test_params_keep_moving_after_their_storage_is_replaced(name, impl, how):
    kwargs = configs(name, impl)[0]
    model = torch.nn.ParameterList(make_params())
    params = list(model)
    opt = make(name, params, kwargs)
    reference = make_params()
    ref = make(name, reference, kwargs)
    run(opt, params, range(3))
    run(ref, reference, range(3))
    _reassign(params, how, model)
    before = [p.detach().clone() for p in params]
    run(opt, params, range(3, 6))
    run(ref, reference, range(3, 6))
    assert all(not torch.equal(p, b) for p, b in zip(params, before))
    assert_same(params, reference)


def test_the_issue_reproducer_moves_the_parameter():
    w = torch.nn.Parameter(torch.ones(3))
    opt = AdamCM([w], lr=0.1)
    for _ in range(3):
        w.grad = torch.ones(3)
        opt.step()
    vector_to_parameters(parameters_to_vector([w]).detach().clone(), [w])
    before = w.detach().clone()
    w.grad = torch.ones(3)
    opt.step()
    assert not torch.equal(w, before)


# ---- issue 25, item 2: opt.state is the truth -------------------------------------------------------


@pytest.mark.parametrize("how", ["clear", "assign", "del"])
@pytest.mark.parametrize("name, impl", EVERY)
def test_reset_state_is_initialised_again(name, impl, how):
    # After the reset the optimizer steps as one that loaded a state dict without
    # those entries: torch re-initialises a parameter without state.
    if (name, impl, how) == ("torch.SGD", "fused", "del"):
        pytest.skip("torch's fused SGD cannot step a group where only some parameters have a momentum buffer")
    for kwargs in configs(name, impl):
        (opt, params), (ref, reference) = twins(name, kwargs)
        run(opt, params, range(3))
        run(ref, reference, range(3))
        saved = ref.state_dict()
        if how == "clear":
            opt.state.clear()
            saved["state"] = {}
        elif how == "assign":
            opt.state = defaultdict(dict)
            saved["state"] = {}
        else:
            opt.state.pop(params[0], None)  # torch's SGD without momentum keeps no state
            saved["state"].pop(0, None)
        ref.load_state_dict(saved)
        run(opt, params, range(3, 6))
        run(ref, reference, range(3, 6))
        assert_same(params, reference)
        assert len(opt.state) == len(ref.state)


@pytest.mark.parametrize("name, impl", EVERY)
def test_a_replaced_state_tensor_is_what_the_next_step_uses(name, impl):
    replaced = 0
    for kwargs in configs(name, impl):
        (opt, params), (ref, reference) = twins(name, kwargs)
        run(opt, params, range(4))
        run(ref, reference, range(4))
        tensors = [k for k, v in opt.state[params[1]].items() if k != "step" and isinstance(v, torch.Tensor)]
        if not tensors:  # torch's SGD without momentum keeps no state
            continue
        entry, replaced = tensors[0], replaced + 1
        replacement = opt.state[params[1]][entry] * 0.5 + 0.25
        opt.state[params[1]][entry] = replacement
        saved = ref.state_dict()
        saved["state"][1][entry] = replacement.clone()
        ref.load_state_dict(saved)
        run(opt, params, range(4, 7))
        run(ref, reference, range(4, 7))
        assert_same(params, reference)
    assert replaced


# ---- issue 25, item 3: complex parameters ---------------------------------------------------------


@pytest.mark.parametrize("name, impl", EVERY)
def test_a_complex_parameter_steps_like_its_real_view(name, impl):
    for kwargs in configs(name, impl):
        g = torch.Generator().manual_seed(3)
        values = [torch.randn(*s, dtype=torch.complex64, generator=g) for s in SHAPES]
        complex_params = [torch.nn.Parameter(v.clone()) for v in values]
        real_params = [torch.nn.Parameter(torch.view_as_real(v).clone()) for v in values]
        if impl == "fused":  # torch.optim.Adam(fused=True) refuses complex parameters; so do we, in one line
            with pytest.raises((ValueError, RuntimeError)) as refused:
                opt = make(name, complex_params, kwargs)
                step_complex(opt, complex_params, 0)
            message = str(refused.value)
            assert "\n" not in message and ("complex" in message or "floating point" in message), message
            return
        ours, twin = make(name, complex_params, kwargs), make(name, real_params, kwargs)
        for t in range(6):
            step_complex(ours, complex_params, t)
            step_complex(twin, real_params, t)
        for c, r in zip(complex_params, real_params):
            torch.testing.assert_close(torch.view_as_real(c.detach()), r.detach(), rtol=1e-6, atol=1e-6)
        assert not torch.equal(complex_params[0].detach(), values[0])


def step_complex(opt, params, t: int) -> None:
    def closure():
        for i, p in enumerate(params):
            shape = p.shape if not p.is_complex() else (*p.shape, 2)
            noise = torch.randn(shape, generator=torch.Generator().manual_seed(31 * t + i))
            p.grad = torch.view_as_complex(noise) if p.is_complex() else noise
        return torch.tensor(0.0)

    closure()
    opt.step(closure)


# ---- issue 25, item 4: copies, pickles, saves --------------------------------------------------------


@pytest.mark.parametrize("name, impl", EVERY)
@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_optimizer_steps_like_the_original(name, impl, how):
    kwargs = configs(name, impl)[0]
    params = make_params()
    opt = make(name, params, kwargs)
    run(opt, params, range(3))
    copied = copy.deepcopy(opt) if how == "deepcopy" else pickle.loads(pickle.dumps(opt))
    copied_params = [p for group in copied.param_groups for p in group["params"]]
    assert all(c is not p for c, p in zip(copied_params, params))
    run(opt, params, range(3, 6))
    run(copied, copied_params, range(3, 6))
    assert_same(params, copied_params)


@pytest.mark.parametrize("name, impl", EVERY)
def test_state_dict_round_trip_resumes_bitwise(name, impl):
    for kwargs in configs(name, impl):
        (opt, params), (ref, reference) = twins(name, kwargs)
        run(opt, params, range(6))
        run(ref, reference, range(3))
        resumed = make(name, reference, kwargs)
        resumed.load_state_dict(roundtrip(ref.state_dict()))
        run(resumed, reference, range(3, 6))
        assert_same(params, reference)


# ---- issue 25, item 5: a step without gradients ------------------------------------------------------


@pytest.mark.parametrize("name, impl", EVERY)
def test_a_step_without_gradients_is_a_no_op(name, impl):
    for kwargs in configs(name, impl):
        params = make_params()
        before = [p.detach().clone() for p in params]
        opt = make(name, params, kwargs)
        assert float(opt.step(lambda: torch.tensor(1.0))) == 1.0
        assert_same(params, before)
        # and a step where only some parameters have one leaves the others alone
        run(opt, params, range(2))
        params[0].grad = None
        kept = params[0].detach().clone()
        opt.step(lambda: torch.tensor(1.0))
        assert torch.equal(params[0].detach(), kept)


# ---- issue 25, item 6: hooks and load_state_dict -------------------------------------------------------


@pytest.mark.parametrize("name, impl", EVERY)
def test_load_state_dict_hooks_see_and_shape_the_load(name, impl):
    kwargs = configs(name, impl)[0]
    (opt, params), (fresh, _) = twins(name, kwargs)
    run(opt, params, range(3))
    saved = opt.state_dict()
    seen = []

    def pre(optimizer, state_dict):
        state_dict = copy.deepcopy(state_dict)
        state_dict["param_groups"][0]["lr"] = 0.123
        return state_dict

    fresh.register_load_state_dict_pre_hook(pre)
    fresh.register_load_state_dict_post_hook(lambda optimizer: seen.append(len(optimizer.state)))
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["lr"] == 0.123  # the pre hook's returned dict was loaded
    assert seen == [len(opt.state)]  # the post hook ran after the state was in place


@pytest.mark.parametrize("name, impl", EVERY)
def test_state_dict_hooks_run_and_the_post_hook_result_is_returned(name, impl):
    kwargs = configs(name, impl)[0]
    params = make_params()
    opt = make(name, params, kwargs)
    run(opt, params, range(2))
    calls = []
    opt.register_state_dict_pre_hook(lambda optimizer: calls.append("pre"))

    def post(optimizer, state_dict):
        calls.append("post")
        return {**state_dict, "note": 7}

    opt.register_state_dict_post_hook(post)
    assert opt.state_dict()["note"] == 7
    assert calls == ["pre", "post"]


@pytest.mark.parametrize("name, impl", EVERY)
def test_a_non_parameter_state_key_is_loaded_and_saved(name, impl):
    kwargs = configs(name, impl)[0]
    (opt, params), (fresh, fresh_params) = twins(name, kwargs)
    run(opt, params, range(2))
    saved = opt.state_dict()
    saved["state"]["note"] = torch.tensor(3.0)
    fresh.load_state_dict(saved)
    assert torch.equal(fresh.state["note"], torch.tensor(3.0))
    assert torch.equal(fresh.state_dict()["state"]["note"], torch.tensor(3.0))
    run(fresh, fresh_params, range(2, 4))


@pytest.mark.parametrize("name, impl", EVERY)
def test_a_python_number_step_loads(name, impl):
    kwargs = configs(name, impl)[0]
    (opt, params), (ref, reference) = twins(name, kwargs)
    run(opt, params, range(3))
    run(ref, reference, range(3))
    saved = opt.state_dict()
    for state in saved["state"].values():
        if "step" in state:
            state["step"] = float(state["step"])
    resumed = make(name, params, kwargs)
    resumed.load_state_dict(saved)
    run(resumed, params, range(3, 5))
    run(ref, reference, range(3, 5))
    assert_same(params, reference)


@pytest.mark.parametrize("name, impl", EVERY)
def test_step_hooks_fire_once_per_step(name, impl):
    kwargs = configs(name, impl)[0]
    params = make_params()
    opt = make(name, params, kwargs)
    calls = []
    handles = [
        register_optimizer_step_pre_hook(lambda o, a, k: calls.append("global pre")),
        register_optimizer_step_post_hook(lambda o, a, k: calls.append("global post")),
        opt.register_step_pre_hook(lambda o, a, k: calls.append("pre")),
        opt.register_step_post_hook(lambda o, a, k: calls.append("post")),
    ]
    try:
        run(opt, params, range(2))
    finally:
        for handle in handles:
            handle.remove()
    assert sorted(calls) == sorted(["global pre", "pre", "post", "global post"] * 2)


# ---- the rest of torch.optim.Optimizer's contract ------------------------------------------------------------


@pytest.mark.parametrize("name, impl", EVERY)
def test_zero_grad_sets_to_none_or_to_zero(name, impl):
    kwargs = configs(name, impl)[0]
    params = make_params()
    opt = make(name, params, kwargs)
    run(opt, params, range(2))
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in params)
    run(opt, params, range(2, 3))
    opt.zero_grad()
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("name, impl", EVERY)
def test_add_param_group_fills_defaults_and_steps_the_new_group(name, impl):
    kwargs = configs(name, impl)[0]
    params = make_params()
    opt = make(name, params[:2], kwargs)
    run(opt, params[:2], range(2))
    opt.add_param_group({"params": [params[2]], "lr": 0.01})
    assert set(opt.param_groups[1]) == set(opt.param_groups[0])
    assert opt.param_groups[1]["lr"] == 0.01
    late = params[2].detach().clone()
    run(opt, params, range(2, 5))
    assert not torch.equal(params[2].detach(), late)


@pytest.mark.parametrize("name, impl", EVERY)
def test_defaults_hold_every_group_key(name, impl):
    kwargs = configs(name, impl)[0]
    opt = make(name, make_params(), kwargs)
    assert set(opt.param_groups[0]) - {"params"} <= set(opt.defaults)


@pytest.mark.parametrize("name, impl", EVERY)
def test_maximize_ascends_as_minimising_the_negated_gradient(name, impl):
    kwargs = {**configs(name, impl)[0], "weight_decay": 0.1}
    up, down = make_params(), make_params()
    ascending, descending = make(name, up, {**kwargs, "maximize": True}), make(name, down, kwargs)
    for t in range(5):
        step(ascending, up, t)
        step(descending, down, t, sign=-1.0)
    assert_same(up, down)


@pytest.mark.parametrize("name, impl", EVERY)
def test_zero_lr_leaves_parameters_bitwise_unchanged(name, impl):
    for kwargs in configs(name, impl):
        params = make_params()
        before = [p.detach().clone() for p in params]
        run(make(name, params, {**kwargs, "lr": 0.0}), params, range(4))
        assert_same(params, before)


@pytest.mark.parametrize("name, impl", EVERY)
def test_a_tensor_lr_steps_like_the_number_or_is_refused_in_one_line(name, impl):
    # torch.optim.Adam refuses a tensor lr with foreach=True and capturable=False; cmrepro accepts it everywhere.
    kwargs = configs(name, impl)[0]
    (opt, params), _ = twins(name, {**kwargs, "lr": 0.01})
    reference = make_params()
    try:
        with_tensor = make(name, reference, {**kwargs, "lr": torch.tensor(0.01)})
    except ValueError as error:
        assert not is_ours(name) and "\n" not in str(error)
        return
    run(opt, params, range(4))
    run(with_tensor, reference, range(4))
    for a, b in zip(params, reference):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name, impl", EVERY)
def test_capturable_and_differentiable_false_are_accepted(name, impl):
    kwargs = configs(name, impl)[0]
    (opt, params), (ref, reference) = twins(name, kwargs)
    flags = {"capturable": False, "differentiable": False}
    if not is_ours(name) and "capturable" not in inspect.signature(INFOS[name].optim_cls).parameters:
        del flags["capturable"]  # torch's SGD has no capturable argument
    flagged = make(name, reference, {**kwargs, **flags})
    run(opt, params, range(3))
    run(flagged, reference, range(3))
    assert_same(params, reference)


@pytest.mark.parametrize("name", ["torch.Adam", "torch.SGD", "AdamCM", "AdamCG", "SGDCM", "SGDCG"])
def test_step_compiles_with_the_eager_backend(name):
    # SAM and MEG steps call a closure, which torch.compile would trace along; not checked here.
    torch._dynamo.reset()
    kwargs = configs(name, "foreach")[0]
    (opt, params), (ref, reference) = twins(name, kwargs)
    compiled = torch.compile(opt.step, backend="eager")
    for t in range(3):
        set_grads(params, t)
        compiled()
        set_grads(reference, t)
        ref.step()
    for a, b in zip(params, reference):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-6, atol=1e-7)


# ---- cmrepro's own side of the flags ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in INFOS if is_ours(n)])
def test_foreach_none_takes_the_multi_tensor_path(name, monkeypatch):
    import cmrepro.optim._base as base

    per_parameter = []
    original = base.CriticalOptimizer._step_param
    monkeypatch.setattr(
        base.CriticalOptimizer, "_step_param", lambda self, *a, **k: per_parameter.append(1) or original(self, *a, **k)
    )
    params = make_params()
    opt = make(name, params, {"foreach": None})
    run(opt, params, range(3))
    assert not per_parameter


@pytest.mark.parametrize("cls", [AdamCM, AdamCG, SGDCM, SGDCG])
def test_differentiable_true_is_refused_in_one_line(cls):
    # docs/optimizers.md, differences from torch.optim: the buffer's insertion is a comparison.
    with pytest.raises(ValueError, match=r"^invalid differentiable: True for \w+ \(must be False: .*\)$"):
        cls(make_params(), differentiable=True)


@pytest.mark.parametrize("cls", [AdamCM, AdamCG])
def test_an_unknown_keyword_names_the_public_class(cls):
    with pytest.raises(
        TypeError, match=rf"^{cls.__name__}\.__init__\(\) got an unexpected keyword argument 'amsgrad'$"
    ):
        cls(make_params(), amsgrad=True)
