"""ImageFolder: both layouts as a directory and a zip, every image mode, the resize rule, splits
(given and carved), statistics from train only, the cache key, and bad trees."""
from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from imagefoldergen import KINDS, cls, image_name, make_imagefolder, three_bands, tree, write
from study import train_once
from study.config import make_config
from study.datasets import DataError, load_arrays, load_splits
from study.datasets.splits import channel_stats

SIZE = 60  # not the default 64: the decoded side must follow image_size (alexnet takes 57..88)


def cfg_for(path, **kw):
    return make_config({"dataset": "imagefolder", "data": str(path), "image_size": SIZE, **kw})


def digests(x: np.ndarray) -> set[str]:
    return {hashlib.md5(np.ascontiguousarray(i).tobytes()).hexdigest() for i in x}


def colours(x: np.ndarray) -> set[str]:
    """The colours of a set of images: "red", "blue" or "grey" (the L and I;16 images)."""
    m = np.asarray(x, dtype=np.float64).mean(axis=(1, 2))
    return {"grey" if np.ptp(c) < 3 else "red" if c[0] > c[2] + 50 else "blue" if c[2] > c[0] + 50 else "?"
            for c in m}


RED, BLUE = {"red", "grey"}, {"blue", "grey"}  # the training images; given val/ and test/ images


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    d = tmp_path_factory.mktemp("if")
    return {
        ("pool", "dir"): make_imagefolder(d / "pool"),
        ("pool", "zip"): make_imagefolder(d / "pool.zip", as_zip=True, wrapper="my_photos"),
        ("split", "dir"): make_imagefolder(d / "split", layout="split", wrapper="wrapped"),
        ("split", "zip"): make_imagefolder(d / "split.zip", layout="split", as_zip=True),
        ("split3", "zip"): make_imagefolder(d / "split3.zip", layout="split", as_zip=True, test_per_class=2),
    }


@pytest.mark.parametrize("layout,form", [("pool", "dir"), ("pool", "zip"), ("split", "dir"), ("split", "zip"),
                                         ("split3", "zip")])
def test_layouts_as_directory_and_zip(trees, cache_dir, layout, form):
    arrays, listing, _ = load_arrays(cfg_for(trees[layout, form]))
    assert listing.classes == [cls(0), cls(1), cls(2)]
    given = {"pool": ["train"], "split": ["train", "val"], "split3": ["train", "val", "test"]}[layout]
    assert sorted(k[:-2] for k in arrays if k.endswith("_x")) == sorted(given)
    # hidden files, __MACOSX/, README.md and notes.txt are not images: only the generated ones count
    assert np.bincount(arrays["train_y"]).tolist() == [10, 12, 15]
    for s in given:
        x = arrays[f"{s}_x"]
        assert x.dtype == np.uint8 and x.shape[1:] == (SIZE, SIZE, 3)
        assert colours(x) == (RED if s == "train" else BLUE)  # each split is its own folder's images
    if "val" in given:
        assert np.bincount(arrays["val_y"]).tolist() == [3, 3, 3]
    if "test" in given:
        assert np.bincount(arrays["test_y"]).tolist() == [2, 2, 2]


def test_zip_and_directory_decode_identically(tmp_path, cache_dir):
    a = load_splits(cfg_for(make_imagefolder(tmp_path / "a.zip", as_zip=True)))
    d = load_splits(cfg_for(make_imagefolder(tmp_path / "d")))
    for name in ("train_x", "train_y", "val_x", "test_y"):
        np.testing.assert_array_equal(getattr(a, name), getattr(d, name))


def test_every_mode_becomes_rgb_of_the_right_colour(trees, cache_dir):
    arrays, _, _ = load_arrays(cfg_for(trees["pool", "dir"]))
    x = arrays["train_x"][:10]  # class 0's images in name order: image k has kind KINDS[k % 8]
    for k, (fmt, ext, mode) in enumerate(KINDS):
        img = x[k].astype(int)
        if mode in ("L", "I;16"):  # grey: three equal channels
            assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all(), mode
        else:  # RGB, RGBA (alpha dropped, colour kept), CMYK, palette, WebP: red as painted
            r, g, b = img.mean(axis=(0, 1))
            assert r > 150 and g < 90 and b < 90, (fmt, mode, r, g, b)


