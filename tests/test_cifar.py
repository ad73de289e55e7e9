"""CIFAR-10 / CIFAR-100: the official pickle layout as .tar.gz and as a directory, fine labels,
class choice, splits, download (real HTTP on 127.0.0.1) and damaged or hostile files."""
from __future__ import annotations

import hashlib
import io
import os
import pickle

import numpy as np
import pytest

from cifargen import CIFAR10_NAMES, cifar10_files, cifar100_files, cifar100_names, image, make_cifar, py2_pickle
from study.config import make_config
from study.datasets import DataError, load_arrays, load_splits
from study.datasets.splits import channel_stats
from study.download import DownloadError

MODEL = {"model": "efficientnet_b0", "image_size": 64}  # (accepts 32 px stored images; resized on device)


def cfg_for(which, path, **kw):
    return make_config({"dataset": which, "data": str(path), **MODEL, **kw})


def pixel_ids(x: np.ndarray) -> list[tuple[int, int, int]]:
    """(label, k, split) painted in pixel (0, 0) by the fixture."""
    return [tuple(int(v) for v in img[0, 0]) for img in x]


@pytest.fixture(scope="module")
def c10(tmp_path_factory):
    d = tmp_path_factory.mktemp("c10")
    return make_cifar(d / "cifar-10-python.tar.gz"), make_cifar(d / "extracted", as_tar=False)


@pytest.mark.parametrize("form", ["tar", "parent", "root"])
def test_cifar10_from_archive_and_directory(c10, cache_dir, form):
    tar, parent = c10
    path = {"tar": tar, "parent": parent, "root": parent / "cifar-10-batches-py"}[form]
    arrays, listing, _ = load_arrays(cfg_for("cifar10", path))
    assert listing.classes == CIFAR10_NAMES
    assert arrays["train_x"].shape == (50, 32, 32, 3) and arrays["train_x"].dtype == np.uint8
    assert arrays["test_x"].shape == (20, 32, 32, 3)  # the official test batch is the test set
    assert np.bincount(arrays["train_y"]).tolist() == [5] * 10
    # the plane layout (R, G, B planes, row-major) becomes HWC: every image is the one the fixture
    # drew for its label, pixel for pixel
    for x, y in zip(arrays["train_x"], arrays["train_y"]):
        lab, k, split = (int(v) for v in x[0, 0])
        assert (lab, split) == (y, 0)
        np.testing.assert_array_equal(x, image(lab, k, split))
    assert sorted(pixel_ids(arrays["test_x"])) == [(c, k, 1) for c in range(10) for k in range(2)]


def test_archive_and_directory_give_the_same_arrays(c10, cache_dir):
    a, _, _ = load_arrays(cfg_for("cifar10", c10[0]))
    d, _, _ = load_arrays(cfg_for("cifar10", c10[1]))
    for k in a:
        np.testing.assert_array_equal(a[k], d[k])


def test_cifar100_uses_fine_labels_and_names(tmp_path, cache_dir):
    path = make_cifar(tmp_path / "cifar-100-python.tar.gz", "cifar100")
    arrays, listing, _ = load_arrays(cfg_for("cifar100", path))
    assert listing.classes == cifar100_names()[0]
    assert np.bincount(arrays["train_y"], minlength=100).tolist() == [3] * 100  # (20 coarse labels would be 15 each)
    assert [i[0] for i in pixel_ids(arrays["train_x"])] == arrays["train_y"].tolist()
    assert len(arrays["test_y"]) == 100
    # extracted, and the first N classes by label index
    make_cifar(tmp_path / "x", "cifar100", as_tar=False)
    arrays, listing, _ = load_arrays(cfg_for("cifar100", tmp_path / "x", classes=4))
    assert listing.classes == ["fine00", "fine01", "fine02", "fine03"]
    assert sorted(set(arrays["train_y"].tolist())) == [0, 1, 2, 3]


