"""Models, regularizers, augmentation and the training loop of the image task."""
from __future__ import annotations

import json
import math
import re

import pytest
import torch
from torch import nn

from study import regularizers
from study.config import ConfigError, make_config, parse_set
from study.models import MODELS, AlexNetStyle, tf_lrn
from study.regularization import for_config
from study.regularizers.augment import augment_batch
from study.datasets import load_splits
from study.metrics import TIMINGS
from study.training import run_trial

pytestmark = pytest.mark.usefixtures("one_thread")  # (conftest: tiny models, one thread)

UNKNOWN_LASSO = ("regularizer: unknown technique 'lasso'; allowed: "
                 + ", ".join(regularizers.names() + sorted(regularizers.ALIASES)))


def build_image_model(cfg, num_classes):
    return MODELS[cfg.model].build(cfg, num_classes, for_config(cfg).model_hooks)


# --- config -------------------------------------------------------------------------------------
@pytest.mark.parametrize("values,message", [
    ({"regularizer": "lasso"}, re.escape(UNKNOWN_LASSO) + " \\(or a combination"),
    ({"model": "resnet"}, re.escape("model: unknown value 'resnet' for task 'image'; did you mean resnet18 or "
                                    "tv:resnet50 or tv:resnet34?; allowed: " + ", ".join(MODELS)
                                    + ", or tv:NAME for any torchvision classifier")),
    ({"regularizer": "dropout", "dropout": 1.0}, r"dropout: 1.0 is out of range; allowed: \[0, 1\)"),
    ({"regularizer": "l2", "l2": -1e-4}, r"l2: -0.0001 is out of range; allowed: \[0, inf\)"),
    ({"regularizer": "augment", "contrast_lo": 1.2, "contrast_hi": 0.8}, "contrast_lo/contrast_hi: range reversed"),
    ({"regularizer": "augment", "saturation_lo": -0.1}, r"saturation_lo: -0.1 is out of range; allowed: \[0, inf\)"),
    ({"contrast_lo": 1.2}, "contrast_lo: has no effect with regularizer 'none'; it belongs to 'augment'"),
    ({"batch_size": 0}, re.escape("batch_size: 0 is out of range; allowed: [1, inf) (integer)")),
    ({"epochs": 0}, "epochs: 0 is out of range"),
    ({"bogus": 1}, "unknown setting 'bogus'"),
    ({"regularizer": "none", "dropout": 0.3}, "dropout: has no effect with regularizer 'none'"),
    ({"epochs": "three"}, "epochs: expected an integer"),
])
def test_bad_config_names_key_and_allowed_values(values, message):
    with pytest.raises(ConfigError, match=message):
        make_config(values)


def test_regularizer_defaults_are_the_studys_and_inactive_strengths_are_off():
    assert make_config({"regularizer": "dropout"}).strengths == {"dropout": 0.25}
    c = make_config({"regularizer": "l2_dropout"})
    assert c.regularizer == "l2+dropout" and dict(c.strengths) == {"l2": 1.5e-4, "dropout": 0.2}
    assert not c.combination.uses("augment")
    a = make_config({"regularizer": "augment"})
    # an inactive technique has no strengths at all (nothing to be "off")
    assert a.combination.uses("augment") and not {"l2", "dropout"} & set(a.strengths)
    s = a.strengths
    assert (s["brightness"], s["contrast_lo"], s["contrast_hi"], s["saturation_lo"], s["saturation_hi"]) == \
        (0.4, 0.8, 1.2, 0.7, 1.3)
    assert (s["flip_lr_p"], s["flip_ud_p"]) == (0.5, 0.5)
    # an unused technique's "off" value (dropout=0) is tolerated and recorded nowhere
    l2 = make_config(parse_set(["regularizer=l2", "l2=1e-3", "dropout=0"]))
    assert dict(l2.strengths) == {"l2": 1e-3} and l2.to_dict()["l2"] == 1e-3


# --- models -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["alexnet", "efficientnet_b0"])
def test_model_output_shapes_at_64x64(name):
    torch.manual_seed(0)
    m = build_image_model(make_config({"model": name}), num_classes=7).eval()
    with torch.no_grad():
        assert m(torch.rand(2, 3, 64, 64)).shape == (2, 7)


def test_alexnet_layers_are_the_studys():
    m = AlexNetStyle(25)
    convs = [l for l in m.features if isinstance(l, nn.Conv2d)]
    assert [c.kernel_size[0] for c in convs] == [11, 5, 3, 3, 3]
    assert [c.out_channels for c in convs] == [64, 192, 384, 384, 256]
    lins = [l for l in m.classifier if isinstance(l, nn.Linear)]
    assert [l.out_features for l in lins] == [1024, 1024, 25]
    assert sum(isinstance(l, nn.LocalResponseNorm) for l in m.features) == 2
    assert all(p.kernel_size == 3 and p.stride == 2 for p in m.features if isinstance(p, nn.MaxPool2d))