def test_resize_rule_shorter_side_then_centre_crop(tmp_path, cache_dir):
    files = tree(per_class=(3, 3, 3))
    files[f"{cls(0)}/aaa_known.png"] = three_bands(90, 30)  # first in class 0's name order
    arrays, _, _ = load_arrays(cfg_for(write(files, tmp_path / "t")))
    got = arrays["train_x"][0]
    # the rule, computed here with PIL alone: 90x30 -> shorter side 60 -> 180x60 (bilinear,
    # antialiased), then the centre 60x60 square: columns 60..119, the green band
    im = Image.open(io.BytesIO(three_bands(90, 30))).convert("RGB").resize((180, 60), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(got, np.asarray(im.crop((60, 0, 120, 60))))
    inner = got[:, 2:-2].astype(int)  # (the outer columns blend in a little of the neighbouring bands)
    assert inner[..., 1].min() >= 250 and inner[..., 0].max() <= 5 and inner[..., 2].max() <= 5


def test_pool_splits_are_stratified_disjoint_and_seeded(trees, cache_dir):
    cfg = cfg_for(trees["pool", "zip"], val_fraction=0.2, test_fraction=0.2)
    s = load_splits(cfg)
    # test first (20% of 10, 12, 15: 2, 2, 3), then validation (20% of what is left: 8, 10, 12)
    assert np.bincount(s.test_y).tolist() == [2, 2, 3]
    assert np.bincount(s.val_y).tolist() == [2, 2, 2]
    assert np.bincount(s.train_y).tolist() == [6, 8, 10]
    d = {n: digests(getattr(s, f"{n}_x")) for n in ("train", "val", "test")}
    assert [len(v) for v in d.values()] == [24, 6, 7]  # every image unique: 37 images, 37 digests
    assert not d["train"] & d["val"] and not d["train"] & d["test"] and not d["val"] & d["test"]
    again = load_splits(cfg)
    np.testing.assert_array_equal(s.val_x, again.val_x)
    other = load_splits(cfg_for(trees["pool", "zip"], val_fraction=0.2, test_fraction=0.2, split_seed=1))
    assert digests(other.test_x) != d["test"]


def test_given_splits_are_used_as_given(trees, cache_dir):
    s = load_splits(cfg_for(trees["split3", "zip"]))
    assert s.sizes() == {"train": 37, "val": 9, "test": 6}  # nothing carved
    assert colours(s.val_x) == colours(s.test_x) == BLUE and colours(s.train_x) == RED
    s = load_splits(cfg_for(trees["split", "zip"]))  # no test/: carved out of train/, val/ as given
    assert np.bincount(s.test_y).tolist() == [1, 1, 2] and np.bincount(s.val_y).tolist() == [3, 3, 3]
    assert colours(s.test_x) == RED and colours(s.val_x) == BLUE
    assert not digests(s.train_x) & digests(s.test_x)


def test_train_folder_alone_has_validation_and_test_carved(tmp_path, cache_dir):
    files = {k: v for k, v in tree("split").items() if not k.startswith("val/")}
    s = load_splits(cfg_for(write(files, tmp_path / "t")))
    assert np.bincount(s.test_y).tolist() == [1, 1, 2] and np.bincount(s.val_y).tolist() == [1, 1, 1]
    assert colours(s.val_x) == colours(s.test_x) == colours(s.train_x) == RED
    assert len(digests(s.train_x) | digests(s.val_x) | digests(s.test_x)) == 37


@pytest.mark.parametrize("layout", ["pool", "split3"])
def test_statistics_come_from_the_training_split_only(trees, cache_dir, layout):
    s = load_splits(cfg_for(trees[layout, "zip"]))
    assert (s.mean, s.std) == channel_stats(np.asarray(s.train_x))
    everything = channel_stats(np.concatenate([s.train_x, s.val_x, s.test_x]))
    if layout == "split3":  # val/ and test/ are blue: a leak would lower red and raise blue
        assert s.mean[0] > everything[0][0] + 0.05 and s.mean[2] < everything[0][2] - 0.05
    assert s.mean[0] > 0.7 and s.mean[2] < 0.3  # the red training images alone
    cached = [json.loads(p.read_text()) for p in (cache_dir / "decoded").glob("*/stats-*.json")]
    assert [c["mean"] for c in cached] == [list(s.mean)] and cached[0]["n_train"] == len(s.train_y)


def test_first_n_classes_and_class_list(trees, cache_dir):
    arrays, listing, _ = load_arrays(cfg_for(trees["split", "dir"], classes=2))
    assert listing.classes == [cls(0), cls(1)] and np.bincount(arrays["train_y"]).tolist() == [10, 12]
    arrays, listing, _ = load_arrays(cfg_for(trees["split", "dir"], class_list=f"{cls(2)},{cls(0)}"))
    assert listing.classes == [cls(0), cls(2)] and np.bincount(arrays["train_y"]).tolist() == [10, 15]
    with pytest.raises(DataError, match=f"class_list: 'dog' is not a class folder of .*; allowed: {cls(0)}, "):
        load_arrays(cfg_for(trees["split", "dir"], class_list=f"dog,{cls(0)}"))


def test_cache_key_follows_image_size_and_the_files(tmp_path, cache_dir, monkeypatch):
    src = make_imagefolder(tmp_path / "t", per_class=(3, 3, 3))
    first, _, cdir = load_arrays(cfg_for(src))
    assert load_arrays(cfg_for(src))[2] == cdir
    with monkeypatch.context() as m:
        m.setattr("study.datasets.image_files.decode", lambda *a, **k: pytest.fail("decoded again"))
        load_arrays(cfg_for(src))  # unchanged: from the cache
    bigger, _, cdir64 = load_arrays(cfg_for(src, image_size=64))
    assert cdir64 != cdir and bigger["train_x"].shape[1:3] == (64, 64)
    (src / cls(1) / "notes2.txt").write_text("not an image")  # not an image: same entry
    assert load_arrays(cfg_for(src))[2] == cdir
    (src / image_name("train", 1, 0)).rename(src / cls(1) / "renamed.png")
    assert load_arrays(cfg_for(src))[2] != cdir


# --- bad trees ----------------------------------------------------------------------------------
@pytest.mark.parametrize("as_zip", [False, True])
def test_corrupt_image_is_named_and_nothing_is_cached(tmp_path, cache_dir, as_zip):
    bad = image_name("train", 1, 4)
    src = make_imagefolder(tmp_path / ("t.zip" if as_zip else "t"), corrupt=bad, as_zip=as_zip)
    where = f"{src}:{bad}" if as_zip else str(src / bad)
    with pytest.raises(DataError, match=f"^corrupt image {where}: "):
        load_arrays(cfg_for(src))
    assert not (cache_dir / "decoded").exists() or not any((cache_dir / "decoded").iterdir())


@pytest.mark.parametrize("layout,folder", [("pool", cls(3)), ("split", f"train/{cls(3)}"), ("split", f"val/{cls(1)}")])
@pytest.mark.parametrize("as_zip", [False, True])
def test_class_folder_without_images_is_named(tmp_path, cache_dir, layout, folder, as_zip):
    files = tree(layout)
    if folder == f"val/{cls(1)}":  # its images removed; a non-image file stays
        files = {k: v for k, v in files.items() if not k.startswith(f"{folder}/") or k.endswith(".txt")}
        folders = ()
    else:
        folders = (folder,)
    src = write(files, tmp_path / ("t.zip" if as_zip else "t"), as_zip=as_zip, empty_dirs=folders)
    name = folder.split("/")[-1]
    with pytest.raises(DataError, match=f"^class {name} has no images: .*{folder} holds no file with an image"):
        load_arrays(cfg_for(src))


@pytest.mark.parametrize("case,message", [
    ("top_images", "{src}/a.png: an image outside a class folder; expected CLASS/IMAGE. Accepted layouts: "),
    ("val_only", "{src} has val/ but no train/; accepted layouts: "),
    ("beside", "{src}/{c}: a folder beside train/, val/ that is not a split (split folders are named train, "
               "val, test); accepted layouts: "),
    ("loose_in_train", "{src}/train/x.png: an image outside a class folder; expected train/CLASS/IMAGE. "),
    ("unknown_val_class", "{src}/val/dog: class 'dog' is not a class of train/ (a val/ class folder must have "
                          "one in train/)"),
    ("one_class", "{src}: 1 class folder ({c}); a classifier needs at least two. Accepted layouts: "),
    ("no_folders", "{src}: no class folders; accepted layouts: "),
    ("not_zip", "{src} is neither a directory nor a zip archive"),
    ("missing", "data not found: {src} (give an ImageFolder directory or zip: CLASS/IMAGE (one pool"),
])
def test_wrong_layout_says_which_layouts_are_accepted(tmp_path, cache_dir, case, message):
    png = tree(per_class=(1, 1, 1))[image_name("train", 1, 0)]  # (a PNG)
    files = {"pool": tree(per_class=(3, 3, 3)), "split": tree("split", per_class=(3, 3, 3))}
    src = tmp_path / "t"
    if case == "top_images":
        write({**files["pool"], "a.png": png}, src)
    elif case == "val_only":
        write({k: v for k, v in files["split"].items() if not k.startswith("train/")}, src)
    elif case == "beside":
        write({**files["split"], f"{cls(0)}/x.png": png}, src)
    elif case == "loose_in_train":
        write({**files["split"], "train/x.png": png}, src)
    elif case == "unknown_val_class":
        write({**files["split"], "val/dog/x.png": png}, src)
    elif case == "one_class":
        write({k: v for k, v in files["pool"].items() if k.startswith(cls(0))}, src)
    elif case == "no_folders":
        write({"README.md": b"x"}, src)
    elif case == "not_zip":
        src = tmp_path / "t.zip"
        src.write_text("hello")
    with pytest.raises(DataError) as e:
        load_arrays(cfg_for(src))
    assert str(e.value).startswith(message.format(src=src, c=cls(0))), str(e.value)


def test_a_train_once_run_on_an_imagefolder(tmp_path, cache_dir, one_thread, capsys):
    src = make_imagefolder(tmp_path / "t.zip", as_zip=True, layout="split")
    out = tmp_path / "run.json"
    rc = train_once.main(["--dataset", "imagefolder", "--data", str(src), "--epochs", "1", "--batch-size", "16",
                          "--set", "image_size=57", "--json", str(out)])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert doc["config"]["dataset"] == "imagefolder" and doc["config"]["classes"] is None
    assert len(doc["epochs"]) == 1 and 0.0 <= doc["test"]["test_acc"] <= 1.0


def test_example_space_takes_the_data_from_the_command_line(trees):
    from study.spaces import load_space

    space = load_space("imagefolder_example")
    assert "data" not in space.fixed and "--data PATH" in space.description
    cfg = make_config({**space.fixed, "data": str(trees["pool", "zip"])})  # what study.run --data does
    assert (cfg.dataset, cfg.image_size, cfg.classes) == ("imagefolder", 64, None)


@pytest.mark.parametrize("pool", [False, True])
def test_tiny_imagenet_relaid_out_reads_as_the_same_images(tiny_zip, tmp_path, cache_dir, pool):
    """tests/tiny_to_imagefolder.py (the real run's helper): the re-laid tree holds the official
    images, and at their own size (64) the ImageFolder decode gives the very same pixels."""
    from datagen import wnid
    from tiny_to_imagefolder import relayout

    out = tmp_path / "if"
    assert relayout(tiny_zip, out, pool=pool) == {"train": 80, "val": 20}
    tin, tin_listing, _ = load_arrays(make_config({"data": str(tiny_zip), "classes": 4}))
    got, listing, _ = load_arrays(cfg_for(out, image_size=64))
    assert listing.classes == tin_listing.classes == [wnid(i) for i in range(4)]  # (2 wnids have no images)
    if pool:
        assert np.bincount(got["train_y"]).tolist() == [25] * 4 and "val_x" not in got
        assert digests(got["train_x"]) == digests(tin["train_x"]) | digests(tin["test_x"])
    else:
        np.testing.assert_array_equal(got["train_x"], tin["train_x"])  # same files, same order
        np.testing.assert_array_equal(got["train_y"], tin["train_y"])
        assert digests(got["val_x"]) == digests(tin["test_x"])  # the official val set, now val/
