"""Paired seeds: seed k gives every technique the same initial weights and the same data order
(the order of training samples in every epoch), so a comparison's runs differ by the technique
alone and the analysis can pair them by seed. Checked for every technique of the catalog on
each task's models; techniques draw their own randomness (augmentation, mixing, word dropout)
from a stream of their own, and dropout masks from torch's global generator after the model is
built."""
from __future__ import annotations

import pytest
import torch

from posgen import make_nltk_data
from study import regularizers, tasks
from study.config import ConfigError, make_config
from study.regularizers import MixedTargets
from study.training import _setup

SEED = 3
# (task, model): the models whose hooks together take every technique of the task
MODELS = [("image", "alexnet"), ("image", "efficientnet_b0"), ("pos", "rnn")]


def techniques(task: str, model: str) -> list[str]:
    """Every technique the model takes (defaults: each technique on), and the study's ensemble."""
    out = []
    for name in [*regularizers.names(task), "l2+dropout"]:
        try:
            make_config({"task": task, "model": model, "regularizer": name})
        except ConfigError:
            continue
        out.append(name)
    return out


@pytest.fixture(scope="module")
def data(tiny_zip, tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("cache"))
    nd = make_nltk_data(tmp_path_factory.mktemp("nd"), "treebank", n=60)
    image = {"data": str(tiny_zip), "classes": 4, "cache_dir": cache, "batch_size": 16}
    pos = {"task": "pos", "nltk_data": str(nd), "batch_size": 8, "hidden": 16, "embed_dim": 16}
    return {"image": (image, tasks.get("image").load(make_config(image))),
            "pos": (pos, tasks.get("pos").load(make_config(pos)))}


def start(settings: dict, data, model: str, regularizer: str, seed: int = SEED):
    """(initial weights, the targets of two epochs of training batches in order, the order
    stream's state after them, the inputs when the technique leaves them alone)."""
    cfg = make_config({**settings, "model": model, "regularizer": regularizer, "seed": seed, "device": "cpu"})
    t = _setup(cfg, data, "cpu")
    weights = {k: v.clone() for k, v in t.task.model.state_dict().items()}
    order, inputs = [], []
    for _ in range(2):
        for x, y in t.task.train_batches(t.gen, t.aug_gen):
            order.append((y.y_a if isinstance(y, MixedTargets) else y).clone())
            if not t.reg.transforms_batches:
                inputs.append((x[0] if isinstance(x, tuple) else x).clone())
    return weights, order, t.gen.get_state(), inputs


@pytest.mark.parametrize("task,model", MODELS)
def test_seed_gives_every_technique_the_same_weights_and_data_order(data, one_thread, task, model):
    settings, d = data[task]
    names = techniques(task, model)
    assert "none" in names and len(names) >= (2 if model == "efficientnet_b0" else 8)
    w0, order0, stream0, inputs0 = start(settings, d, model, "none")
    for name in names:
        w, order, stream, inputs = start(settings, d, model, name)
        assert w.keys() == w0.keys() and all(torch.equal(w[k], w0[k]) for k in w0), (name, "initial weights")
        assert len(order) == len(order0) and all(torch.equal(a, b) for a, b in zip(order, order0)), \
            (name, "data order")
        # the order stream drew exactly what none's did (the order comes from it alone), and a
        # technique that leaves the inputs alone sees none's samples, sample for sample
        assert torch.equal(stream, stream0), (name, "order stream")
        assert all(torch.equal(a, b) for a, b in zip(inputs, inputs0)), (name, "samples")
    # (a control: another seed gives other weights and another order)
    w1, order1, _, _ = start(settings, d, model, "none", seed=SEED + 1)
    assert not all(torch.equal(w1[k], w0[k]) for k in w0)
    assert not all(torch.equal(a, b) for a, b in zip(order1, order0))


def test_every_technique_of_the_catalog_is_covered():
    covered = {n for task, model in MODELS for n in techniques(task, model)}
    assert set(regularizers.names()) <= covered


def test_a_checkpoint_from_one_stream_continues_on_one_stream(data, one_thread):
    """A checkpoint written before the augmentation stream existed (no "aug_generator") resumes
    with both drawn from the order stream, as they were when it was written."""
    settings, d = data["image"]
    cfg = make_config({**settings, "model": "alexnet", "regularizer": "augment", "seed": SEED, "device": "cpu"})
    t = _setup(cfg, d, "cpu")
    state = t.state()
    assert state["aug_generator"] is not None
    old = {k: v for k, v in state.items() if k != "aug_generator"}
    t2 = _setup(cfg, d, "cpu")
    t2.restore(old)
    assert t2.aug_gen is t2.gen and t2.state()["aug_generator"] is None
    t3 = _setup(cfg, d, "cpu")
    t.aug_gen.manual_seed(99)
    t3.restore(t.state())
    assert t3.aug_gen is not t3.gen and torch.equal(t3.aug_gen.get_state(), t.aug_gen.get_state())
