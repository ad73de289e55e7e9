"""The fast paths (issue 6): on-device augmentation vs torchvision's per-image transforms, the
object-store data path, and trial packing reaching Ray's resources. CPU only, no real data."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torchvision.transforms.v2 import functional as TF

from study import tasks
from study.config import make_config
from study.regularization import for_config
from study.regularizers.augment import augment_batch
from study.tasks.image import as_tensor, to_float
from study.datasets import load_splits
from study.trainable import train

try:
    import benchmarks.epoch as bench_epoch
except ModuleNotFoundError:  # an editable install made before benchmarks/ existed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import benchmarks.epoch as bench_epoch

OFF = {"flip_lr_p": 0.0, "flip_ud_p": 0.0, "brightness": 0.0, "contrast_lo": 1.0, "contrast_hi": 1.0,
       "saturation_lo": 1.0, "saturation_hi": 1.0}


def aug_cfg(**kw):
    return make_config({"regularizer": "augment", **OFF, **kw})


def aug(**kw):
    """The augment technique's strengths: every transform off except those given."""
    return aug_cfg(**kw).strengths


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --- augmentation semantics ---------------------------------------------------------------------
@pytest.mark.parametrize("factor", [0.5, 0.8, 1.2, 1.5])
def test_contrast_with_a_fixed_factor_is_torchvisions_adjust_contrast(factor):
    x = torch.rand(12, 3, 16, 16, generator=gen(1))
    got = augment_batch(x, aug(contrast_lo=factor, contrast_hi=factor), gen())
    want = torch.stack([TF.adjust_contrast(img, factor) for img in x])
    torch.testing.assert_close(got, want, atol=2e-6, rtol=0)
    assert not torch.equal(got, x)


@pytest.mark.parametrize("factor", [0.0, 0.7, 1.3])
def test_saturation_with_a_fixed_factor_is_torchvisions_adjust_saturation(factor):
    x = torch.rand(12, 3, 16, 16, generator=gen(2))
    got = augment_batch(x, aug(saturation_lo=factor, saturation_hi=factor), gen())
    want = torch.stack([TF.adjust_saturation(img, factor) for img in x])
    torch.testing.assert_close(got, want, atol=2e-6, rtol=0)


def _mid_images(n, seed):
    """Images in [0.3, 0.7]: no transform below pushes them past [0, 1], so nothing is clamped."""
    return 0.3 + 0.4 * torch.rand(n, 3, 8, 8, generator=gen(seed))


def _recovered_factor(x, out, other):
    """Least-squares ``c`` in ``out - other = c * (x - other)``, per image."""
    a, b = (x - other).flatten(1), (out - other).flatten(1)
    return ((a * b).sum(1) / (a * a).sum(1)).numpy()


def _assert_uniform(sample, lo, hi):
    assert sample.min() >= lo - 1e-5 and sample.max() <= hi + 1e-5
    assert sample.min() < lo + 0.02 * (hi - lo) and sample.max() > hi - 0.02 * (hi - lo)  # fills the range
    assert stats.kstest(sample, stats.uniform(lo, hi - lo).cdf).pvalue > 1e-3


def test_random_contrast_factor_is_uniform_in_its_range_and_blends_like_torchvision():
    x = _mid_images(3000, 3)
    out = augment_batch(x, aug(contrast_lo=0.8, contrast_hi=1.2), gen())
    mean = TF.rgb_to_grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    c = _recovered_factor(x, out, mean)
    _assert_uniform(c, 0.8, 1.2)
    # each image is exactly torchvision's adjust_contrast with its own factor
    for i in range(0, 3000, 500):
        torch.testing.assert_close(out[i], TF.adjust_contrast(x[i], float(c[i])), atol=1e-5, rtol=0)