def test_lrn_matches_tensorflow_formula():
    torch.manual_seed(0)
    x = torch.randn(2, 20, 5, 5, dtype=torch.float64) * 3
    r, bias, alpha, beta = 5, 2.0, 1e-4, 0.75
    sq = x.pow(2)
    expected = torch.empty_like(x)
    for c in range(20):  # tf.nn.local_response_normalization, written out
        s = sq[:, max(0, c - r):c + r + 1].sum(1)
        expected[:, c] = x[:, c] / (bias + alpha * s) ** beta
    lrn = tf_lrn(r, bias, alpha, beta)
    assert lrn.size == 11 and math.isclose(lrn.alpha, 11e-4)
    torch.testing.assert_close(lrn(x), expected)


def test_efficientnet_dropout_is_the_regularizers():
    none = build_image_model(make_config({"model": "efficientnet_b0"}), 5)
    drop = build_image_model(make_config({"model": "efficientnet_b0", "regularizer": "dropout", "dropout": 0.4}), 5)
    # without a dropout technique the site is an identity (the same as p=0)
    assert isinstance(none.classifier[0], nn.Identity)
    assert isinstance(drop.classifier[0], nn.Dropout) and drop.classifier[0].p == 0.4


def test_efficientnet_loads_local_pretrained_weights(tmp_path):
    from torchvision.models import efficientnet_b0
    torch.manual_seed(1)
    src = efficientnet_b0(weights=None)
    torch.save(src.state_dict(), tmp_path / "w.pth")
    m = build_image_model(make_config({"model": "efficientnet_b0", "pretrained": str(tmp_path / "w.pth")}), 5)
    torch.testing.assert_close(m.features[0][0].weight, src.features[0][0].weight)
    assert m.classifier[1].out_features == 5
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        build_image_model(make_config({"model": "efficientnet_b0", "pretrained": str(tmp_path / "no.pth")}), 5)


# --- regularizers -------------------------------------------------------------------------------
def test_l2_term_is_lambda_times_sum_of_squared_weights():
    torch.manual_seed(0)
    m = AlexNetStyle(5)
    weights = [p for n, p in m.named_parameters() if n.endswith("weight")]
    expected = 3e-4 * sum(float(w.detach().double().pow(2).sum()) for w in weights)
    def term(include_bias):
        reg = for_config(make_config({"regularizer": "l2", "l2": 3e-4, "l2_include_bias": include_bias}))
        return reg.penalties(reg.covered_parameters(m))["l2"]

    assert math.isclose(float(term(False).detach()), expected, rel_tol=1e-5)
    bias_sq = sum(float(p.detach().double().pow(2).sum()) for n, p in m.named_parameters() if n.endswith("bias"))
    assert math.isclose(float(term(True).detach()), expected + 3e-4 * bias_sq, rel_tol=1e-5)
    none = for_config(make_config({"regularizer": "none"}))
    assert none.penalties(none.covered_parameters(m)) == {}  # no term at all, not a zero term


def test_dropout_active_only_in_train_mode():
    torch.manual_seed(0)
    m = AlexNetStyle(5, dropout_layer=lambda: nn.Dropout(0.5))
    x = torch.rand(4, 3, 64, 64)
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(x), m(x))
    m.train()
    with torch.no_grad():
        assert not torch.equal(m(x), m(x))
    assert not any(isinstance(l, nn.Dropout) and l.p > 0 for l in AlexNetStyle(5).modules())
    built = build_image_model(make_config({"regularizer": "dropout", "dropout": 0.5}), 5)
    assert [l.p for l in built.modules() if isinstance(l, nn.Dropout)] == [0.5, 0.5]


def test_augmentation_respects_its_ranges():
    cfg = make_config({"regularizer": "augment", "flip_lr_p": 1.0, "flip_ud_p": 0.0, "brightness": 0.0,
                       "contrast_lo": 1.0, "contrast_hi": 1.0, "saturation_lo": 1.0, "saturation_hi": 1.0})
    x = torch.rand(8, 3, 64, 64)
    gen = torch.Generator().manual_seed(0)
    torch.testing.assert_close(augment_batch(x, cfg.strengths, gen), x.flip(-1))  # p=1 flip, nothing else
    # brightness only: each image shifted by one delta in [-0.2, 0.2] (where not clamped)
    cfg = make_config({"regularizer": "augment", "flip_lr_p": 0.0, "flip_ud_p": 0.0, "brightness": 0.2,
                       "contrast_lo": 1.0, "contrast_hi": 1.0, "saturation_lo": 1.0, "saturation_hi": 1.0})
    x = torch.full((500, 3, 4, 4), 0.5)
    delta = (augment_batch(x, cfg.strengths, gen) - x)[:, 0, 0, 0]
    assert delta.abs().max() <= 0.2 + 1e-6 and delta.min() < -0.15 and delta.max() > 0.15
    assert abs(float(delta.mean())) < 0.02


