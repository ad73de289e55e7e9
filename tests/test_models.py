"""The image model table: every named model and a ``tv:`` model through the image task at 32, 64
and 224 px; ResNet-18's small-image form; where dropout and stochastic depth go in a torchvision
model; pretrained weights from a local file; unknown names and sizes refused with suggestions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.ops import StochasticDepth

from study import train_once
from study.config import ConfigError, make_config
from study.datasets import ImageSplits
from study.models import MODELS
from study.regularization import for_config
from study.tasks import get

pytestmark = pytest.mark.usefixtures("one_thread")

N_CLASSES = 5
CPU = torch.device("cpu")


def splits(side: int, n: int = 4) -> ImageSplits:
    rng = np.random.default_rng(side)
    x = rng.integers(0, 256, size=(n, side, side, 3), dtype=np.uint8)
    y = np.arange(n, dtype=np.int64) % N_CLASSES
    return ImageSplits(train_x=x, train_y=y, val_x=x, val_y=y, test_x=x, test_y=y,
                       classes=[f"c{i}" for i in range(N_CLASSES)], source="memory")


def task_for(values: dict, side: int):
    cfg = make_config(values)
    return get("image").build(cfg, splits(side), CPU, for_config(cfg)), cfg


def image_size_for(model: str, side: int) -> int:
    """The side itself where the model takes it; else its nearest (the task resizes on the device)."""
    spec = MODELS[model]
    if spec.input_sizes is None:
        return side
    lo, hi = spec.input_sizes
    return int(min(max(side, lo), hi))


@pytest.mark.parametrize("side", [32, 64, 224])
@pytest.mark.parametrize("model", [*MODELS, "tv:mobilenet_v3_small"])
def test_every_model_gives_one_logit_per_class_at_32_64_and_224_px(model, side):
    task, cfg = task_for({"model": model, "image_size": image_size_for(model, side)}, side)
    x, y = next(iter(task.eval_sets["val"]()))
    assert x.shape == (4, 3, side, side)
    task.model.eval()
    with torch.no_grad():
        out = task.forward(task.model, x)
    assert out.shape == (4, N_CLASSES)
    assert torch.isfinite(out).all()
    task.model.train()  # a training step at this size too (batch norm in training mode)
    loss = nn.functional.cross_entropy(task.forward(task.model, x), y)
    loss.backward()
    assert torch.isfinite(loss)


def test_resnet18_has_the_small_image_stem_up_to_64_px_and_torchvisions_above():
    small = MODELS["resnet18"].build(make_config({"model": "resnet18", "image_size": 64}), 10, {})
    large = MODELS["resnet18"].build(make_config({"model": "resnet18", "image_size": 65}), 10, {})
    assert (small.conv1.kernel_size, small.conv1.stride) == ((3, 3), (1, 1))
    assert isinstance(small.maxpool, nn.Identity)
    assert (large.conv1.kernel_size, large.conv1.stride) == ((7, 7), (2, 2))
    assert isinstance(large.maxpool, nn.MaxPool2d)
    # the last stage of the small form sees a 32 px image at 4x4 (the papers' CIFAR ResNet)
    feats = nn.Sequential(small.conv1, small.bn1, small.relu, small.maxpool, small.layer1, small.layer2,
                          small.layer3, small.layer4)
    assert feats(torch.zeros(1, 3, 32, 32)).shape == (1, 512, 4, 4)


@pytest.mark.parametrize("model", ["resnet18", "tv:resnet18", "tv:densenet121"])
def test_dropout_is_inserted_before_the_final_linear_layer_where_the_model_has_none(model):
    cfg = make_config({"model": model, "regularizer": "dropout", "dropout": 0.35, "image_size": 32})
    m = MODELS[model].build(cfg, N_CLASSES, for_config(cfg).model_hooks)
    head = m.fc if hasattr(m, "fc") else m.classifier
    assert isinstance(head, nn.Sequential) and isinstance(head[0], nn.Dropout) and head[0].p == 0.35
    assert isinstance(head[1], nn.Linear) and head[1].out_features == N_CLASSES
    assert sum(isinstance(x, nn.Dropout) for x in m.modules()) == 1
    none = MODELS[model].build(make_config({"model": model, "image_size": 32}), N_CLASSES, {})
    assert not any(isinstance(x, nn.Dropout) for x in none.modules())


def test_dropout_sets_the_classifier_dropout_a_torchvision_model_has():
    cfg = make_config({"model": "tv:vgg11", "regularizer": "dropout", "dropout": 0.3, "image_size": 32})
    m = MODELS[cfg.model].build(cfg, N_CLASSES, for_config(cfg).model_hooks)
    drops = [x for x in m.classifier if isinstance(x, nn.Dropout)]
    assert [d.p for d in drops] == [0.3, 0.3]  # VGG's two classifier dropouts, at the technique's rate
    assert isinstance(m.classifier[-1], nn.Linear) and m.classifier[-1].out_features == N_CLASSES
    # without the technique they are identities (VGG's default 0.5 would be a second regularizer)
    plain = MODELS[cfg.model].build(make_config({"model": "tv:vgg11", "image_size": 32}), N_CLASSES, {})
    assert not any(isinstance(x, nn.Dropout) for x in plain.modules())


def test_stochastic_depth_reaches_a_torchvision_model_that_has_it_and_is_off_otherwise():
    cfg = make_config({"model": "tv:efficientnet_b0", "regularizer": "stochastic_depth", "stochastic_depth": 0.4,
                       "image_size": 32})
    m = MODELS[cfg.model].build(cfg, N_CLASSES, for_config(cfg).model_hooks)
    rates = [x.p for x in m.modules() if isinstance(x, StochasticDepth)]
    assert rates[0] == 0.0 and max(rates) == pytest.approx(0.4 * 15 / 16)  # torchvision's p*i/n rule
    off = MODELS[cfg.model].build(make_config({"model": "tv:efficientnet_b0", "image_size": 32}), N_CLASSES, {})
    assert all(x.p == 0.0 for x in off.modules() if isinstance(x, StochasticDepth))  # (its default is 0.2)
    with pytest.raises(ConfigError, match="regularizer: stochastic_depth is not supported by model 'tv:resnet18'"):
        make_config({"model": "tv:resnet18", "regularizer": "stochastic_depth"})


@pytest.mark.parametrize("model,builder", [("resnet18", "resnet18"), ("tv:mobilenet_v3_small", "mobilenet_v3_small")])
def test_pretrained_weights_load_from_a_local_file_except_the_head(tmp_path, model, builder):
    import torchvision.models as tvm
    torch.manual_seed(3)
    src = tvm.get_model(builder, weights=None)  # ImageNet's 1000 classes
    torch.save(src.state_dict(), tmp_path / "w.pth")
    cfg = make_config({"model": model, "pretrained": str(tmp_path / "w.pth"), "image_size": 96,
                       "regularizer": "dropout"})
    m = MODELS[model].build(cfg, N_CLASSES, for_config(cfg).model_hooks)
    first = next(n for n, p in src.named_parameters() if p.dim() == 4)
    torch.testing.assert_close(m.get_parameter(first), src.get_parameter(first))
    assert m(torch.zeros(2, 3, 96, 96)).shape == (2, N_CLASSES)
    # another model's weights are refused, naming the setting
    torch.save(tvm.get_model("squeezenet1_1", weights=None).state_dict(), tmp_path / "other.pth")
    cfg = make_config({"model": model, "pretrained": str(tmp_path / "other.pth"), "image_size": 96})
    with pytest.raises(ConfigError, match=rf"pretrained: .*other.pth does not match model '{model}'"):
        MODELS[model].build(cfg, N_CLASSES, {})


@pytest.mark.parametrize("values,message", [
    ({"model": "resnet"}, "model: unknown value 'resnet' for task 'image'; did you mean resnet18 or tv:resnet50"),
    ({"model": "tv:resnet5"}, "did you mean tv:resnet50"),
    ({"model": "mobilenet_v3_small"}, "did you mean tv:mobilenet_v3_small?"),
    ({"model": "tv:maxvit_t", "image_size": 64}, "image_size: 64 does not fit model 'tv:maxvit_t': Input size"),
    ({"model": "resnet18", "image_size": 8}, r"image_size: 8 is out of range for model 'resnet18'; allowed: \[9, inf\)"),
])
def test_unknown_models_and_sizes_are_refused_with_close_matches(values, message):
    with pytest.raises(ConfigError, match=message):
        make_config(values)


def test_unknown_model_on_the_command_line_exits_2_with_one_line(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = train_once.main(["--model", "tv:resnet5O", "--json", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: model: unknown value 'tv:resnet5O' for task 'image'; did you mean tv:resnet50")
    assert not out.exists()