def test_random_saturation_factor_is_uniform_in_its_range():
    x = _mid_images(3000, 4)
    out = augment_batch(x, aug(saturation_lo=0.7, saturation_hi=1.3), gen())
    s = _recovered_factor(x, out, TF.rgb_to_grayscale(x))
    _assert_uniform(s, 0.7, 1.3)
    for i in range(0, 3000, 500):
        torch.testing.assert_close(out[i], TF.adjust_saturation(x[i], float(s[i])), atol=1e-5, rtol=0)


def test_brightness_adds_one_uniform_delta_per_image_within_max_delta():
    x = torch.full((4000, 3, 4, 4), 0.5)
    out = augment_batch(x, aug(brightness=0.4), gen())
    delta = out - x
    per_image = delta[:, 0, 0, 0]
    assert torch.equal(delta, per_image.view(-1, 1, 1, 1).expand_as(delta))  # one delta per image
    _assert_uniform(per_image.numpy(), -0.4, 0.4)
    # clamped to [0, 1] as tf.image.random_brightness + the reference transform do
    hi = augment_batch(torch.full((500, 3, 2, 2), 0.9), aug(brightness=0.4), gen())
    assert hi.max() == 1.0 and hi.min() >= 0.5 - 1e-6
    ref = bench_epoch.AdditiveBrightness(0.4)
    torch.manual_seed(0)
    assert all(0.5 <= float(ref(torch.full((3, 2, 2), 0.9)).min()) <= 1.0 for _ in range(200))


def _flip_flags(x, out):
    """Per image: was it flipped left-right, up-down (torchvision's per-image flips)?"""
    def same(a, b):
        return (a == b).flatten(1).all(1)
    variants = {(False, False): x, (True, False): TF.horizontal_flip(x), (False, True): TF.vertical_flip(x),
                (True, True): TF.vertical_flip(TF.horizontal_flip(x))}
    hits = {k: same(out, v) for k, v in variants.items()}
    assert torch.stack(list(hits.values())).sum(0).eq(1).all()  # exactly one variant: nothing but flips
    lr = (hits[True, False] | hits[True, True]).numpy()
    ud = (hits[False, True] | hits[True, True]).numpy()
    return lr, ud


@pytest.mark.parametrize("p_lr,p_ud", [(0.5, 0.2), (0.1, 0.9)])
def test_flip_frequencies_match_their_probabilities_independently(p_lr, p_ud):
    n = 4000
    base = torch.arange(12.0).view(1, 3, 2, 2) / 12  # every flip of it is distinct
    x = base.repeat(n, 1, 1, 1)
    out = augment_batch(x, aug(flip_lr_p=p_lr, flip_ud_p=p_ud), gen())
    lr, ud = _flip_flags(x, out)
    for got, p in ((lr.mean(), p_lr), (ud.mean(), p_ud), ((lr & ud).mean(), p_lr * p_ud)):
        assert abs(got - p) < 4.5 * np.sqrt(p * (1 - p) / n), (got, p)


def test_flip_probability_one_and_zero_are_certain():
    x = torch.rand(64, 3, 5, 5, generator=gen(5))
    torch.testing.assert_close(augment_batch(x, aug(flip_lr_p=1.0), gen()), TF.horizontal_flip(x))
    torch.testing.assert_close(augment_batch(x, aug(flip_ud_p=1.0), gen()), TF.vertical_flip(x))