def test_first_n_classes_and_class_list_by_label_index(c10, cache_dir):
    arrays, listing, _ = load_arrays(cfg_for("cifar10", c10[0], classes=3))
    assert listing.classes == ["airplane", "automobile", "bird"]
    assert np.bincount(arrays["train_y"]).tolist() == [5, 5, 5] and len(arrays["test_y"]) == 6
    arrays, listing, _ = load_arrays(cfg_for("cifar10", c10[0], class_list="truck,cat"))
    assert listing.classes == ["cat", "truck"]  # label order; labels renumbered 0, 1
    assert {i[0] for i, y in zip(pixel_ids(arrays["train_x"]), arrays["train_y"]) if y == 1} == {9}
    with pytest.raises(DataError, match="class_list: 'unicorn' is not a CIFAR-10 class; allowed: airplane, "):
        load_arrays(cfg_for("cifar10", c10[0], class_list="cat,unicorn"))
    with pytest.raises(DataError, match="classes: asked for 11 but CIFAR-10 has only 10"):
        load_arrays(cfg_for("cifar10", c10[0], classes=11))


def test_splits_and_statistics_from_train_only(c10, cache_dir):
    s = load_splits(cfg_for("cifar10", c10[0], val_fraction=0.2))
    assert s.sizes() == {"train": 40, "val": 10, "test": 20}
    assert np.bincount(s.val_y).tolist() == [1] * 10 and np.bincount(s.train_y).tolist() == [4] * 10
    ids = {n: set(pixel_ids(getattr(s, f"{n}_x"))) for n in ("train", "val", "test")}
    assert len(ids["train"]) == 40 and len(ids["val"]) == 10
    assert not ids["train"] & ids["val"] and not (ids["train"] | ids["val"]) & ids["test"]
    assert (s.mean, s.std) == channel_stats(np.asarray(s.train_x))
    assert s.mean != channel_stats(np.concatenate([s.train_x, s.val_x, s.test_x]))[0]


def test_cache_hit_does_not_decode_again(c10, cache_dir, monkeypatch):
    cfg = cfg_for("cifar10", c10[0])
    first, _, cdir = load_arrays(cfg)
    monkeypatch.setattr("study.datasets.cifar.images", lambda rows: pytest.fail("decoded again"))
    again, _, cdir2 = load_arrays(cfg)
    assert cdir == cdir2
    np.testing.assert_array_equal(np.asarray(first["train_x"]), np.asarray(again["train_x"]))


# --- bad data -----------------------------------------------------------------------------------
def _tar_with(tmp_path, files, name="c.tar.gz"):
    return make_cifar(tmp_path / name, files=files)


