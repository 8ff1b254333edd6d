"""The fused step (fused=True): exact against the oracle, flat gradients, compile once, resume.

Compiling is the slow part (about 10 s per compiled variant on the 2-core
development machine, plus a one-time start of the compiler): every test here
uses the shapes and dtypes of tests/helpers.py, so the compiled rules, cached
for the whole process in cmrepro.optim.fused, are shared between tests. The
variants compiled are the four rules (and SGD+CG without momentum) in float64
and float32, Adam+CM with a bf16 buffer, and Adam+CM with device decisions.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch
from helpers import make_params, set_grads
from oracle import Oracle
from trajectories import HYPER, max_gap, never, run_trajectory, skipped, split_groups

import cmrepro.optim._base as base_module
import cmrepro.optim.buffer as buffer_module
from cmrepro.optim import SGDCG, SGDCM, AdamCG, AdamCM, fused
from cmrepro.optim.flat_grads import flat_storage

STEPS = 200


@pytest.fixture
def fused_calls(monkeypatch):
    """Counts the fused kernels run, so a test can tell that the fused path was taken."""
    calls = []

    def counting(*args):
        calls.append(args[0].name)
        return fused.fused_step(*args)

    monkeypatch.setattr(base_module, "fused_step", counting)
    return calls


def build(variant, params, **extra):
    cls, hyper = HYPER[variant]
    return cls([dict(params=ps, **h, **extra) for ps, h in zip(split_groups(params), hyper)])


def run_fused(variant, skip, dtype=torch.float64, **extra):
    params = make_params(dtype=dtype)
    opt = build(variant, params, fused=True, **extra)
    return run_trajectory(opt.step, params, skip), opt


def run_oracle(variant, skip, dtype=torch.float64, oracle_variant=None):
    _, hyper = HYPER[variant]
    params = make_params(dtype=dtype)
    oracle = Oracle(oracle_variant or variant, [dict(params=ps, **h) for ps, h in zip(split_groups(params), hyper)])
    return run_trajectory(oracle.step, params, skip), oracle


@pytest.mark.parametrize("variant", sorted(HYPER))
@pytest.mark.parametrize("skip", [never, skipped], ids=["all-grads", "some-grads-none"])
def test_fused_matches_the_oracle_in_float64(variant, skip, fused_calls):
    # Group 1 has weight decay, group 2 none; with some-grads-none group 2 leaves
    # lockstep and steps parameter by parameter while group 1 stays fused.
    ours, _ = run_fused(variant, skip)
    reference, oracle = run_oracle(variant, skip)
    assert oracle.replacements() > 20  # buffers filled and replaced
    assert max_gap(ours, reference) < 1e-10
    assert float((ours[-1] - ours[0]).abs().max()) > 1e-2
    expected = 2 * (STEPS - 1) if skip is never else STEPS - 1
    assert len(fused_calls) >= expected - 1


# The weight-decay form each class does not use by default, where the class offers it.
OTHER_FORM = {
    "adam_cm": ("adam_cm_coupled", False),
    "sgd_cm": ("sgd_cm_coupled", False),
    "adam_cg": ("adam_cg_decoupled", True),
    "sgd_cg": ("sgd_cg_decoupled", True),
}


@pytest.mark.parametrize("variant", sorted(HYPER))
def test_fused_honours_the_other_weight_decay_form(variant, fused_calls):
    oracle_variant, decoupled = OTHER_FORM[variant]
    if not hasattr(Oracle, "_" + oracle_variant):
        pytest.skip(f"the oracle has no {oracle_variant}")
    ours, _ = run_fused(variant, never, decoupled_weight_decay=decoupled)
    reference, _ = run_oracle(variant, never, oracle_variant=oracle_variant)
    assert max_gap(ours, reference) < 1e-10
    assert fused_calls


@pytest.mark.parametrize("variant", sorted(HYPER))
def test_fused_steps_equal_eager_steps_in_float32(variant, fused_calls):
    # Step by step from the same state: over a whole trajectory, float32 rounding
    # differences (the eager kernels use fused multiply-adds, the compiled loop does
    # not) grow through near-ties of keys; even the eager path leaves the float32
    # oracle by 2.5e-4 within 200 steps. So each fused step starts from the eager
    # optimizer's parameters and state, and must land within 1e-5 of its step.
    eager_params, fused_params = make_params(dtype=torch.float32), make_params(dtype=torch.float32)
    eager = build(variant, eager_params, fused=False)
    fused_opt = build(variant, fused_params, fused=True)
    worst = 0.0
    for t in range(60):
        with torch.no_grad():
            for a, b in zip(eager_params, fused_params):
                b.copy_(a)
        fused_opt.load_state_dict(eager.state_dict())
        for group in fused_opt.param_groups:
            group["fused"] = True
        set_grads(eager_params, t)
        set_grads(fused_params, t)
        eager.step()
        fused_opt.step()
        worst = max(worst, max(float((a - b).detach().abs().max()) for a, b in zip(eager_params, fused_params)))
        for a, b in zip(eager_params, fused_params):
            for name, value in eager.state[a].items():
                torch.testing.assert_close(fused_opt.state[b][name], value, rtol=1e-5, atol=1e-5)
    assert worst < 1e-5
    assert len(fused_calls) >= 2 * 55


def test_fused_with_device_decisions_matches_the_oracle(monkeypatch, fused_calls):
    # The accelerator variant (slot as a device index, no host read), run on CPU.
    monkeypatch.setattr(buffer_module, "READ_CPU_DECISIONS_ON_HOST", False)
    ours, _ = run_fused("adam_cm", skipped)
    reference, _ = run_oracle("adam_cm", skipped)
    assert max_gap(ours, reference) < 1e-10
    assert len(fused_calls) >= STEPS - 2
    assert any("device slot" in r.variant for r in fused.COMPILE_LOG)


def test_fused_bf16_buffer_follows_the_eager_bf16_buffer(fused_calls):
    trajectories, optimizers = [], []
    for fuse in (True, False):
        params = make_params(dtype=torch.float32)
        opt = AdamCM(params, lr=0.01, topC=3, decay=0.9, buffer_dtype=torch.bfloat16, fused=fuse)
        trajectories.append(run_trajectory(opt.step, params, never))
        optimizers.append(opt)
    assert max_gap(*trajectories) < 1e-4
    # The running sum adds the rounded (stored) values: it equals the sum of the stored elements.
    for p in optimizers[0].param_groups[0]["params"]:
        s = optimizers[0].state[p]
        assert s["buffer"].dtype == torch.bfloat16
        torch.testing.assert_close(s["buffer_sum"], s["buffer"].float().sum(dim=0), rtol=0, atol=1e-5)
    assert fused_calls


def test_learning_rate_changes_and_steps_do_not_recompile(fused_calls):
    params = make_params()
    opt = build("adam_cm", params, fused=True)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.9)
    for t in range(6):  # warm-up: every slot, so every row offset, has been written
        set_grads(params, t)
        opt.step()
    compiled = len(fused.COMPILE_LOG)
    for t in range(6, 30):
        set_grads(params, t)
        opt.step()
        scheduler.step()
    assert len(fused.COMPILE_LOG) == compiled
    assert len(fused_calls) >= 2 * 28  # both groups, every step after the first
    assert opt.param_groups[0]["lr"] < 0.001


# ---- flat gradients --------------------------------------------------------------------


def _model_steps(set_to_none: bool, fuse: bool, steps: int = 12):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)).double()
    opt = AdamCM(model.parameters(), lr=0.01, topC=3, fused=fuse)
    x = torch.randn(16, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for t in range(steps):
        opt.zero_grad(set_to_none=set_to_none)
        (model(x * (1 + 0.1 * t)) ** 2).mean().backward()
        opt.step()
    return model, opt


def _bucket(opt):
    return next(iter(opt._group_buckets(opt.param_groups[0]).values()))


def test_backward_accumulates_straight_into_the_flat_gradient():
    model, opt = _model_steps(set_to_none=False, fuse=True)
    storage = flat_storage(_bucket(opt))
    # Moved into the flat storage once, when it was made (not counted); never copied since.
    assert storage.grad_copies == 0
    for p in model.parameters():
        assert p.grad.untyped_storage().data_ptr() == storage.grads.untyped_storage().data_ptr()
        assert p.untyped_storage().data_ptr() == storage.params.untyped_storage().data_ptr()


def test_zero_grad_set_to_none_copies_and_gives_identical_results():
    kept, _ = _model_steps(set_to_none=False, fuse=True)
    dropped, opt = _model_steps(set_to_none=True, fuse=True)
    eager, _ = _model_steps(set_to_none=True, fuse=False)
    # Each step copies every gradient in (the documented cost of set_to_none=True).
    assert flat_storage(_bucket(opt)).grad_copies >= 10 * len(list(dropped.parameters()))
    for a, b, c in zip(kept.parameters(), dropped.parameters(), eager.parameters()):
        assert torch.equal(a, b)
        assert float((a - c).detach().abs().max()) < 1e-12


def test_a_replaced_parameter_is_copied_back_into_the_flat_storage(fused_calls):
    params = make_params()
    opt = build("adam_cm", params, fused=True)
    oracle_params = make_params()
    _, hyper = HYPER["adam_cm"]
    oracle = Oracle("adam_cm", [dict(params=ps, **h) for ps, h in zip(split_groups(oracle_params), hyper)])
    for t in range(20):
        if t == 10:  # as model.to(...) or a manual assignment would
            with torch.no_grad():
                params[0].data = params[0].data.clone()
        set_grads(params, t)
        opt.step()
        set_grads(oracle_params, t)
        oracle.step()
    for a, b in zip(params, oracle_params):
        assert float((a - b).detach().abs().max()) < 1e-10
    storage = flat_storage(_bucket(opt))
    assert params[0].untyped_storage().data_ptr() == storage.params.untyped_storage().data_ptr()


# ---- resuming between fused and unfused optimizers ---------------------------------------------


def _save_and_load(opt, params, fuse):
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    fresh = AdamCM(params, lr=0.01, weight_decay=0.05, topC=3)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    for group in fresh.param_groups:
        group["fused"] = fuse  # the saved flag came with the state dict, as every group value does
    return fresh


@pytest.mark.parametrize("first, then", [(True, True), (True, False), (False, True)])
def test_resume_between_fused_and_unfused_is_bitwise(first, then):
    # Reference: one optimizer that switches path at step 12 through its group flag.
    straight = make_params(dtype=torch.float32)
    opt = AdamCM(straight, lr=0.01, weight_decay=0.05, topC=3, fused=first)
    for t in range(24):
        if t == 12:
            opt.param_groups[0]["fused"] = then
        set_grads(straight, t)
        opt.step()
    resumed = make_params(dtype=torch.float32)
    opt = AdamCM(resumed, lr=0.01, weight_decay=0.05, topC=3, fused=first)
    for t in range(12):
        set_grads(resumed, t)
        opt.step()
    opt = _save_and_load(opt, resumed, then)
    for t in range(12, 24):
        set_grads(resumed, t)
        opt.step()
    for a, b in zip(straight, resumed):
        assert torch.equal(a, b)


def test_state_dict_of_a_fused_optimizer_has_the_usual_per_parameter_entries():
    params = make_params()
    opt = build("adam_cm", params, fused=True)
    for t in range(5):
        set_grads(params, t)
        opt.step()
    state = copy.deepcopy(opt.state_dict())
    assert state["state"][0]["buffer"].shape == (3, 5, 3)
    assert state["param_groups"][0]["fused"] is True


# ---- what fused=True refuses -------------------------------------------------------------


class _OwnRule(AdamCM):
    def direction(self, group, state, grad, theta, first):
        return super().direction(group, state, grad, theta, first)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda ps: AdamCM(ps, fused="yes"), "invalid fused: 'yes'"),
        (lambda ps: SGDCM(ps, fused=True, foreach=False), "fused=True with foreach=False"),
        (lambda ps: _OwnRule(ps, fused=True), "no rule in cmrepro.optim.fused_rules"),
        (lambda ps: AdamCG([torch.zeros(3, device="meta", requires_grad=True)], fused=True), r"on \['meta'\]"),
    ],
)
def test_fused_refuses_what_it_cannot_do(make, message):
    with pytest.raises(ValueError, match=message):
        make(make_params())


def test_fused_is_off_by_default_and_fused_groups_are_not_packed():
    params = make_params(shapes=[(3, 2), (4,)] * 3)
    assert SGDCG(params).param_groups[0]["fused"] is None
    opt = AdamCM([dict(params=params[i : i + 2], fused=True) for i in range(0, 6, 2)], topC=3)
    for t in range(3):
        set_grads(params, t)
        opt.step()
    assert all(b.fused is None for g in opt.param_groups for b in opt._group_buckets(g).values())


# ---- on a GPU ---------------------------------------------------------------------------------


def _cuda_params(params):
    return [p.detach().cuda().requires_grad_() for p in params]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("variant", sorted(HYPER))
def test_fused_matches_the_oracle_on_cuda(variant):
    reference, _ = run_oracle(variant, skipped)
    params = _cuda_params(make_params())
    opt = build(variant, params, fused=True)
    trajectory = []
    for t in range(STEPS):
        on_cpu = [p.detach().cpu() for p in params]
        set_grads(on_cpu, t, skip=skipped(t))
        for p, mirror in zip(params, on_cpu):
            p.grad = None if mirror.grad is None else mirror.grad.cuda()
        opt.step()
        trajectory.append(torch.cat([p.detach().reshape(-1) for p in params]).cpu())
    assert max_gap(trajectory, reference) < 1e-10
    assert any(r.variant.startswith("cuda") for r in fused.COMPILE_LOG)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_fused_step_replays_from_a_cuda_graph():
    # Gradients live in the flat storage (p.grad are views), so the graph reads them in place.
    def setup():
        params = _cuda_params(make_params(dtype=torch.float32))
        opt = AdamCM(params, lr=0.01, topC=3, fused=True)
        return params, opt

    def grads_at(params, t):
        on_cpu = [p.detach().cpu() for p in params]
        set_grads(on_cpu, t)
        with torch.no_grad():
            for p, mirror in zip(params, on_cpu):
                p.grad.copy_(mirror.grad.cuda())

    eager, eager_opt = setup()
    graphed, graphed_opt = setup()
    for params, opt in ((eager, eager_opt), (graphed, graphed_opt)):
        for t in range(4):
            on_cpu = [p.detach().cpu() for p in params]
            set_grads(on_cpu, t)
            for p, mirror in zip(params, on_cpu):
                p.grad = mirror.grad.cuda()
            opt.step()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream), torch.cuda.graph(graph):
        graphed_opt.step()
    for t in range(4, 12):
        grads_at(eager, t)
        eager_opt.step()
        grads_at(graphed, t)
        graph.replay()
    torch.cuda.synchronize()
    for a, b in zip(eager, graphed):
        assert float((a - b).abs().max()) < 1e-6


# ---- CUDA-graph replay of the fused step (issue 22, item 6): the logic, on CPU -------------------------


def test_an_lr_change_is_written_into_the_same_hyperparameter_tensor():
    # A graph captured around the step reads the hyperparameters at their address: a new
    # value must be written there, not into a new tensor.
    params = make_params()
    opt = AdamCM(params, lr=0.01, topC=3, fused=True)
    for t in range(3):
        set_grads(params, t)
        opt.step()
    hyper = _bucket(opt).fused_hyper[1]
    address = hyper.data_ptr()
    opt.param_groups[0]["lr"] = 0.02
    set_grads(params, 3)
    opt.step()
    assert _bucket(opt).fused_hyper[1] is hyper and hyper.data_ptr() == address
    assert float(hyper[0]) == 0.02


def _tensor_lr_run(change, steps=12):
    """AdamCM fused with lr 2^-6, changed to 2^-9 after step 6 by ``change(opt)``."""
    params = make_params(dtype=torch.float32)
    opt = AdamCM(params, lr=torch.tensor(2.0**-6) if change == "fill_" else 2.0**-6, topC=3, fused=True)
    for t in range(steps):
        if t == 6:
            if change == "fill_":
                opt.param_groups[0]["lr"].fill_(2.0**-9)
            else:
                opt.param_groups[0]["lr"] = 2.0**-9
        set_grads(params, t)
        opt.step()
    return params


def test_a_tensor_lr_changed_in_place_reaches_the_next_fused_step(fused_calls):
    # The tensor lr is copied into the hyperparameters on every step, so an in-place
    # change (what torch's schedulers do to a tensor lr) is read, replayed or not.
    for a, b in zip(_tensor_lr_run("fill_"), _tensor_lr_run("assign")):
        assert torch.equal(a, b)
    assert fused_calls


def test_under_capture_the_running_sums_wait_for_resync_running_sums(monkeypatch):
    import cmrepro.optim._state as state_module

    monkeypatch.setattr(state_module, "RESYNC_EVERY", 2)
    resyncs = []
    original = state_module.FlatBucket.resync
    monkeypatch.setattr(state_module.FlatBucket, "resync", lambda self: resyncs.append(1) or original(self))
    params = make_params(dtype=torch.float32)
    opt = AdamCM(params, lr=0.01, topC=3)
    for t in range(4):
        set_grads(params, t)
        opt.step()
    assert len(resyncs) == 2  # not capturing: every RESYNC_EVERY steps
    monkeypatch.setattr(state_module, "capturing", lambda device: True)
    for t in range(4, 12):
        set_grads(params, t)
        opt.step()
    assert len(resyncs) == 2  # captured bookkeeping would not replay: none is captured
    for p in params:
        opt.state[p]["buffer_sum"].add_(1.0)  # a drift that only a resync removes
    opt.resync_running_sums()
    for p in params:
        s = opt.state[p]
        assert torch.equal(s["buffer_sum"], s["buffer"].sum(dim=0))


def test_a_key_copied_to_the_host_is_a_blocking_copy():
    # A CPU bucket in a group whose first gradient is on a GPU reads its decision on the
    # host: an asynchronous copy of the key could be read before it lands.
    copies = []

    class Key:
        def to(self, device, non_blocking):
            copies.append((device.type, non_blocking))

    base_module.key_on(torch.device("cpu"), Key())
    base_module.key_on(torch.device("cuda"), Key())
    assert copies == [("cpu", False), ("cuda", True)]


# ---- CUDA-graph replay of the fused step (issue 22, item 6): on the device ------------------------------


def _replay_setup(lr):
    params = _cuda_params(make_params(dtype=torch.float32))
    opt = AdamCM(params, lr=lr, topC=3, fused=True)
    for t in range(4):
        _cuda_grads(params, t, in_place=False)
        opt.step()
    return params, opt


def _cuda_grads(params, t, in_place=True):
    on_cpu = [p.detach().cpu() for p in params]
    set_grads(on_cpu, t)
    with torch.no_grad():
        for p, mirror in zip(params, on_cpu):
            if in_place:
                p.grad.copy_(mirror.grad.cuda())
            else:
                p.grad = mirror.grad.cuda()


def _capture(opt):
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream), torch.cuda.graph(graph):
        opt.step()
    torch.cuda.current_stream().wait_stream(stream)
    return graph


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_lr_changes_reach_a_replayed_fused_step():
    # Reference: eager steps, lr 2^-6, 2^-9 from step 8, 2^-7 from step 12.
    eager, eager_opt = _replay_setup(2.0**-6)
    # A tensor lr on the device, changed in place between replays.
    graphed, graphed_opt = _replay_setup(torch.tensor(2.0**-6, device="cuda"))
    graph = _capture(graphed_opt)
    # A Python lr, changed on the group; one eager step writes it where the graph reads it.
    floated, floated_opt = _replay_setup(2.0**-6)
    float_graph = _capture(floated_opt)
    for t in range(4, 16):
        lr = 2.0**-6 if t < 8 else 2.0**-9 if t < 12 else 2.0**-7
        eager_opt.param_groups[0]["lr"] = lr
        graphed_opt.param_groups[0]["lr"].fill_(lr)
        _cuda_grads(eager, t)
        eager_opt.step()
        _cuda_grads(graphed, t)
        graph.replay()
        _cuda_grads(floated, t)
        if lr != floated_opt.param_groups[0]["lr"]:
            floated_opt.param_groups[0]["lr"] = lr
            floated_opt.step()
        else:
            float_graph.replay()
    torch.cuda.synchronize()
    for a, b, c in zip(eager, graphed, floated):
        assert float((a - b).abs().max()) < 1e-6
        assert float((a - c).abs().max()) < 1e-6


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_replays_leave_the_resync_to_resync_running_sums(monkeypatch):
    import cmrepro.optim._state as state_module

    monkeypatch.setattr(state_module, "RESYNC_EVERY", 2)
    params, opt = _replay_setup(0.01)
    resyncs = []
    original = state_module.FlatBucket.resync
    monkeypatch.setattr(state_module.FlatBucket, "resync", lambda self: resyncs.append(1) or original(self))
    graph = _capture(opt)
    assert not resyncs  # no resync was captured into the graph
    for t in range(4, 20):
        _cuda_grads(params, t)
        graph.replay()
    for p in params:
        opt.state[p]["buffer_sum"].add_(1.0)  # a drift that only a resync removes
    opt.resync_running_sums()
    torch.cuda.synchronize()
    for p in params:
        s = opt.state[p]
        torch.testing.assert_close(s["buffer_sum"], s["buffer"].sum(dim=0), rtol=0, atol=1e-6)
        assert int(s["count"]) == 3


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_group_spanning_cpu_and_cuda_steps_as_on_one_device():
    # The first gradient is on the GPU, so the key is made there and copied to the CPU
    # bucket, whose decision the host reads: the copy must have landed.
    reference = make_params()
    ref = AdamCM(reference, lr=0.01, topC=3)
    mixed = [p.detach().to("cuda" if i % 2 == 0 else "cpu").requires_grad_() for i, p in enumerate(make_params())]
    opt = AdamCM(mixed, lr=0.01, topC=3)
    for t in range(30):
        set_grads(reference, t)
        ref.step()
        on_cpu = [p.detach().cpu() for p in mixed]
        set_grads(on_cpu, t)
        for p, mirror in zip(mixed, on_cpu):
            p.grad = mirror.grad.to(p.device)
        opt.step()
    for a, b in zip(reference, mixed):
        assert float((a - b.cpu()).abs().max()) < 1e-10
