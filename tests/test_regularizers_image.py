"""Image-task regularizers: each technique's effect against its formula written out on a tiny
example, in training only (evaluation untouched), and every image technique through a real trial.

Technique names come from ``study.regularizers`` (the catalog), never from a list here.
"""
from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn
from torchvision.ops import StochasticDepth

from study import regularizers, tasks
from study.config import ConfigError, make_config
from study.metrics import EPOCH_METRICS
from study.models import MODELS
from study.regularization import for_config
from study.regularizers import MixedTargets
from study.regularizers.cutmix import cutmix
from study.regularizers.cutout import cutout
from study.regularizers.max_dropout import MaxDropout
from study.regularizers.mixing import beta
from study.regularizers.mixup import mixup
from study.tasks.image import to_float
from study.datasets import load_splits
from study.tasks import IGNORE, Task
from study.training import _sums, build_optimizer, build_task, evaluate, run_trial, seed_everything

pytestmark = pytest.mark.usefixtures("one_thread")  # (conftest: tiny models, one thread)

CPU = torch.device("cpu")
IMAGE = regularizers.names("image")
TRANSFORMS = [t.name for t in regularizers.catalog() if "image" in t.tasks and t.batch_transform]
# What the image task hands Cutout as ctx["mean"]: a dataset's channel statistics (these: ImageNet's)
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
FILL = torch.tensor(MEAN).view(1, 3, 1, 1)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def technique(name):
    (t,) = regularizers.parse(name).techniques
    return t


def model_for(name):
    """AlexNet (the study's model) unless the technique's model hooks need another model."""
    needs = set(technique(name).model_hooks)
    return next(m for m, spec in MODELS.items() if needs <= spec.accepts)


def build(cfg, data):
    return tasks.get("image").build(cfg, data, CPU, for_config(cfg))


def build_model(cfg, n=5):
    return MODELS[cfg.model].build(cfg, n, for_config(cfg).model_hooks)


@pytest.fixture(scope="module")
def splits(tiny_zip, tmp_path_factory):
    return load_splits(make_config({"data": str(tiny_zip), "classes": 4,
                                    "cache_dir": str(tmp_path_factory.mktemp("cache"))}))


@pytest.fixture(scope="module")
def small(splits):
    """A third of the training images (24, every class): a trial's epoch in a second or two on CPU."""
    return dataclasses.replace(splits, train_x=splits.train_x[::3], train_y=splits.train_y[::3])


def _logits(task, state, x_u8):
    task.model.load_state_dict(state["model"])
    task.model.eval()
    with torch.no_grad():
        return task.forward(task.model, to_float(torch.from_numpy(x_u8)))


# --- L1 -------------------------------------------------------------------------------------------
def test_l1_term_is_lambda_times_sum_of_absolute_weights_and_kernels():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    lam = 3e-3
    named = dict(m.named_parameters())
    kernels = ["0.weight", "3.weight"]  # ndim >= 2: the conv kernel and the linear matrix
    assert sorted(n for n, p in named.items() if p.ndim >= 2) == kernels

    def term(include_bias):
        reg = for_config(make_config({"regularizer": "l1", "l1": lam, "l2_include_bias": include_bias}))
        return reg.penalties(reg.covered_parameters(m))["l1"]

    only_kernels = lam * sum(float(named[n].detach().double().abs().sum()) for n in kernels)
    assert math.isclose(float(term(False).detach()), only_kernels, rel_tol=1e-6)
    everything = lam * sum(float(p.detach().double().abs().sum()) for p in m.parameters())
    assert everything > only_kernels * 1.01  # BatchNorm scales are ones: the bias case differs
    assert math.isclose(float(term(True).detach()), everything, rel_tol=1e-6)
    # its gradient, what training adds: lam * sign(w) on the kernels, nothing on biases and BN
    term(False).backward()
    for n, p in named.items():
        if n in kernels:
            torch.testing.assert_close(p.grad, lam * p.detach().sign())
        else:
            assert p.grad is None


