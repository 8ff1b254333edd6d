"""cmrepro's optimizers against the per-parameter oracle, and the two paths against each other."""

from __future__ import annotations

import copy

import pytest
import torch
from helpers import make_params, set_grads
from oracle import Oracle
from trajectories import HYPER, STEPS, max_gap, never, run_trajectory, skipped, split_groups

from cmrepro.optim import SGDCG, AdamCM


def run_ours(variant, skip, **extra):
    cls, hyper = HYPER[variant]
    params = make_params()
    opt = cls([dict(params=ps, **h, **extra) for ps, h in zip(split_groups(params), hyper)])
    return run_trajectory(opt.step, params, skip), opt


def run_oracle(variant, skip):
    _, hyper = HYPER[variant]
    params = make_params()
    oracle = Oracle(variant, [dict(params=ps, **h) for ps, h in zip(split_groups(params), hyper)])
    return run_trajectory(oracle.step, params, skip), oracle


@pytest.mark.parametrize("variant", sorted(HYPER))
@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("skip", [never, skipped], ids=["all-grads", "some-grads-none"])
def test_matches_oracle(variant, foreach, skip, mode):
    ours, opt = run_ours(variant, skip, foreach=foreach)
    reference, oracle = run_oracle(variant, skip)
    # The buffers must have filled and then replaced elements, or the test proves little.
    assert oracle.replacements() > 20
    assert max_gap(ours, reference) < 1e-10
    # Parameters actually moved far beyond the tolerance.
    assert float((ours[-1] - ours[0]).abs().max()) > 1e-2


@pytest.mark.parametrize("variant", sorted(HYPER))
def test_foreach_and_single_tensor_paths_agree_in_float32(variant, mode):
    cls, hyper = HYPER[variant]
    trajectories = []
    for foreach in (True, False):
        params = make_params(dtype=torch.float32)
        opt = cls([dict(params=ps, **h, foreach=foreach) for ps, h in zip(split_groups(params), hyper)])
        trajectories.append(run_trajectory(opt.step, params, never))
    assert max_gap(*trajectories) < 1e-5


def test_flat_path_is_used_in_lockstep_and_left_when_a_grad_is_missing():
    _, opt = run_ours("adam_cm", skipped, foreach=True)
    buckets = [b for g in opt.param_groups for b in opt._group_buckets(g).values()]
    assert [b.lockstep for b in buckets] == [True, False]


def test_sgd_cg_skips_key_decay_when_decay_is_zero():
    params = make_params(shapes=[(3,)])
    opt = SGDCG(params, lr=0.01, decay=0.0, topC=2)
    set_grads(params, 0)
    opt.step()
    keys = opt.state[params[0]]["keys"].clone()
    assert keys[0] > 0 and torch.equal(keys, opt.state[params[0]]["keys"])
    # Adam+CM multiplies by zero instead: keys vanish.
    params = make_params(shapes=[(3,)])
    opt = AdamCM(params, decay=0.0)
    set_grads(params, 0)
    opt.step()
    assert float(opt.state[params[0]]["keys"].abs().max()) == 0.0


# Many groups with equal hyperparameters: stepped as one fused bucket whose
# rows decide separately; each group keeps its own key (sum of its own norms).
FUSED_SHAPES = [(3, 2), (4,)] * 6


def _fused_run(variant, skip, with_diagnostics=False):
    cls, hyper = HYPER[variant]
    params = make_params(shapes=FUSED_SHAPES)
    groups = [dict(params=params[i : i + 2], **hyper[0]) for i in range(0, len(params), 2)]
    opt = cls(groups)
    trajectory = []
    for t in range(STEPS):
        set_grads(params, t, skip=skip(t))
        opt.step()
        if with_diagnostics and t % 50 == 7:
            opt.diagnostics()  # unpacks the fused bucket; the next step packs it again
        trajectory.append(torch.cat([p.detach().reshape(-1) for p in params]).clone())
    return trajectory, opt


def _fused_oracle(variant, skip):
    _, hyper = HYPER[variant]
    params = make_params(shapes=FUSED_SHAPES)
    oracle = Oracle(variant, [dict(params=params[i : i + 2], **hyper[0]) for i in range(0, len(params), 2)])
    return run_trajectory(oracle.step, params, skip)


def _late_and_skipping(t: int) -> set[int]:
    return {5} if t < 3 or t % 7 == 0 else set()


@pytest.mark.parametrize("variant", sorted(HYPER))
@pytest.mark.parametrize("skip", [never, _late_and_skipping], ids=["all-grads", "some-grads-none"])
def test_fused_param_groups_match_the_oracle(variant, skip, mode):
    ours, opt = _fused_run(variant, skip, with_diagnostics=True)
    assert max_gap(ours, _fused_oracle(variant, skip)) < 1e-10
    buckets = {id(b): b for g in opt.param_groups for b in opt._group_buckets(g).values()}
    if skip is never:
        assert len(buckets) == 1 and next(iter(buckets.values())).fused is not None


def test_fused_groups_resume_bitwise():
    cls, hyper = HYPER["adam_cm"]

    def build(params):
        return cls([dict(params=params[i : i + 2], **hyper[0]) for i in range(0, len(params), 2)])

    straight = make_params(shapes=FUSED_SHAPES, dtype=torch.float32)
    opt = build(straight)
    for t in range(30):
        set_grads(straight, t)
        opt.step()
    resumed = make_params(shapes=FUSED_SHAPES, dtype=torch.float32)
    opt = build(resumed)
    for t in range(15):
        set_grads(resumed, t)
        opt.step()
    state = copy.deepcopy(opt.state_dict())
    opt = build(resumed)
    opt.load_state_dict(state)
    for t in range(15, 30):
        set_grads(resumed, t)
        opt.step()
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b)


def test_large_groups_are_not_fused():
    params = [torch.zeros(300, 300, requires_grad=True) for _ in range(2)]
    opt = AdamCM([dict(params=[p]) for p in params])
    for t in range(3):
        set_grads(params, t)
        opt.step()
    assert all(b.fused is None for g in opt.param_groups for b in opt._group_buckets(g).values())


def _run_on_cuda(variant, skip, foreach):
    """``run_ours`` with the parameters and optimizer on CUDA; gradients from the same CPU formula."""
    cls, hyper = HYPER[variant]
    params = [p.detach().cuda().requires_grad_() for p in make_params()]
    opt = cls([dict(params=ps, **h, foreach=foreach) for ps, h in zip(split_groups(params), hyper)])
    trajectory = []
    for t in range(STEPS):
        on_cpu = [p.detach().cpu() for p in params]
        set_grads(on_cpu, t, skip=skip(t))
        for p, mirror in zip(params, on_cpu):
            p.grad = None if mirror.grad is None else mirror.grad.cuda()
        opt.step()
        trajectory.append(torch.cat([p.detach().reshape(-1) for p in params]).cpu())
    return trajectory


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("variant", sorted(HYPER))
@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("skip", [never, skipped], ids=["all-grads", "some-grads-none"])
def test_matches_the_oracle_on_cuda(variant, foreach, skip):
    # The accelerator path: decisions stay device tensors, buckets are not chunked.
    reference, oracle = run_oracle(variant, skip)
    assert oracle.replacements() > 20
    assert max_gap(_run_on_cuda(variant, skip, foreach), reference) < 1e-10
