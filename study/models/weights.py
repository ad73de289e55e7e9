"""Pretrained weights, from a local file only (a test or an offline node must never download)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

# torchvision's default weights file of the models built by name (not tv:NAME, which asks
# torchvision's registry), in the torch hub cache
HUB_FILES = {"efficientnet_b0": "efficientnet_b0_rwightman-7f5810bc.pth",
             "resnet18": "resnet18-f37072fd.pth"}


def pretrained_path(value: str, model: str = "efficientnet_b0") -> Path:
    """The weights file a ``pretrained`` setting names: a path, or ``torchvision`` for the file
    torchvision would download, looked up in the local torch hub cache only."""
    if value == "torchvision":
        if model.startswith("tv:"):
            from torchvision.models import get_model_weights

            name = os.path.basename(get_model_weights(model[3:]).DEFAULT.url)
        else:
            name = HUB_FILES[model]
        return Path(torch.hub.get_dir()) / "checkpoints" / name
    return Path(os.path.expanduser(value))  # (Path.expanduser raises for an unknown ~user)


def load_pretrained(model: nn.Module, value: str, model_name: str, fresh: tuple[str, ...]) -> None:
    """Load the state_dict ``value`` names into ``model``; the parameters under the prefixes
    ``fresh`` (the head, whose size is the number of classes, and any layer this project
    reshapes) keep their fresh initialisation when their shapes differ. Anything else that is
    missing, unexpected or of another shape is a ConfigError: the file is not for this model."""
    from ..config import ConfigError  # (a file the user gave that cannot be used: exit 2)

    path = pretrained_path(value, model_name)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained: weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise TypeError(f"a {type(state).__name__}, not a dict of tensors")
    except Exception as e:  # noqa: BLE001 - torch.load raises many kinds for a damaged file
        raise ConfigError(f"pretrained: {path} is not a PyTorch state_dict ({' '.join(str(e).split())[:200]})") from None
    own = model.state_dict()
    skipped = [k for k, v in state.items() if k.startswith(fresh) and k in own and own[k].shape != v.shape]
    state = {k: v for k, v in state.items() if k not in skipped}
    wrong = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if k not in wrong}, strict=False)
    missing = [k for k in missing if k not in skipped]
    if wrong or unexpected or missing:
        raise ConfigError(f"pretrained: {path} does not match model {model_name!r} (missing {missing[:3]}, "
                          f"unexpected {unexpected[:3]}, other shapes {wrong[:3]})")
    if skipped:
        log.info("pretrained: %s loaded except %s (new shapes: trained from scratch)", path, ", ".join(skipped))