def test_l1_term_is_reported_and_train_loss_is_plain_cross_entropy(small):
    # lr ~ 0: the weights do not move, so the epoch's numbers can be recomputed from the final ones
    cfg = make_config({"classes": 4, "epochs": 1, "batch_size": 8, "lr": 1e-12, "regularizer": "l1", "l1": 1e-4})
    states = []
    final = run_trial(cfg, lambda m, s: states.append(s()), data=small, device="cpu")
    task = build(cfg, small)
    ce = F.cross_entropy(_logits(task, states[0], small.train_x), torch.from_numpy(small.train_y))
    assert math.isclose(final["train_loss"], float(ce), rel_tol=1e-4)
    l1 = 1e-4 * sum(float(p.detach().double().abs().sum()) for p in task.model.parameters() if p.ndim >= 2)
    assert math.isclose(final["l1_term"], l1, rel_tol=1e-4)
    assert final["l1_term"] > 1e-3 * final["train_loss"]  # large enough to show had it been included


# --- one optimisation step of a real trial: the technique's part of the update ----------------------
def _one_step(small, **kw):
    """(initial, after one step) parameters by name: one batch holds every training image."""
    cfg = make_config({"classes": 4, "epochs": 1, "batch_size": len(small.train_y), "seed": 3, **kw})
    seed_everything(cfg.seed)  # as run_trial does before building the model
    w0 = {n: p.detach().clone() for n, p in build_task(cfg, small, CPU).model.named_parameters()}
    states = []
    run_trial(cfg, lambda m, s: states.append(s()), data=small, device="cpu")
    return w0, states[0]["model"]


@pytest.mark.parametrize("name,optimizer,include_bias", [
    ("l1", "sgd", False),
    ("weight_decay", "sgd", False),
    ("weight_decay", "sgd", True),
    ("weight_decay", "adam", False),
])
def test_one_training_step_adds_exactly_the_techniques_update(small, name, optimizer, include_bias):
    lr = 0.1 if optimizer == "sgd" else 0.01
    strength = {"l1": 1e-3, "weight_decay": 0.5}[name]
    common = {"optimizer": optimizer, "lr": lr, "l2_include_bias": include_bias}
    w0, plain = _one_step(small, regularizer="none", **common)
    _, reg = _one_step(small, regularizer=name, **{name: strength}, **common)
    for n, w in w0.items():
        covered = include_bias or w.ndim >= 2
        # same initial weights and the same batch: the difference is the technique's own step
        want = torch.zeros_like(w)
        if covered:
            want = -lr * strength * (w.sign() if name == "l1" else w)
        torch.testing.assert_close(reg[n] - plain[n], want, rtol=1e-3, atol=2e-7, msg=n)


# --- decoupled weight decay -------------------------------------------------------------------------
def _linear():
    torch.manual_seed(0)
    return nn.Linear(3, 2)  # a matrix (decayed) and a bias (ndim 1: decayed only with l2_include_bias)