@pytest.mark.parametrize("case,message", [
    ("missing", "data not found: {p}"),
    ("not_tar", "{p} is not a CIFAR-10 archive (cifar-10-python.tar.gz) or directory"),
    ("truncated", "corrupt archive {p}: "),
    ("wrong_dataset", "{p} is not CIFAR-10's layout: no cifar-10-batches-py/batches.meta inside (it looks like "
                      "CIFAR-100: choose --dataset cifar100)"),
    ("empty_dir", "{p} is not CIFAR-10's layout: no batches.meta in it or in cifar-10-batches-py/"),
    ("missing_batch", "missing from the CIFAR-10 archive: {p}:cifar-10-batches-py/data_batch_3"),
    ("damaged_pickle", "corrupt CIFAR-10 batch {p}:cifar-10-batches-py/data_batch_2: cannot unpickle it"),
    ("wrong_shape", "{p}:cifar-10-batches-py/data_batch_1: 'data' is uint8 (10, 1024); a CIFAR-10 batch holds "
                    "uint8 rows of 3072 values"),
    ("label_count", "{p}:cifar-10-batches-py/test_batch: 3 labels for 20 images"),
    ("label_range", "{p}:cifar-10-batches-py/data_batch_1: label 10 is outside 0..9"),
    ("not_a_dict", "{p}:cifar-10-batches-py/data_batch_4 is not a CIFAR-10 batch: it holds a pickled list"),
])
def test_bad_cifar_data_is_a_clear_error(tmp_path, cache_dir, case, message):
    files = cifar10_files()
    p = tmp_path / "c.tar.gz"
    if case == "not_tar":
        p.write_text("hello")
    elif case == "truncated":
        make_cifar(p)
        p.write_bytes(p.read_bytes()[:len(p.read_bytes()) // 2])
    elif case == "wrong_dataset":
        make_cifar(p, "cifar100")
    elif case == "empty_dir":
        p = tmp_path / "empty"
        p.mkdir()
    elif case != "missing":
        if case == "missing_batch":
            del files["data_batch_3"]
        elif case == "damaged_pickle":
            files["data_batch_2"] = files["data_batch_2"][:500]
        elif case == "wrong_shape":
            files["data_batch_1"] = py2_pickle({"data": np.zeros((10, 1024), np.uint8), "labels": [0] * 10})
        elif case == "label_count":
            files["test_batch"] = py2_pickle({"data": np.zeros((20, 3072), np.uint8), "labels": [0, 1, 2]})
        elif case == "label_range":
            files["data_batch_1"] = py2_pickle({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]})
        elif case == "not_a_dict":
            files["data_batch_4"] = py2_pickle([1, 2, 3])
        _tar_with(tmp_path, files)
    with pytest.raises(DataError) as e:
        load_arrays(cfg_for("cifar10", p))
    assert str(e.value).startswith(message.format(p=p)), str(e.value)
    assert not (cache_dir / "decoded").exists()


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_that_would_run_code_is_refused_not_run(tmp_path, cache_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = cifar10_files()
    files["data_batch_1"] = pickle.dumps({"data": _Boom(), "labels": []}, protocol=2)
    p = _tar_with(tmp_path, files)
    with pytest.raises(DataError, match=r"data_batch_1 is not a CIFAR-10 batch: its pickle asks for "
                                        r"(posix|os)\.system, which the official files never do"):
        load_arrays(cfg_for("cifar10", p))
    assert not (tmp_path / "pwned").exists()


def test_the_fixture_is_in_the_official_python2_format():
    """What the loader is tested on is what the official files hold: Python 2 strings, numpy 1's
    array reconstruction; torchvision's own reading (pickle with latin1) agrees."""
    import pickletools

    blob = cifar10_files()["data_batch_1"]
    ops = list(pickletools.genops(blob))
    assert {a for op, a, _ in ops if op.name == "GLOBAL"} == {
        "numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    assert not {op.name for op, _, _ in ops} & {"BINUNICODE", "SHORT_BINUNICODE", "BINBYTES", "SHORT_BINBYTES"}
    d = pickle.load(io.BytesIO(blob), encoding="latin1")
    assert d["data"].shape == (10, 3072) and d["batch_label"] == "training batch 1 of 5"


# --- download over a real HTTP server on 127.0.0.1 -----------------------------------------------
@pytest.mark.parametrize("which", ["cifar10", "cifar100"])
def test_download_verifies_checksum_and_loads(tmp_path, http_dir, which):
    root, url = http_dir
    name = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}[which]
    archive = make_cifar(root / name, which)
    cache = tmp_path / "cache"
    cfg = make_config({"dataset": which, "cache_dir": str(cache), "download_url": f"{url}/{name}",
                       "download_md5": hashlib.md5(archive.read_bytes()).hexdigest(), "classes": 2, **MODEL})
    s = load_splits(cfg)
    assert (cache / name).read_bytes() == archive.read_bytes()
    assert len(s.classes) == 2 and len(s.test_y) == (4 if which == "cifar10" else 2)
    assert [p.name for p in cache.iterdir() if p.name.endswith(".part")] == []


def test_download_with_bad_checksum_leaves_nothing(tmp_path, http_dir):
    root, url = http_dir
    make_cifar(root / "cifar-10-python.tar.gz")
    cache = tmp_path / "cache"
    cfg = make_config({"dataset": "cifar10", "cache_dir": str(cache), "download_url": f"{url}/cifar-10-python.tar.gz",
                       "download_md5": "0" * 32, **MODEL})
    with pytest.raises(DownloadError, match="checksum mismatch"):
        load_arrays(cfg)
    assert not cache.exists() or os.listdir(cache) == []


def test_official_download_is_declared():
    from study.datasets import get

    for name, archive, md5 in (("cifar10", "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
                               ("cifar100", "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85")):
        spec = get(name)
        assert (spec.archive, spec.url, spec.md5) == (archive, f"https://www.cs.toronto.edu/~kriz/{archive}", md5)
        assert make_config({"dataset": name, **MODEL}).classes is None  # all classes by default


def test_cifar100_fixture_has_coarse_labels_too():
    d = pickle.loads(cifar100_files()["train"], encoding="latin1")
    assert set(d) == {"filenames", "batch_label", "fine_labels", "coarse_labels", "data"}