def test_batched_augmentation_matches_the_reference_per_image_pipeline_statistically():
    """The study's default settings: our batch vs the benchmark's torchvision per-image transforms
    (RandomHorizontalFlip, RandomVerticalFlip, additive brightness, ColorJitter contrast then
    saturation) on copies of one image: same distribution of per-image mean, spread and flips."""
    from PIL import Image

    cfg = make_config({"regularizer": "augment"})  # the study's values
    rng = np.random.default_rng(0)
    img = (rng.random((8, 8, 3)) * 120 + 60).astype(np.uint8)
    img[:4, :, 0] = 230  # asymmetric, so flips are visible in the statistics below
    n = 1500
    ref_t = bench_epoch.reference_transform(cfg, True, (0.5,) * 3, (0.25,) * 3).transforms[:-1]  # all but Normalize
    torch.manual_seed(0)
    pil = Image.fromarray(img)
    ref = []
    for _ in range(n):
        out = pil
        for t in ref_t:
            out = t(out)
        ref.append(out)
    ref = torch.stack(ref)
    ours = augment_batch(to_float(torch.from_numpy(img)[None].expand(n, -1, -1, -1).contiguous()), cfg.strengths,
                         gen())

    def features(b):
        top_red = b[:, 0, :4].mean(dim=(1, 2)) - b[:, 0, 4:].mean(dim=(1, 2))  # sign: ud flip
        return {"mean": b.mean(dim=(1, 2, 3)), "std": b.std(dim=(1, 2, 3)),
                "grey_std": TF.rgb_to_grayscale(b).std(dim=(1, 2, 3)), "ud": (top_red > 0).float()}

    fr, fo = features(ref), features(ours)
    for k in ("mean", "std", "grey_std"):
        assert stats.ks_2samp(fr[k].numpy(), fo[k].numpy()).pvalue > 1e-3, k
    assert abs(float(fr["ud"].mean() - fo["ud"].mean())) < 0.07


# --- identity when off, never on evaluation ------------------------------------------------------
@pytest.fixture(scope="module")
def splits(tiny_zip, tmp_path_factory):
    return load_splits(make_config({"data": str(tiny_zip), "classes": 4,
                                    "cache_dir": str(tmp_path_factory.mktemp("cache"))}))


def build(cfg, splits):
    return tasks.get("image").build(cfg, splits, torch.device("cpu"), for_config(cfg))


def _epoch(cfg, splits, seed=0):
    task = build(cfg, splits)
    xs, ys = zip(*task.train_batches(gen(seed)))
    return task, torch.cat(xs), torch.cat(ys)


def test_augmentation_is_identity_when_disabled_or_neutral(splits):
    order = torch.randperm(len(splits.train_y), generator=gen(0))
    want = to_float(torch.from_numpy(splits.train_x)[order])
    for cfg in (make_config({"classes": 4, "batch_size": 16, "regularizer": "none"}),
                make_config({"classes": 4, "batch_size": 16, **aug_cfg().to_dict()})):
        _, x, y = _epoch(cfg, splits)
        assert torch.equal(x, want) and torch.equal(y, torch.from_numpy(splits.train_y)[order])
    _, x, _ = _epoch(make_config({"classes": 4, "batch_size": 16, "regularizer": "augment"}), splits)
    assert not torch.equal(x, want) and x.shape == want.shape and 0 <= x.min() and x.max() <= 1


def test_evaluation_batches_are_never_augmented(splits):
    cfg = make_config({"classes": 4, "batch_size": 16, "eval_batch_size": 7, "regularizer": "augment",
                       "flip_lr_p": 1.0, "flip_ud_p": 1.0})
    task, _, _ = _epoch(cfg, splits)
    for name, (xa, ya) in {"val": (splits.val_x, splits.val_y), "test": (splits.test_x, splits.test_y)}.items():
        xs, ys = zip(*task.eval_sets[name]())
        assert torch.equal(torch.cat(xs), to_float(torch.from_numpy(xa))), name
        assert torch.equal(torch.cat(ys), torch.from_numpy(ya))
    xs, _ = zip(*task.eval_sets["train_clean"]())
    clean = torch.cat(xs)
    train = to_float(torch.from_numpy(splits.train_x))
    assert all((train == img).flatten(1).all(1).any() for img in clean)  # raw training images


def test_gpu_only_settings_are_inert_on_cpu(splits):
    cfg = make_config({"classes": 4, "batch_size": 16, "channels_last": True, "amp": True})
    task = build(cfg, splits)
    conv = task.model.features[0].weight
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)
    x = next(task.train_batches(gen()))[0]
    assert x.dtype == torch.float32 and task.forward(task.model, x).dtype == torch.float32