def _grads(model, g):
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g)
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("include_bias", [False, True])
def test_weight_decay_with_adam_is_adamw_on_the_covered_weights(include_bias):
    lr, wd = 0.01, 0.1
    cfg = make_config({"regularizer": "weight_decay", "weight_decay": wd, "lr": lr, "optimizer": "adam",
                       "l2_include_bias": include_bias})
    m = _linear()
    ref = copy.deepcopy(m)
    opt = build_optimizer(cfg, m, for_config(cfg))
    assert type(opt) is torch.optim.AdamW
    ref_opt = torch.optim.AdamW([{"params": [ref.weight], "weight_decay": wd},
                                 {"params": [ref.bias], "weight_decay": wd if include_bias else 0.0}], lr=lr)
    w0, b0 = m.weight.detach().clone(), m.bias.detach().clone()
    # a zero gradient: Adam's own step is 0, so only the decay moves the weights
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    torch.testing.assert_close(m.weight.detach(), w0 - lr * wd * w0, rtol=1e-6, atol=1e-8)
    if include_bias:
        torch.testing.assert_close(m.bias.detach(), b0 - lr * wd * b0, rtol=1e-6, atol=1e-8)
    else:
        assert torch.equal(m.bias, b0)
    # with gradients: step for step the same as torch's AdamW
    for p in ref.parameters():
        p.grad = torch.zeros_like(p)
    ref_opt.step()
    g = gen(1)
    for _ in range(3):
        for p, q in zip(m.parameters(), ref.parameters()):
            p.grad = torch.randn(p.shape, generator=g)
            q.grad = p.grad.clone()
        opt.step()
        ref_opt.step()
    for p, q in zip(m.parameters(), ref.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("include_bias", [False, True])
def test_weight_decay_with_sgd_is_decoupled_from_the_momentum(include_bias):
    lr, wd, mom = 0.1, 0.05, 0.9
    cfg = make_config({"regularizer": "weight_decay", "weight_decay": wd, "lr": lr, "optimizer": "sgd",
                       "momentum": mom, "l2_include_bias": include_bias})
    m = _linear()
    opt = build_optimizer(cfg, m, for_config(cfg))
    assert type(opt) is torch.optim.SGD
    w = [p.detach().clone() for p in m.parameters()]
    decays = [wd, wd if include_bias else 0.0]  # weight, bias
    g = gen(2)
    g1 = _grads(m, g)
    opt.step()
    # first step: torch's momentum buffer starts as the gradient itself
    w1 = [p - lr * d * p - lr * gr for p, d, gr in zip(w, decays, g1)]
    for p, want in zip(m.parameters(), w1):
        torch.testing.assert_close(p.detach(), want, rtol=0, atol=1e-7)
    g2 = _grads(m, g)
    opt.step()
    # second step: buffer = mom * g1 + g2, with no wd * w in it (torch's coupled weight_decay would
    # add it to the gradient, hence to the buffer); the decay acts on the current weights
    w2 = [p - lr * d * p - lr * (mom * a + b) for p, d, a, b in zip(w1, decays, g1, g2)]
    for p, want in zip(m.parameters(), w2):
        torch.testing.assert_close(p.detach(), want, rtol=0, atol=1e-7)


@pytest.mark.parametrize("optimizer,cls", [("adam", torch.optim.Adam), ("sgd", torch.optim.SGD)])
def test_without_weight_decay_the_optimizer_is_plain(optimizer, cls):
    cfg = make_config({"optimizer": optimizer})
    opt = build_optimizer(cfg, _linear(), for_config(cfg))
    assert type(opt) is cls and not opt._optimizer_step_pre_hooks
    assert all(g["weight_decay"] == 0 for g in opt.param_groups)


# --- label smoothing --------------------------------------------------------------------------------
LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-2.0, 3.0, 0.0], [1.0, 1.0, 1.0], [0.3, -0.4, 0.9]])


def _smoothed(logits, y, eps):
    """(1 - eps) * CE + eps * mean_k(-log p_k), per position, written out."""
    logp = logits.double().log_softmax(-1)
    return [(1 - eps) * -logp[i, int(c)] + eps * (-logp[i]).mean() for i, c in enumerate(y)]


def test_label_smoothing_training_loss_is_the_smoothed_formula_and_evaluation_is_plain():
    eps = 0.2
    opts = for_config(make_config({"regularizer": "label_smoothing", "label_smoothing": eps})).loss_options
    assert opts == {"label_smoothing": eps}
    y = torch.tensor([0, 2, 0, IGNORE, 1])  # the third is predicted wrong, the fourth does not count
    counted = [0, 1, 2, 4]
    want = sum(_smoothed(LOGITS[counted], y[counted], eps))
    loss, correct, n = _sums(LOGITS, y, **opts)
    assert math.isclose(float(loss), float(want), rel_tol=1e-6)
    assert (int(correct), int(n)) == (2, 4)
    plain = F.cross_entropy(LOGITS[counted], y[counted], reduction="sum")
    assert math.isclose(float(_sums(LOGITS, y)[0]), float(plain), rel_tol=1e-6)
    assert abs(float(loss) - float(plain)) > 0.1
    # evaluation never takes the loss options: the mean plain cross-entropy
    task = Task(model=nn.Identity(), train_batches=lambda g: iter(()), eval_sets={}, forward=lambda m, x: m(x))
    mean, acc = evaluate(task, [(LOGITS, y)], CPU, amp=False)
    assert math.isclose(mean, float(plain) / 4, rel_tol=1e-6) and acc == 0.5


