"""What users touch: arguments, errors, the factory, diagnostics, dtypes and devices."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import make_params, set_grads

from cmrepro.optim import OPTIMIZER_NAMES, SAM, SGDCG, SGDCM, AdamCG, AdamCM, create_optimizer

CRITICAL = [AdamCM, AdamCG, SGDCM, SGDCG]


@pytest.mark.parametrize("cls", CRITICAL)
@pytest.mark.parametrize(
    "argument, value",
    [
        ("lr", -1e-3),
        ("lr", float("nan")),
        ("decay", 1.5),
        ("decay", -0.1),
        ("topC", 0),
        ("topC", 2.5),
        ("topC", True),
        ("weight_decay", -1.0),
    ],
)
def test_invalid_common_hyperparameters_name_the_argument(cls, argument, value):
    with pytest.raises(ValueError, match=f"invalid {argument}: {value!r}"):
        cls(make_params(), **{argument: value})


@pytest.mark.parametrize("cls", [AdamCM, AdamCG])
@pytest.mark.parametrize("betas, bad", [((1.0, 0.999), "betas\\[0\\]: 1.0"), ((0.9, -0.1), "betas\\[1\\]: -0.1")])
def test_invalid_betas(cls, betas, bad):
    with pytest.raises(ValueError, match=f"invalid {bad}"):
        cls(make_params(), betas=betas)


@pytest.mark.parametrize("cls", [AdamCM, AdamCG])
def test_invalid_eps(cls):
    with pytest.raises(ValueError, match="invalid eps: -1e-08"):
        cls(make_params(), eps=-1e-8)


def test_invalid_momentum():
    with pytest.raises(ValueError, match="invalid momentum: 1.0"):
        SGDCM(make_params(), momentum=1.0)
    with pytest.raises(ValueError, match="invalid momentum: -0.5"):
        SGDCG(make_params(), momentum=-0.5)


def test_invalid_value_in_a_param_group_is_caught():
    params = make_params()
    with pytest.raises(ValueError, match="invalid lr: -0.1"):
        AdamCM([dict(params=params[:2]), dict(params=params[2:], lr=-0.1)])
    opt = AdamCM(params[:2])
    with pytest.raises(ValueError, match="invalid topC: 0"):
        opt.add_param_group(dict(params=params[2:], topC=0))


@pytest.mark.parametrize("rho", [0.0, -0.05])
def test_invalid_rho(rho):
    with pytest.raises(ValueError, match=f"invalid rho: {rho!r}"):
        SAM(make_params(), AdamCM, rho=rho)


@pytest.mark.parametrize("cls", CRITICAL)
def test_sparse_gradients_are_refused(cls):
    p = torch.zeros(4, 3, requires_grad=True)
    p.grad = torch.eye(4, 3).to_sparse()
    with pytest.raises(ValueError, match="invalid grad: sparse gradients"):
        cls([p]).step()


def test_sam_without_closure_is_a_clear_error():
    opt = SAM(make_params(), AdamCM)
    with pytest.raises(ValueError, match="SAM.step\\(\\) needs a closure"):
        opt.step()


def test_factory_builds_every_name_and_refuses_unknown_ones():
    expected = {
        "adam": torch.optim.Adam,
        "adam_cm": AdamCM,
        "adam_cg": AdamCG,
        "sgd_cm": SGDCM,
        "sgd_cg": SGDCG,
    }
    for name, cls in expected.items():
        assert type(create_optimizer(name, make_params(), lr=0.01)) is cls
    sam_cm = create_optimizer("adam_sam_cm", make_params(), lr=0.01, rho=0.1, topC=5)
    assert isinstance(sam_cm, SAM) and isinstance(sam_cm.base_optimizer, AdamCM)
    assert sam_cm.param_groups[0]["rho"] == 0.1 and sam_cm.param_groups[0]["topC"] == 5
    assert isinstance(create_optimizer("adam_sam", make_params()).base_optimizer, torch.optim.Adam)
    assert {"adam_sam", "adam_sam_cm", "adam_sam_cg", "sgd_sam_cm"} <= set(OPTIMIZER_NAMES)
    with pytest.raises(ValueError, match="unknown optimizer 'adam_xyz'; choose one of: adam, "):
        create_optimizer("adam_xyz", make_params())
    with pytest.raises(ValueError, match="invalid rho for 'adam_cm'"):
        create_optimizer("adam_cm", make_params(), rho=0.05)


@pytest.mark.parametrize("name", ["adam_cm", "adam_cg", "sgd_cm", "sgd_cg", "adam_sam_cm"])
def test_loss_decreases_on_a_small_regression(name):
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = x @ torch.randn(8, 1) + 0.1 * torch.randn(64, 1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    lr = 0.01 if "adam" in name else 0.05
    opt = create_optimizer(name, model.parameters(), lr=lr)

    def loss_fn():
        return torch.nn.functional.mse_loss(model(x), y)

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    start = float(loss_fn().detach())
    for _ in range(300):
        closure()
        opt.step(closure) if isinstance(opt, SAM) else opt.step()
    assert float(loss_fn().detach()) < 0.25 * start


def test_non_contiguous_parameters_take_the_per_parameter_path_and_agree():
    base = make_params(shapes=[(4, 6), (3,)])
    weird = torch.empty(6, 4, dtype=torch.float64).t()  # non-contiguous (4, 6) storage
    weird.copy_(base[0].detach())
    weird.requires_grad_()
    plain = [base[0].detach().clone().requires_grad_(), base[1].detach().clone().requires_grad_()]
    odd = [weird, base[1].detach().clone().requires_grad_()]
    a, b = AdamCM(plain, lr=0.01, topC=2), AdamCM(odd, lr=0.01, topC=2)
    for t in range(20):
        set_grads(plain, t)
        set_grads(odd, t)
        a.step()
        b.step()
    assert not odd[0].is_contiguous()
    for x, y in zip(plain, odd):
        assert torch.allclose(x, y, atol=1e-12, rtol=0)


def test_buffer_dtype_stores_bfloat16_and_stays_close():
    runs = {}
    for dtype in (None, torch.bfloat16):
        params = make_params(dtype=torch.float32)
        opt = AdamCM(params, lr=0.01, topC=3, buffer_dtype=dtype)
        for t in range(30):
            set_grads(params, t)
            opt.step()
        runs[dtype] = params
        assert opt.state[params[0]]["buffer"].dtype == (dtype or torch.float32)
        assert opt.state[params[0]]["exp_avg"].dtype == torch.float32
    gap = max(float((a - b).detach().abs().max()) for a, b in zip(runs[None], runs[torch.bfloat16]))
    assert 0 < gap < 5e-2


def _manual_statistics(opt, params):
    """Figure-8 statistics straight from their definitions, over the stored slots."""
    n = int(opt.state[params[0]]["count"])
    elements = torch.stack([torch.cat([opt.state[p]["buffer"][i].reshape(-1) for p in params]) for i in range(n)])
    variance = elements.var(dim=0, unbiased=False).mean()
    lead = int(elements.norm(dim=1).argmax())
    cosines = [torch.nn.functional.cosine_similarity(elements[lead], elements[j], dim=0) for j in range(n) if j != lead]
    return float(variance), float(torch.stack(cosines).mean())


@pytest.mark.parametrize("cls", CRITICAL)
def test_diagnostics_match_their_definitions(cls, mode):
    params = make_params()
    opt = cls(params, lr=0.01, topC=4)
    assert opt.diagnostics() == {}
    for t in range(3):
        set_grads(params, t)
        opt.step()
    stats = opt.diagnostics()
    variance, cosine = _manual_statistics(opt, params)
    assert float(stats["buffer_variance"]) == pytest.approx(variance, rel=1e-9)
    assert float(stats["buffer_cosine"]) == pytest.approx(cosine, rel=1e-9, abs=1e-12)
    assert float(stats["buffer_size"]) == 3 and float(stats["insertions"]) == 3
    for t in range(3, 40):
        set_grads(params, t)
        opt.step()
    stats = opt.diagnostics()
    assert float(stats["buffer_size"]) == 4
    assert 0 < float(stats["insertions"]) <= 37  # inserted on some of the 37 steps, read then reset
    assert float(opt.diagnostics()["insertions"]) == 0
    variance, cosine = _manual_statistics(opt, params)
    assert float(stats["buffer_variance"]) == pytest.approx(variance, rel=1e-9)
    assert all(v.device == params[0].device for v in stats.values())


def test_diagnostics_with_one_element_report_nan_cosine():
    params = make_params()
    opt = AdamCM(params)
    set_grads(params, 0)
    opt.step()
    stats = opt.diagnostics()
    assert float(stats["buffer_variance"]) == 0 and math.isnan(float(stats["buffer_cosine"]))
    assert SAM(make_params(), torch.optim.Adam).diagnostics() == {}


@pytest.mark.parametrize("cls", CRITICAL)
def test_step_reads_no_tensor_on_the_host(cls):
    """On the meta device every value read (.item(), bool(), Python comparison) raises."""
    params = [torch.empty(3, 4, device="meta", requires_grad=True), torch.empty(5, device="meta", requires_grad=True)]
    opt = cls(params, weight_decay=0.1, topC=2)
    for _ in range(4):
        for p in params:
            p.grad = torch.empty_like(p)
        opt.step()
    assert opt.state[params[0]]["buffer"].device.type == "meta"


def _cuda_grads(t: int) -> list[torch.Tensor]:
    cpu = make_params(dtype=torch.float32)
    set_grads(cpu, t)
    return [p.grad.cuda() for p in cpu]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("cls", CRITICAL)
def test_cuda_step_does_not_synchronise_and_replays_from_a_graph(cls):
    runs = []
    for graphed in (False, True):
        params = [p.detach().cuda().requires_grad_() for p in make_params(dtype=torch.float32)]
        opt = cls(params, lr=0.01, topC=3, weight_decay=0.1)
        static = [torch.zeros_like(p) for p in params]
        for p, g in zip(params, static):
            p.grad = g
        step = opt.step
        for t in range(20):
            for g, new in zip(static, _cuda_grads(t)):
                g.copy_(new)
            if graphed and t == 3:  # state exists after the warm-up steps: capture
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    opt.step()
                step = graph.replay
            torch.cuda.set_sync_debug_mode("error")  # a synchronising call inside step() raises
            try:
                step()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        runs.append([p.detach().cpu() for p in params])
    for a, b in zip(*runs):
        assert torch.allclose(a, b, atol=1e-6)
