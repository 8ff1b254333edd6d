"""optimizer.weight_decay_form: each optimizer's other form against the oracle, its state, and the config switch."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from helpers import make_params, set_grads
from oracle import Oracle
from run_fixtures import write_run
from train_helpers import compose_run

from cmrepro.optim import SGDCG, SGDCM, AdamCG, AdamCM, create_optimizer
from cmrepro.optim.from_config import optimizer_arguments
from cmrepro.optim.weight_decay import OFFICIAL_FORMS, weight_decay_form
from cmrepro.report.__main__ import main as report_main
from cmrepro.training import ConfigError, check_config

STEPS = 120

# (class, the oracle variant of the non-official form, its argument, two groups: decay on, off)
OTHER_FORM = {
    "adam_cg": (
        AdamCG,
        "adam_cg_decoupled",
        True,
        [
            dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.3, decay=0.9, topC=3),
            dict(lr=0.03, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0, decay=0.7, topC=2),
        ],
    ),
    "sgd_cg": (
        SGDCG,
        "sgd_cg_decoupled",
        True,
        [
            dict(lr=0.01, momentum=0.9, dampening=0.1, weight_decay=0.3, decay=0.9, topC=3),
            dict(lr=0.02, momentum=0.0, dampening=0.0, weight_decay=0.0, decay=0.7, topC=2),
        ],
    ),
    "adam_cm": (
        AdamCM,
        "adam_cm_coupled",
        False,
        [
            dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.3, decay=0.9, topC=3),
            dict(lr=0.03, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0, decay=0.7, topC=2),
        ],
    ),
    "sgd_cm": (
        SGDCM,
        "sgd_cm_coupled",
        False,
        [
            dict(lr=0.01, momentum=0.9, weight_decay=0.3, decay=0.9, topC=3),
            dict(lr=0.02, momentum=0.5, weight_decay=0.0, decay=0.7, topC=2),
        ],
    ),
}


def _skipped(t: int) -> set[int]:
    return {4} if t < 2 or t % 3 == 0 else set()


def _run(step, params, skip=lambda t: set()) -> list[torch.Tensor]:
    trajectory = []
    for t in range(STEPS):
        set_grads(params, t, skip=skip(t))
        step()
        trajectory.append(torch.cat([p.detach().reshape(-1) for p in params]).clone())
    return trajectory


def _groups(params, hyper, **extra) -> list[dict]:
    return [dict(params=ps, **h, **extra) for ps, h in zip([params[:3], params[3:]], hyper)]


def _gap(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


@pytest.mark.parametrize("variant", sorted(OTHER_FORM))
@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("skip", [lambda t: set(), _skipped], ids=["all-grads", "some-grads-none"])
def test_the_other_form_matches_the_oracle(variant, foreach, skip):
    cls, oracle_variant, decoupled, hyper = OTHER_FORM[variant]
    params = make_params()
    ours = _run(cls(_groups(params, hyper, foreach=foreach, decoupled_weight_decay=decoupled)).step, params, skip)
    params = make_params()
    oracle = Oracle(oracle_variant, _groups(params, hyper))
    reference = _run(oracle.step, params, skip)
    assert oracle.replacements() > 10
    assert _gap(ours, reference) < 1e-10
    # The form matters at this weight decay: the official form's trajectory is far away.
    params = make_params()
    official = _run(Oracle(variant, _groups(params, hyper)).step, params, skip)
    assert _gap(reference, official) > 1e-3


def test_fused_groups_apply_each_groups_form():
    # Many small groups of equal hyperparameters are stepped as one bucket; the form is one of
    # those hyperparameters, so groups of different forms must not be mixed.
    cls, oracle_variant, _, hyper = OTHER_FORM["adam_cg"]
    shapes = [(3, 2), (4,)] * 4

    params = make_params(shapes=shapes)
    groups = [
        dict(params=params[i : i + 2], **hyper[0], decoupled_weight_decay=i % 4 == 0) for i in range(0, len(params), 2)
    ]
    opt = cls(groups)
    ours = _run(opt.step, params)
    assert len({id(b) for g in opt.param_groups for b in opt._group_buckets(g).values()}) == 2  # one per form
    reference_params = make_params(shapes=shapes)
    pairs = [reference_params[i : i + 2] for i in range(0, len(reference_params), 2)]
    decoupled = Oracle(oracle_variant, [dict(params=ps, **hyper[0]) for ps in pairs[0::2]])
    coupled = Oracle("adam_cg", [dict(params=ps, **hyper[0]) for ps in pairs[1::2]])
    reference = _run(lambda: (decoupled.step(), coupled.step()), reference_params)
    assert _gap(ours, reference) < 1e-10


@pytest.mark.parametrize("variant", sorted(OTHER_FORM))
def test_the_form_survives_a_state_dict_round_trip(variant):
    cls, _, decoupled, hyper = OTHER_FORM[variant]
    straight = make_params(dtype=torch.float32)
    opt = cls(_groups(straight, hyper, decoupled_weight_decay=decoupled))
    expected = _run(opt.step, straight)[-1]

    resumed = make_params(dtype=torch.float32)
    opt = cls(_groups(resumed, hyper, decoupled_weight_decay=decoupled))
    for t in range(STEPS // 2):
        set_grads(resumed, t)
        opt.step()
    state = copy.deepcopy(opt.state_dict())
    fresh = cls(_groups(resumed, hyper))  # built with the official form: the saved groups carry theirs
    fresh.load_state_dict(state)
    assert [g["decoupled_weight_decay"] for g in fresh.param_groups] == [decoupled, decoupled]
    for t in range(STEPS // 2, STEPS):
        set_grads(resumed, t)
        fresh.step()
    assert torch.equal(torch.cat([p.detach().reshape(-1) for p in resumed]), expected)


def test_a_state_dict_from_before_the_option_keeps_the_official_form():
    params = make_params()
    opt = AdamCG(params, lr=0.01, weight_decay=0.3, topC=3)
    set_grads(params, 0)
    opt.step()
    state = opt.state_dict()
    for group in state["param_groups"]:
        del group["decoupled_weight_decay"]
    opt.load_state_dict(state)
    assert "decoupled_weight_decay" not in opt.param_groups[0]
    assert not opt._decoupled(opt.param_groups[0]) and opt._needs_theta(opt.param_groups[0])


def test_defaults_are_the_official_forms_and_a_bad_flag_is_one_line():
    params = make_params()
    flags = {cls: cls(params).param_groups[0]["decoupled_weight_decay"] for cls in (AdamCM, AdamCG, SGDCM, SGDCG)}
    assert flags == {AdamCM: True, AdamCG: False, SGDCM: True, SGDCG: False}
    with pytest.raises(ValueError, match=r"^invalid decoupled_weight_decay: 'yes' \(must be True or False\)$"):
        AdamCG(params, decoupled_weight_decay="yes")


# ---- the config switch -------------------------------------------------------------------------
NAMES = ["adam", "adam_sam", "adam_cg", "adam_cm", "adam_sam_cm", "sgd", "sgd_cg", "sgd_cm"]
OFFICIAL = {
    "adam": True, "adam_sam": True, "adam_cg": False, "adam_cm": True, "adam_sam_cm": True,
    "sgd": None, "sgd_cg": False, "sgd_cm": True,
}  # fmt: skip


def _decoupled_flag(optimizer) -> bool | None:
    base = getattr(optimizer, "base_optimizer", optimizer)
    group = base.param_groups[0]
    if isinstance(base, torch.optim.SGD):
        return None  # torch's SGD: L2 only, no flag
    return group["decoupled_weight_decay"]


@pytest.mark.parametrize("form", ["official", "decoupled", "coupled"])
def test_the_switch_reaches_every_imagenet_optimizer(form, tmp_path):
    for name in NAMES:
        if name == "sgd" and form == "decoupled":
            continue
        cfg = compose_run(["dataset=imagenet", f"optimizer={name}", f"optimizer.weight_decay_form={form}"], tmp_path)
        check_config(cfg)
        assert cfg["optimizer"]["weight_decay"] == 1e-4
        model = torch.nn.Linear(2, 1)
        opt = create_optimizer(name, model.parameters(), model=model, **optimizer_arguments(cfg["optimizer"]))
        expected = OFFICIAL[name] if form == "official" or OFFICIAL[name] is None else form == "decoupled"
        assert _decoupled_flag(opt) == expected, (name, form)


def test_the_default_is_official_and_the_resolved_forms_are_the_official_codes(tmp_path):
    cfg = compose_run(["dataset=imagenet", "optimizer=adam_cg"], tmp_path)
    assert cfg["optimizer"]["weight_decay_form"] == "official"
    assert weight_decay_form(cfg["optimizer"]) == "coupled"
    assert {name: weight_decay_form({"name": name}) for name in ("adam_sam_cm", "adam_meg_cg", "sgd")} == {
        "adam_sam_cm": "decoupled",
        "adam_meg_cg": "coupled",  # any wrapper applies its base optimizer's form
        "sgd": "coupled",
    }
    assert weight_decay_form({"name": "something_new"}) is None  # its class default, not a guess
    assert set(OFFICIAL_FORMS) >= {"adam", "adam_cm", "adam_cg", "sgd", "sgd_cm", "sgd_cg"}


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optimizer.weight_decay_form=adamw"], r"^invalid optimizer.weight_decay_form: 'adamw' \(choose one of: "),
        (
            ["optimizer=sgd", "optimizer.weight_decay_form=decoupled"],
            r"^invalid optimizer.weight_decay_form: 'decoupled' for 'sgd' \(torch's sgd has coupled",
        ),
        (["+optimizer.decoupled_weight_decay=true"], r"^invalid optimizer.decoupled_weight_decay: True \(set "),
    ],
)
def test_a_bad_form_stops_the_run_with_one_line(overrides, message, tmp_path):
    cfg = compose_run(["dataset=imagenet", *overrides], tmp_path)
    with pytest.raises(ConfigError, match=message) as error:
        check_config(cfg)
    assert "\n" not in str(error.value)


# ---- the report: the asymmetry under Table 2's ImageNet column -----------------------------------
def test_table2_report_states_the_form_each_optimizer_used_on_imagenet(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "cifar", optimizer="adam_cg", curve=[90.0])  # not ImageNet: not read
    run = write_run(runs, "imagenet-cg", dataset="imagenet", optimizer="adam_cg", curve=[60.0])
    result = json.loads((run / "result.json").read_text())
    result["config"]["optimizer"]["weight_decay_form"] = "decoupled"
    (run / "result.json").write_text(json.dumps(result))
    assert report_main(["table2", "--runs", str(runs), "--out", str(tmp_path)]) == 0
    markdown = (tmp_path / "tables" / "table2.md").read_text()
    note = next(line for line in markdown.splitlines() if line.startswith("**ImageNet weight decay.**"))
    assert markdown.index("| optimizer |") < markdown.index(note)  # under the table
    assert "Adam decoupled (default), Adam+CG decoupled (runs), Adam+SAM decoupled (default)" in note
    assert "Adam+CM decoupled (default), Adam+SAM+CM decoupled (default)" in note
    # Without the override the official asymmetry shows: Adam+CG coupled.
    result["config"]["optimizer"]["weight_decay_form"] = "official"
    (run / "result.json").write_text(json.dumps(result))
    assert report_main(["table2", "--runs", str(runs), "--out", str(tmp_path)]) == 0
    assert "Adam+CG coupled (runs)" in (tmp_path / "tables" / "table2.md").read_text()
    assert "Adam+CG coupled (runs)" in (tmp_path / "tables" / "table2.tex").read_text()