def test_label_smoothing_acts_on_train_loss_only_in_a_trial(small):
    eps = 0.3
    cfg = make_config({"classes": 4, "epochs": 1, "batch_size": 8, "lr": 1e-12, "regularizer": "label_smoothing",
                       "label_smoothing": eps})
    states = []
    final = run_trial(cfg, lambda m, s: states.append(s()), data=small, device="cpu")
    task = build(cfg, small)
    train = _logits(task, states[0], small.train_x)  # the weights did not move (lr ~ 0)
    smoothed = float(sum(_smoothed(train, small.train_y, eps))) / len(small.train_y)
    assert math.isclose(final["train_loss"], smoothed, rel_tol=1e-4)
    val = F.cross_entropy(_logits(task, states[0], small.val_x), torch.from_numpy(small.val_y))
    assert math.isclose(final["val_loss"], float(val), rel_tol=1e-4)


# --- mixup and CutMix ---------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_mixing_lambda_is_beta_alpha_alpha(alpha):
    g = gen(0)
    lam = np.array([beta(alpha, g) for _ in range(2000)])
    assert stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue > 1e-3


def _partner(mixed, x, lam):
    """Per sample, the sample j that makes ``mixed[i] - lam * x[i]`` equal ``(1 - lam) * x[j]``."""
    rest = (mixed - lam * x).flatten(1)
    return torch.cdist(rest, (1.0 - lam) * x.flatten(1)).argmin(1)


def test_mixup_is_the_convex_combination_and_the_targets_carry_lam():
    x = torch.rand(8, 3, 5, 5, generator=gen(1))
    y = torch.arange(8) * 3
    before = x.clone()
    for seed in range(5):
        out, t = mixup(x, y, 1.0, gen(seed))
        lam = float(t.lam[0])
        assert isinstance(t, MixedTargets) and torch.all(t.lam == lam) and 0.0 < lam < 1.0
        perm = _partner(out, x, lam)
        assert sorted(perm.tolist()) == list(range(8))  # each sample is some sample's partner once
        torch.testing.assert_close(out, x * lam + x[perm] * (1 - lam))
        assert torch.equal(t.y_a, y) and torch.equal(t.y_b, y[perm])
    assert torch.equal(x, before)
    # the trial's generator makes the draws repeat; another seed draws others
    a, ta = mixup(x, y, 0.2, gen(5))
    b, tb = mixup(x, y, 0.2, gen(5))
    _, tc = mixup(x, y, 0.2, gen(6))
    assert torch.equal(a, b) and torch.equal(ta.lam, tb.lam) and torch.equal(ta.y_b, tb.y_b)
    assert not torch.equal(ta.lam, tc.lam)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_mixed_targets_loss_is_lam_weighted_cross_entropy(eps):
    y_a = torch.tensor([0, 1, 2, 0, 1])
    y_b = torch.tensor([1, 1, 0, 2, 2])
    lam = torch.tensor([0.3, 0.7, 1.0, 0.0, 0.5])
    a, b = _smoothed(LOGITS, y_a, eps), _smoothed(LOGITS, y_b, eps)
    want = sum(float(lam[i]) * a[i] + (1 - float(lam[i])) * b[i] for i in range(5))
    opts = {"label_smoothing": eps} if eps else {}
    loss, correct, n = _sums(LOGITS, MixedTargets(y_a, y_b, lam), **opts)
    assert math.isclose(float(loss), float(want), rel_tol=1e-6) and int(n) == 5
    pred = LOGITS.argmax(-1)
    hits = lam * (pred == y_a) + (1 - lam) * (pred == y_b)
    assert math.isclose(float(correct), float(hits.sum()), rel_tol=1e-6)