# --- the object store ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    """A local cluster that also declares one (fake) GPU, so fractional GPU requests can be placed.
    Reuses a cluster that is already up (a session fixture), shutting down only its own."""
    import ray
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, num_gpus=1, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


def test_object_store_gives_the_disk_cache_arrays_zero_copy(ray_cluster, splits, tiny_zip, tmp_path):
    ray = ray_cluster
    fields = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
    cfg = make_config({"data": str(tiny_zip), "classes": 4, "cache_dir": str(tmp_path / "c")})
    from_disk = load_splits(cfg)  # decodes into a fresh cache
    cached = load_splits(cfg)  # and reads it back
    ref = ray.put(from_disk)
    got = ray.get(ref)
    for f in fields:
        for other in (from_disk, cached, splits):
            a, b = getattr(got, f), getattr(other, f)
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), f
    assert got.classes == from_disk.classes and got.source == from_disk.source
    assert not got.train_x.flags.writeable  # a view of the shared store, not a private copy
    t = as_tensor(got.train_x, torch.device("cpu"))
    assert t.data_ptr() == got.train_x.ctypes.data  # and the trial's tensor is that same memory

    @ray.remote(num_cpus=0)
    def checksum(data):  # what a trial sees: the ref resolved in a worker process
        return {f: (getattr(data, f).shape, int(getattr(data, f).astype(np.int64).sum()),
                    bool(getattr(data, f).flags.writeable)) for f in fields}

    remote = ray.get(checksum.remote(ref))
    for f in fields:
        a = getattr(from_disk, f)
        assert remote[f][:2] == (a.shape, int(a.astype(np.int64).sum())), f
        assert remote[f][2] is False, f


# --- packing --------------------------------------------------------------------------------------
def test_packing_settings_reach_the_trainables_resources(tmp_path):
    from study import sweep
    for cpus, gpus in ((1.0, 0.0), (0.5, 0.25), (2.0, 1 / 3)):
        s = sweep.SweepSettings(name="p", results_dir=tmp_path, num_samples=1, cpus_per_trial=cpus,
                                gpus_per_trial=gpus)
        trainable = sweep.make_trainable(train, {"task": "image"}, None, s)
        req = trainable._resources
        want = {"CPU": cpus, "GPU": gpus} if gpus else {"CPU": cpus}
        assert [{k: v for k, v in b.items() if v} for b in req.bundles] == [want], req.bundles
        assert {k: v for k, v in req.required_resources.items() if v} == want


class _Stop(Exception):
    pass


def test_gpus_per_trial_flag_reaches_ray_end_to_end(ray_cluster, tiny_zip, tmp_path, monkeypatch, cache_dir):
    """--cpus-per-trial/--gpus-per-trial -> SweepSettings -> tune.with_resources, through study.run."""
    ray = ray_cluster
    if ray.cluster_resources().get("GPU", 0) < 0.25:
        pytest.skip("the Ray cluster in this session declares no GPU")
    from study import run, sweep
    seen = {}

    def fake_search(s, space, data, resume):
        seen["request"] = sweep.make_trainable(train, space.fixed, None, s)._resources.required_resources
        seen["train"] = len(ray.get(data).train_y)  # one copy in the object store
        raise _Stop

    monkeypatch.setattr(sweep, "run_search", fake_search)
    with pytest.raises(_Stop):
        run.main(["--space", "none", "--data", str(tiny_zip), "--classes", "4", "--max-epochs", "1",
                  "--num-samples", "1", "--cpus-per-trial", "0.5", "--gpus-per-trial", "0.25",
                  "--results-dir", str(tmp_path), "--name", "pack"])
    assert seen == {"request": {"CPU": 0.5, "GPU": 0.25}, "train": 72}
    # asking for more GPU than the cluster has is refused before anything runs
    assert run.main(["--space", "none", "--data", str(tiny_zip), "--classes", "4", "--gpus-per-trial", "2",
                     "--results-dir", str(tmp_path), "--name", "pack2"]) == 2