# --- one trial ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def splits(tiny_zip, tmp_path_factory):
    return load_splits(make_config({"data": str(tiny_zip), "classes": 4,
                                    "cache_dir": str(tmp_path_factory.mktemp("cache"))}))


def trial(splits, **kw):
    rows = []
    cfg = make_config({"classes": 4, "epochs": 3, "batch_size": 16, "lr": 1e-3, "seed": 0, **kw})
    final = run_trial(cfg, lambda m, s: rows.append(dict(m)), data=splits, device="cpu")
    return rows, final


METRICS = ("epoch", "train_loss", "train_acc", "train_clean_loss", "train_clean_acc", "val_loss", "val_acc",
           "gap_loss", "gap_acc", "epoch_time_s", "samples_per_s", "learning_rate")


def test_training_loss_goes_down_and_metrics_are_consistent(splits):
    rows, final = trial(splits, epochs=4)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert all(set(METRICS) <= set(r) for r in rows)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert rows[-1]["train_clean_loss"] < rows[0]["train_clean_loss"]
    for r in rows:
        assert math.isclose(r["gap_loss"], r["val_loss"] - r["train_clean_loss"])
        assert math.isclose(r["gap_acc"], r["train_clean_acc"] - r["val_acc"])
        assert 0 <= r["val_acc"] <= 1 and r["samples_per_s"] > 0
        # 8 validation images: accuracy is a multiple of 1/8
        assert math.isclose(r["val_acc"] * 8, round(r["val_acc"] * 8))
    assert "test_acc" in final and "test_acc" not in rows[0]
    # the test evaluation is timed apart from the epoch (benchmarks count it as the trial's work)
    assert final["test_time_s"] > 0 and "test_time_s" not in rows[0]
    assert final["test_acc"] * 20 == pytest.approx(round(final["test_acc"] * 20))


def test_same_seed_same_numbers_other_seed_other_numbers(splits):
    a, _ = trial(splits, epochs=2, regularizer="l2_dropout")
    b, _ = trial(splits, epochs=2, regularizer="l2_dropout")
    c, _ = trial(splits, epochs=2, regularizer="l2_dropout", seed=1)
    drop = TIMINGS
    strip = lambda rows: [{k: v for k, v in r.items() if k not in drop} for r in rows]
    assert strip(a) == strip(b)
    assert strip(a) != strip(c)


def _saved(state):
    import io

    import torch
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


def test_resume_from_state_reproduces_uninterrupted_run(splits):
    full, _ = trial(splits, epochs=3, regularizer="augment")
    states = []
    cfg = make_config({"classes": 4, "epochs": 3, "batch_size": 16, "seed": 0, "regularizer": "augment"})
    # (a state is valid until report returns: saved as study.trainable saves it, then read back)
    run_trial(cfg, lambda m, s: states.append(_saved(s())) if m["epoch"] == 1 else None, data=splits, device="cpu")
    rows = []
    cfg2 = make_config({"classes": 4, "epochs": 3, "batch_size": 16, "seed": 0, "regularizer": "augment"})
    run_trial(cfg2, lambda m, s: rows.append(m), data=splits, device="cpu", resume=states[0])
    assert [r["epoch"] for r in rows] == [2, 3]
    for got, want in zip(rows, full[1:]):
        assert got["train_loss"] == want["train_loss"] and got["val_loss"] == want["val_loss"]


def test_augmentation_changes_training_batches_only(splits, monkeypatch):
    """With augmentation on, eval-mode metrics on the same weights must not see augmentation."""
    import study.regularizers.augment as it
    calls = []
    real = it.augment_batch
    monkeypatch.setattr(it, "augment_batch", lambda x, s, g: calls.append(len(x)) or real(x, s, g))
    trial(splits, epochs=1, regularizer="augment")
    assert sum(calls) == len(splits.train_y)  # every training image once, nothing else
    calls.clear()
    trial(splits, epochs=1, regularizer="none")
    assert calls == []


def test_train_once_cli_writes_json(tiny_zip, tmp_path, capsys, monkeypatch):
    from study.train_once import main
    monkeypatch.setenv("REGSTUDY_CACHE", str(tmp_path / "c"))
    out = tmp_path / "out.json"
    rc = main(["--data", str(tiny_zip), "--classes", "4", "--model", "alexnet", "--regularizer", "dropout",
               "--epochs", "2", "--seed", "0", "--set", "batch_size=16", "--json", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["config"]["dropout"] == 0.25 and doc["config"]["classes"] == 4
    assert [e["epoch"] for e in doc["epochs"]] == [1, 2]
    assert set(doc["test"]) == {"test_loss", "test_acc"}
    printed = capsys.readouterr().out
    assert "train_clean_loss" in printed and "test_acc=" in printed
    assert main(["--data", str(tiny_zip), "--regularizer", "lasso"]) == 2
    assert UNKNOWN_LASSO in capsys.readouterr().err
