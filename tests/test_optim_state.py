"""Resuming: state_dict round trips, schedulers, late param groups, copies, devices."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from helpers import make_params, set_grads
from oracle import Oracle

from cmrepro.optim import SAM, SGDCG, SGDCM, AdamCG, AdamCM

BUILDERS = {
    "adam_cm": lambda ps: AdamCM(ps, lr=0.01, weight_decay=0.05, topC=3),
    "adam_cg": lambda ps: AdamCG(ps, lr=0.01, weight_decay=0.05, topC=3),
    "sgd_cg": lambda ps: SGDCG(ps, lr=0.01, momentum=0.9, weight_decay=0.05, topC=3),
    "sgd_cm": lambda ps: SGDCM(ps, lr=0.01, weight_decay=0.05, topC=3),
    "adam_cm_bf16": lambda ps: AdamCM(ps, lr=0.01, topC=3, buffer_dtype=torch.bfloat16),
    "adam_cm_single": lambda ps: AdamCM(ps, lr=0.01, topC=3, foreach=False),
    "sam_adam_cm": lambda ps: SAM(ps, AdamCM, rho=0.05, lr=0.01, topC=3),
}


def _step(opt, params, t, skip=()):
    set_grads(params, t, skip=skip)
    if isinstance(opt, SAM):
        opt.step(lambda: set_grads(params, t + 1000, skip=skip))
    else:
        opt.step()


def _skip(t):
    return {4} if t % 4 == 1 else set()


def _save_and_load(opt, build, params):
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    fresh = build(params)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    return fresh


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_resume_is_bitwise_identical(name, mode):
    build = BUILDERS[name]
    straight = make_params(dtype=torch.float32)
    opt = build(straight)
    for t in range(24):
        _step(opt, straight, t, _skip(t))

    resumed = make_params(dtype=torch.float32)
    opt = build(resumed)
    for t in range(12):
        _step(opt, resumed, t, _skip(t))
    opt = _save_and_load(opt, build, resumed)
    for t in range(12, 24):
        _step(opt, resumed, t, _skip(t))

    for a, b in zip(straight, resumed):
        assert torch.equal(a, b)


def test_state_dict_holds_every_entry_per_parameter():
    params = make_params()
    opt = AdamCM(params, topC=3)
    for t in range(5):
        _step(opt, params, t)
    state = opt.state_dict()["state"]
    assert set(state[0]) == {"step", "exp_avg", "exp_avg_sq", "buffer", "buffer_sum", "keys", "count", "insertions"}
    assert state[0]["buffer"].shape == (3, 5, 3)
    assert state[0]["count"].dtype == torch.int64 and int(state[0]["count"]) == 3
    assert float(state[0]["step"]) == 5


def test_loaded_state_keeps_its_dtypes_and_lockstep():
    params = make_params(dtype=torch.float32)
    opt = AdamCM(params, topC=3, buffer_dtype=torch.bfloat16)
    for t in range(5):
        _step(opt, params, t)
    fresh = _save_and_load(opt, lambda ps: AdamCM(ps, topC=3, buffer_dtype=torch.bfloat16), params)
    s = fresh.state[params[0]]
    assert s["buffer"].dtype == torch.bfloat16 and s["keys"].dtype == torch.float32
    assert s["count"].dtype == torch.int64
    buckets = list(fresh._group_buckets(fresh.param_groups[0]).values())
    assert len(buckets) == 1 and buckets[0].lockstep


def test_loading_a_foreign_state_dict_is_a_clear_error():
    params = make_params()
    adam = torch.optim.Adam(params)
    set_grads(params, 0)
    adam.step()
    with pytest.raises(ValueError, match="not from a AdamCM"):
        AdamCM(params).load_state_dict(adam.state_dict())


def test_deepcopy_steps_in_lockstep_with_the_original():
    params = make_params()
    opt = AdamCM(params, topC=3)
    for t in range(6):
        _step(opt, params, t)
    twin_params = [p.detach().clone().requires_grad_() for p in params]
    twin = AdamCM(twin_params, topC=3)
    twin.load_state_dict(copy.deepcopy(opt.state_dict()))
    copied = copy.deepcopy(opt)  # the optimizer object itself, with its own parameters
    for t in range(6, 12):
        _step(opt, params, t)
        _step(twin, twin_params, t)
    for a, b in zip(params, twin_params):
        assert torch.equal(a, b)
    assert copied.state  # a deep copy keeps a usable state
    copied_params = copied.param_groups[0]["params"]
    for t in range(6, 12):
        _step(copied, copied_params, t)
    for a, b in zip(params, copied_params):
        assert torch.equal(a, b)


def test_lr_scheduler_drives_the_learning_rate():
    params = make_params()
    opt = AdamCM(params, lr=0.1, topC=3)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[5], gamma=0.1)
    oracle_params = make_params()
    group = dict(params=oracle_params, lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decay=0.7, topC=3)
    oracle = Oracle("adam_cm", [group])
    for t in range(10):
        _step(opt, params, t)
        scheduler.step()
        set_grads(oracle_params, t)
        oracle.step()
        group["lr"] = 0.1 if t + 1 < 5 else 0.01
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)
    for a, b in zip(params, oracle_params):
        assert float((a - b).detach().abs().max()) < 1e-12


def test_param_group_added_later_matches_the_oracle(mode):
    params = make_params()
    late = params[3:]
    opt = AdamCM(params[:3], lr=0.01, topC=3)
    oracle_params = make_params()
    hyper = dict(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decay=0.7, topC=3)
    oracle = Oracle("adam_cm", [dict(params=oracle_params[:3], lr=0.01, **hyper)])
    for t in range(30):
        if t == 10:
            opt.add_param_group(dict(params=late, lr=0.05, topC=2))
            oracle.groups.append(dict(params=oracle_params[3:], lr=0.05, **{**hyper, "topC": 2}))
        skip = set() if t >= 10 else {3, 4}
        set_grads(params, t, skip=skip)
        opt.step()
        set_grads(oracle_params, t, skip=skip)
        oracle.step()
    for a, b in zip(params, oracle_params):
        assert float((a - b).detach().abs().max()) < 1e-10
    assert opt.state_dict()["param_groups"][1]["topC"] == 2


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_state_saved_on_cpu_loads_on_cuda_and_back():
    cpu = make_params(dtype=torch.float32)
    opt = AdamCM(cpu, topC=3)
    for t in range(6):
        _step(opt, cpu, t)
    gpu = [p.detach().cuda().requires_grad_() for p in cpu]
    on_gpu = AdamCM(gpu, topC=3)
    on_gpu.load_state_dict(opt.state_dict())
    assert on_gpu.state[gpu[0]]["buffer"].is_cuda and on_gpu.state[gpu[0]]["step"].is_cuda
    back = AdamCM(cpu, topC=3)
    back.load_state_dict(on_gpu.state_dict())
    for name, value in opt.state[cpu[0]].items():
        assert torch.equal(value, back.state[cpu[0]][name]), name


@pytest.mark.parametrize("foreach", [True, False])
def test_running_sums_are_recomputed_from_the_stored_elements(foreach, monkeypatch):
    import cmrepro.optim._state as state_module

    monkeypatch.setattr(state_module, "RESYNC_EVERY", 4)
    params = make_params(dtype=torch.float32)
    opt = AdamCM(params, topC=3, foreach=foreach)
    for t in range(8):
        _step(opt, params, t)
    for p in params:
        s = opt.state[p]
        assert torch.equal(s["buffer_sum"], s["buffer"].sum(dim=0))