def _box(changed):
    """(y0, y1, x0, x1) of the pixels that changed, after checking they form one full rectangle."""
    rows, cols = changed.any(1).nonzero().flatten(), changed.any(0).nonzero().flatten()
    y0, y1, x0, x1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    assert changed[y0:y1, x0:x1].all() and int(changed.sum()) == (y1 - y0) * (x1 - x0)
    return y0, y1, x0, x1


def test_cutmix_pastes_one_box_from_the_partner_and_its_area_is_the_label_weight():
    n, h, w = 6, 12, 10
    x = torch.rand(n, 3, h, w, generator=gen(7))
    y = torch.arange(n) + 10  # a label names its image
    at_border = inside = 0
    for seed in range(16):
        out, t = cutmix(x, y, 1.0, gen(seed))
        kept = float(t.lam[0])
        assert torch.all(t.lam == kept) and torch.equal(t.y_a, y)
        partner = t.y_b - 10
        assert (partner != torch.arange(n)).any() and sorted(partner.tolist()) == list(range(n))
        changed = (out != x).any(1).any(0)  # one box for the batch (self-paired images show none)
        area = 0
        if changed.any():
            y0, y1, x0, x1 = _box(changed)
            area = (y1 - y0) * (x1 - x0)
            touches = y0 == 0 or x0 == 0 or y1 == h or x1 == w
            at_border += touches
            inside += not touches
        assert math.isclose(1.0 - kept, area / (h * w), rel_tol=1e-6)  # lam is float32
        # inside the box the partner's pixels, outside the image's own
        assert torch.equal(out[:, :, changed], x[partner][:, :, changed])
        assert torch.equal(out[:, :, ~changed], x[:, :, ~changed])
    assert at_border and inside  # both clipped and whole boxes were seen


# --- Cutout ----------------------------------------------------------------------------------------
def _cutout(x, seed=0, size=6, holes=1, p=1.0):
    return cutout(x, {"cutout_size": size, "cutout_holes": holes, "cutout_p": p}, gen(seed), FILL)


def test_cutout_sets_one_square_hole_to_the_mean_and_nothing_else():
    n, h, w, size = 64, 20, 16, 6
    x = torch.rand(n, 3, h, w, generator=gen(3))
    out = _cutout(x, size=size)
    hole = (out != x).any(1)  # (N, H, W)
    # every changed pixel holds the fill in all channels: exactly 0 after normalisation
    assert torch.equal(out.permute(0, 2, 3, 1)[hole], FILL.view(3).expand(int(hole.sum()), 3))
    std = torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.equal(((out - FILL) / std).permute(0, 2, 3, 1)[hole], torch.zeros(int(hole.sum()), 3))
    whole = clipped = 0
    for i in range(n):
        y0, y1, x0, x1 = _box(hole[i])  # one rectangle: nothing outside it changed
        top_or_bottom, left_or_right = y0 == 0 or y1 == h, x0 == 0 or x1 == w
        assert (y1 - y0 == size) or (top_or_bottom and y1 - y0 < size)
        assert (x1 - x0 == size) or (left_or_right and x1 - x0 < size)
        if not (top_or_bottom or left_or_right):
            assert int(hole[i].sum()) == size * size
            whole += 1
        else:
            clipped += int(hole[i].sum()) < size * size
    assert whole and clipped


def test_cutout_hole_count_probability_and_a_hole_larger_than_the_image():
    x = torch.rand(300, 3, 32, 32, generator=gen(4))
    counts = (_cutout(x, size=1, holes=3) != x).any(1).flatten(1).sum(1)
    # three 1-pixel holes per image (two may land on the same pixel, rarely)
    assert counts.max() == 3 and counts.min() >= 1 and (counts == 3).float().mean() > 0.95
    assert torch.equal(_cutout(x, p=0.0), x)
    hit = (_cutout(x, p=0.5) != x).flatten(1).any(1).float()
    assert abs(float(hit.mean()) - 0.5) < 4 * math.sqrt(0.25 / len(x))
    big = _cutout(x[:4], size=64)  # twice the image's side: covers it from any centre
    assert torch.equal(big, FILL.expand_as(big))


