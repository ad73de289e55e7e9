"""``tv:NAME``: any classification model of torchvision's registry, built with N outputs.

How the catalog's model techniques reach a model this project does not know:

* **dropout** (``dropout_layer``): the model's classifier dropout, i.e. the ``nn.Dropout``
  modules beside its final linear layer (VGG's two, MobileNet's, EfficientNet's, GoogLeNet's),
  is replaced by the technique's layer; a model with none there (ResNet, DenseNet, ConvNeXt,
  ViT, Swin, ...) gets one inserted before the final linear layer. Without the technique those
  sites are identities, so the techniques under study are the only regularizers.
* **stochastic depth**: where the builder takes ``stochastic_depth_prob`` (EfficientNet,
  ConvNeXt, Swin, MaxViT), it is set to the technique's rate, else 0 (their defaults are not).
* **pretrained**: a local state_dict (or ``torchvision``: the file of the model's default
  weights in the local torch hub cache); everything but the head must match.
* **image_size**: checked when the config is validated, by a forward pass on the meta device
  (no memory, no compute), so a size the model cannot take is refused before any work.
"""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..tasks.spec import ModelSpec
from .table import TV, Hooks
from .weights import load_pretrained

if TYPE_CHECKING:
    from ..config import TrialConfig

# Builder arguments some models need in this project: a single output (no auxiliary heads in
# training) and the input side of models whose positional layers depend on it.
_FIXED = {"inception_v3": {"aux_logits": False, "init_weights": True},
          "googlenet": {"aux_logits": False, "init_weights": True}}
_SIZED = {"vit_": "image_size", "maxvit_": "input_size"}


@functools.cache
def classifiers() -> tuple[str, ...]:
    import torchvision.models as tvm

    return tuple(tvm.list_models(module=tvm))


def _kwargs(name: str, num_classes: int, image_size: int | None, sd: float | None) -> dict:
    kw: dict = {"weights": None, "num_classes": num_classes, **_FIXED.get(name, {})}
    for prefix, key in _SIZED.items():
        if name.startswith(prefix) and image_size is not None:
            kw[key] = image_size if key == "image_size" else (image_size, image_size)
    if sd is not None:
        kw["stochastic_depth_prob"] = sd
    return kw


def _raw(name: str, num_classes: int, image_size: int | None, sd: float | None) -> nn.Module:
    import torchvision.models as tvm

    return tvm.get_model(name, **_kwargs(name, num_classes, image_size, sd))


@functools.cache
def _hooks(name: str) -> frozenset[str]:
    """The regularizer hooks the model takes, read off its structure: built once with two
    outputs on the meta device (no memory) where its builder allows; only the answer is kept."""
    from torchvision.ops import StochasticDepth

    try:
        with torch.device("meta"):
            m = _raw(name, 2, None, None)
    except NotImplementedError:  # (RegNet computes its widths with tensors: build it for real)
        m = _raw(name, 2, None, None)
    hooks = set()
    if _final_linear(m) is not None or _dropout_sites(m):
        hooks.add("dropout_layer")
    # torchvision's drop-path module in the model (some builders swallow unknown arguments, so
    # taking ``stochastic_depth_prob`` does not prove the model uses it)
    if any(isinstance(x, StochasticDepth) for x in m.modules()):
        hooks.add("stochastic_depth")
    return frozenset(hooks)


def _head_name(model: nn.Module) -> str | None:
    """The name of the last ``nn.Linear`` in the model's module order: its head."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return names[-1] if names else None


def _final_linear(model: nn.Module) -> tuple[nn.Module, str] | None:
    """(parent, attribute) of the head."""
    name = _head_name(model)
    if name is None:
        return None
    parent, _, attr = name.rpartition(".")
    return model.get_submodule(parent), attr


def _dropout_sites(model: nn.Module) -> list[tuple[nn.Module, str]]:
    head = _final_linear(model)
    parents = [head[0]] if head else list(model.modules())  # (SqueezeNet: a conv head, its dropout anywhere)
    return [(p, a) for p in parents for a, c in p.named_children() if isinstance(c, nn.Dropout)]


def build(name: str, cfg: TrialConfig, num_classes: int, hooks: Hooks) -> nn.Module:
    sd = hooks.get("stochastic_depth", 0.0) if "stochastic_depth" in _hooks(name) else None
    model = _raw(name, num_classes, cfg.image_size, sd)
    if cfg.pretrained:
        head = _head_name(model)  # (SqueezeNet's head is a convolution: classifier.1)
        load_pretrained(model, cfg.pretrained, TV + name, fresh=(f"{head}.",) if head else ("classifier.",))
    layer = hooks.get("dropout_layer", nn.Identity)
    sites = _dropout_sites(model)
    if sites:
        for parent, attr in sites:
            setattr(parent, attr, layer())
    else:
        parent, attr = _final_linear(model)
        setattr(parent, attr, nn.Sequential(layer(), getattr(parent, attr)))
    return model


@functools.lru_cache(maxsize=256)
def fits(name: str, image_size: int) -> str | None:
    """None when a batch of two ``image_size`` images passes through the model; else why not."""
    try:
        with torch.device("meta"):
            m = _raw(name, 2, image_size, None)
            m.eval()
            out = m(torch.empty(2, 3, image_size, image_size))
    except NotImplementedError:  # an operator without a meta kernel: the real run will tell
        return None
    except (RuntimeError, ValueError, AssertionError, IndexError) as e:
        return " ".join(str(e).split())[:200] or type(e).__name__
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, 2):
        return f"its output is {type(out).__name__} {tuple(getattr(out, 'shape', ()))}, not (batch, classes)"
    return None


def spec(key: str) -> ModelSpec | None:
    """The ModelSpec of ``tv:NAME``, or None when NAME is not one of torchvision's classifiers."""
    if not key.startswith(TV) or key[len(TV):] not in classifiers():
        return None
    return _spec(key[len(TV):])


@functools.cache
def _spec(name: str) -> ModelSpec:
    return ModelSpec(functools.partial(build, name), accepts=_hooks(name), input_sizes=None,
                     pretrained=True, fits=functools.partial(fits, name))