# --- MaxDropout ----------------------------------------------------------------------------------------
def test_max_dropout_drops_the_largest_normalised_activations_of_each_sample():
    rate = 0.3
    x = torch.randn(6, 4, 5, 5, generator=gen(4))
    m = MaxDropout(rate).train()
    out = m(x)
    fx, fo = x.flatten(1), out.flatten(1)
    lo, hi = fx.min(1, keepdim=True).values, fx.max(1, keepdim=True).values
    normalised = (fx - lo) / (hi - lo)  # min-max, per sample
    dropped = (fo == 0) & (fx != 0)
    assert torch.equal(dropped, normalised > 1 - rate)
    assert torch.equal(fo[~dropped], fx[~dropped])  # kept units are not rescaled
    for i in range(len(x)):
        assert dropped[i].any() and (~dropped[i]).any()
        assert fx[i][dropped[i]].min() >= fx[i][~dropped[i]].max()
    torch.testing.assert_close(m(x[2:3]), out[2:3])  # a sample's output does not depend on its batch
    assert torch.equal(m.eval()(x), x)
    assert torch.equal(MaxDropout(0.0).train()(x), x)
    flat = torch.full((2, 10), 0.7)  # no spread: nothing stands out, nothing is dropped
    assert torch.equal(MaxDropout(rate).train()(flat), flat)


def test_max_dropout_replaces_dropout_at_the_models_dropout_sites():
    cfg = make_config({"regularizer": "max_dropout", "max_dropout": 0.4})
    drop = build_model(make_config({"regularizer": "dropout"}))
    maxd = build_model(cfg)
    sites = [i for i, l in enumerate(drop.classifier) if isinstance(l, nn.Dropout)]
    assert len(sites) == 2
    assert [i for i, l in enumerate(maxd.classifier) if isinstance(l, MaxDropout)] == sites
    assert all(maxd.classifier[i].rate == 0.4 for i in sites)
    assert not any(isinstance(l, nn.Dropout) for l in maxd.modules())
    # in eval mode the model is deterministic (MaxDropout is off)
    maxd.eval()
    x = torch.rand(2, 3, 64, 64, generator=gen(0))
    with torch.no_grad():
        assert torch.equal(maxd(x), maxd(x))


# --- stochastic depth ------------------------------------------------------------------------------------
def _depth_modules(cfg):
    return [l for l in build_model(cfg).modules() if isinstance(l, StochasticDepth)]


def test_stochastic_depth_rates_rise_linearly_with_depth_as_torchvision_does():
    rate = 0.3
    model = model_for("stochastic_depth")
    ps = [l.p for l in _depth_modules(make_config({"model": model, "regularizer": "stochastic_depth",
                                                   "stochastic_depth": rate}))]
    n = len(ps)
    assert n > 1
    # torchvision: block i of n (from 0) gets rate * i / n
    assert ps == pytest.approx([rate * i / n for i in range(n)])
    assert all(a < b for a, b in zip(ps, ps[1:])) and max(ps) == ps[-1] <= rate
    assert all(p == 0.0 for p in (l.p for l in _depth_modules(make_config({"model": model}))))


def test_stochastic_depth_drops_a_fraction_p_of_samples_in_training_only():
    cfg = make_config({"model": model_for("stochastic_depth"), "regularizer": "stochastic_depth",
                       "stochastic_depth": 0.4})
    sd = _depth_modules(cfg)[-1]  # the deepest block: the largest rate
    p, n = sd.p, 4000
    x = torch.ones(n, 2, 3, 3)
    torch.manual_seed(0)
    out = sd.train()(x)
    dropped = (out == 0).flatten(1).all(1)
    kept = (out != 0).flatten(1).all(1)
    assert torch.equal(dropped, ~kept)  # whole samples, never parts
    assert abs(float(dropped.float().mean()) - p) < 4 * math.sqrt(p * (1 - p) / n)
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / (1 - p)))  # survivors rescaled
    assert torch.equal(sd.eval()(x), x)


def test_stochastic_depth_is_refused_for_models_without_it():
    needs = set(technique("stochastic_depth").model_hooks)
    able = [m for m, spec in MODELS.items() if needs <= spec.accepts]
    lacking = [m for m in MODELS if m not in able]
    assert able and lacking
    msg = "models that support it: " + ", ".join(able)
    for m in lacking:
        with pytest.raises(ConfigError, match=f"stochastic_depth is not supported by model '{m}'; {msg}"):
            make_config({"model": m, "regularizer": "stochastic_depth"})
    with pytest.raises(ConfigError, match=msg):
        make_config({"regularizer": "stochastic_depth"})  # the default model


# --- training only: the image task -----------------------------------------------------------------------
@pytest.mark.parametrize("name", TRANSFORMS)
def test_batch_transforms_change_training_batches_only(small, name):
    cfg = make_config({"classes": 4, "batch_size": 8, "eval_batch_size": 5, "regularizer": name})
    task = build(cfg, small)
    order = torch.randperm(len(small.train_y), generator=gen(0))  # the epoch's first draw
    raw_x = to_float(torch.from_numpy(small.train_x)[order])
    xs, ys = zip(*task.train_batches(gen(0)))
    x = torch.cat(xs)
    assert x.shape == raw_x.shape and not torch.equal(x, raw_x)
    assert all(isinstance(y, MixedTargets) == technique(name).mixes_targets for y in ys)
    own = torch.cat([y.y_a if isinstance(y, MixedTargets) else y for y in ys])
    assert torch.equal(own, torch.from_numpy(small.train_y)[order])  # each image keeps its label first
    if name == "cutout":  # holes hold the normalisation mean (the dataset's own): 0 for the model
        changed = (x != raw_x).any(1, keepdim=True).expand_as(x)
        assert torch.equal(x[changed], torch.tensor(small.mean).view(1, 3, 1, 1).expand_as(x)[changed])
    for split, (xe, ye) in {"val": (small.val_x, small.val_y), "test": (small.test_x, small.test_y)}.items():
        xs, ys = zip(*task.eval_sets[split]())
        assert torch.equal(torch.cat(xs), to_float(torch.from_numpy(xe))), split
        assert torch.equal(torch.cat(ys), torch.from_numpy(ye)), split
    clean = torch.cat([b[0] for b in task.eval_sets["train_clean"]()])
    train = to_float(torch.from_numpy(small.train_x))
    assert all((train == img).flatten(1).all(1).any() for img in clean)  # raw training images


@pytest.mark.parametrize("name", IMAGE)
def test_every_image_technique_trains_and_evaluates_with_plain_cross_entropy(small, name):
    cfg = make_config({"classes": 4, "epochs": 1, "batch_size": 8, "model": model_for(name), "regularizer": name})
    states = []
    final = run_trial(cfg, lambda m, s: states.append(s()), data=small, device="cpu")
    terms = [f"{t.name}_term" for t in cfg.combination.techniques if t.penalty is not None]
    for key in (*EPOCH_METRICS, "test_loss", "test_acc", *terms):
        assert math.isfinite(final[key]), key
    assert all(final[k] > 0 for k in terms) and not final["diverged"]
    # validation and test: the trained model in eval mode, plain cross-entropy, whatever the technique
    task = build(cfg, small)
    for split, (xe, ye) in {"val": (small.val_x, small.val_y), "test": (small.test_x, small.test_y)}.items():
        logits, y = _logits(task, states[-1], xe), torch.from_numpy(ye)
        assert math.isclose(final[f"{split}_loss"], float(F.cross_entropy(logits, y)), rel_tol=1e-4), split
        assert final[f"{split}_acc"] == pytest.approx(float((logits.argmax(-1) == y).float().mean()))
