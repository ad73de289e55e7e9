"""Tiny ImageNet loading: layout (dir and zip), download, splits, cache, bad data."""
from __future__ import annotations

import hashlib
import os
import time

import numpy as np
import pytest

from datagen import make_bad_data, make_tiny_imagenet, wnid
from study.config import make_config
from study.download import DownloadError
from study.datasets import DataError, load_arrays, load_splits
from study.datasets.splits import stratified_split


def load_official(cfg):
    arrays, listing, _ = load_arrays(cfg)
    return arrays, listing.classes, listing.source


def cfg_for(path, **kw):
    return make_config({"data": str(path), "classes": 3, **kw})


@pytest.mark.parametrize("as_zip", [True, False])
def test_reads_official_layout_from_zip_and_directory(tmp_path, cache_dir, as_zip):
    target = tmp_path / ("t.zip" if as_zip else "tdir")
    make_tiny_imagenet(target, n_classes=4, train_per_class=20, val_per_class=5, as_zip=as_zip)
    arrays, classes, _ = load_official(cfg_for(target))
    # first N classes in *sorted* order although wnids.txt lists them reversed
    assert classes == [wnid(0), wnid(1), wnid(2)]
    assert arrays["train_x"].shape == (60, 64, 64, 3) and arrays["train_x"].dtype == np.uint8
    assert arrays["test_x"].shape == (15, 64, 64, 3)  # official val = our test set
    assert np.bincount(arrays["train_y"]).tolist() == [20, 20, 20]
    assert np.bincount(arrays["test_y"]).tolist() == [5, 5, 5]
    # class 0 is red-dominant in the fixture: labels line up with pixels
    red = arrays["train_x"][arrays["train_y"] == 0][..., 0].mean()
    green = arrays["train_x"][arrays["train_y"] == 0][..., 1].mean()
    assert red > green + 50


def test_zip_and_directory_decode_identically(tmp_path, cache_dir):
    make_tiny_imagenet(tmp_path / "a.zip", as_zip=True)
    make_tiny_imagenet(tmp_path / "d", as_zip=False)
    a, _, _ = load_official(cfg_for(tmp_path / "a.zip"))
    d, _, _ = load_official(cfg_for(tmp_path / "d"))
    np.testing.assert_array_equal(a["train_x"], d["train_x"])
    np.testing.assert_array_equal(a["test_y"], d["test_y"])


def test_grayscale_jpeg_becomes_three_equal_channels(tiny_zip, cache_dir):
    arrays, _, _ = load_official(cfg_for(tiny_zip))
    first = arrays["train_x"][0]  # fixture: class 0, image 0 is grayscale
    assert first.shape == (64, 64, 3)
    np.testing.assert_array_equal(first[..., 0], first[..., 1])
    np.testing.assert_array_equal(first[..., 1], first[..., 2])


def test_explicit_class_list_and_unknown_class(tiny_zip, cache_dir):
    arrays, classes, _ = load_official(make_config({"data": str(tiny_zip), "class_list": f"{wnid(3)},{wnid(1)}"}))
    assert classes == [wnid(1), wnid(3)]
    assert len(arrays["train_y"]) == 40
    with pytest.raises(DataError, match="n09999999.*not in wnids.txt"):
        load_official(make_config({"data": str(tiny_zip), "class_list": f"n09999999,{wnid(1)}"}))


def test_splits_sizes_stratified_and_disjoint(tiny_zip, cache_dir):
    s = load_splits(make_config({"data": str(tiny_zip), "classes": 4, "val_fraction": 0.1}))
    assert s.sizes() == {"train": 72, "val": 8, "test": 20}
    assert np.bincount(s.val_y).tolist() == [2, 2, 2, 2]  # 10% of 20 per class
    # no image is in two splits (fixture images are all distinct: compare raw bytes)
    digests = {name: {hashlib.md5(x.tobytes()).hexdigest() for x in arr}
               for name, arr in (("train", s.train_x), ("val", s.val_x), ("test", s.test_x))}
    assert len(digests["train"]) == 72
    assert not digests["train"] & digests["val"]
    assert not digests["train"] & digests["test"]
    assert not digests["val"] & digests["test"]


def test_split_is_fixed_by_split_seed_not_training_seed():
    y = np.repeat(np.arange(5), 50)
    a = stratified_split(y, 0.1, seed=0)
    b = stratified_split(y, 0.1, seed=0)
    c = stratified_split(y, 0.1, seed=1)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert len(np.intersect1d(a[0], a[1])) == 0 and len(a[0]) + len(a[1]) == 250


def test_cache_hit_is_fast_and_identical(tmp_path, cache_dir, monkeypatch):
    src = make_tiny_imagenet(tmp_path / "t.zip", n_classes=3, train_per_class=40)
    cfg = cfg_for(src)
    first, _, _ = load_official(cfg)
    assert len(list((cache_dir / "decoded").iterdir())) == 1

    def boom(*a, **k):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr("study.datasets.tinyimagenet.decode", boom)
    t0 = time.perf_counter()
    again, _, _ = load_official(cfg)
    assert time.perf_counter() - t0 < 0.5
    np.testing.assert_array_equal(np.asarray(first["train_x"]), np.asarray(again["train_x"]))
    # a different class list is a different cache entry (and would decode)
    with pytest.raises(AssertionError, match="decoded again"):
        load_official(cfg_for(src, classes=2))


def test_corrupt_jpeg_is_reported_by_path(tmp_path, cache_dir):
    src = make_tiny_imagenet(tmp_path / "bad.zip", corrupt=f"{wnid(1)}/3")
    with pytest.raises(DataError, match=rf"corrupt image .*bad.zip:tiny-imagenet-200/train/{wnid(1)}/images/{wnid(1)}_3.JPEG"):
        load_official(cfg_for(src))
    assert not (cache_dir / "decoded").exists() or not any((cache_dir / "decoded").iterdir())


@pytest.mark.parametrize("case,message", [
    ("missing", "data not found"),
    ("notzip", "not a zip archive"),
    ("wronglayout", "not Tiny ImageNet's layout"),
    ("emptyclass", "has no training images"),
])
def test_bad_data_is_a_clear_error(tmp_path, cache_dir, case, message):
    path = make_bad_data(tmp_path / "x.zip", case)
    with pytest.raises(DataError, match=message):
        load_official(cfg_for(path))


# --- download over a real HTTP server on 127.0.0.1 -----------------------------------------------
def test_download_verifies_checksum_and_loads(tmp_path, http_dir, monkeypatch):
    root, url = http_dir
    archive = make_tiny_imagenet(root / "tiny-imagenet-200.zip")
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    cfg = make_config({"classes": 2, "cache_dir": str(cache), "download_url": f"{url}/tiny-imagenet-200.zip",
                       "download_md5": md5})
    arrays, classes, source = load_official(cfg)
    assert (cache / "tiny-imagenet-200.zip").read_bytes() == archive.read_bytes()
    assert classes == [wnid(0), wnid(1)] and len(arrays["train_y"]) == 40
    assert [p.name for p in cache.iterdir() if p.name.endswith(".part")] == []


def test_download_with_bad_checksum_leaves_nothing(tmp_path, http_dir):
    root, url = http_dir
    make_tiny_imagenet(root / "tiny-imagenet-200.zip")
    cache = tmp_path / "cache"
    cfg = make_config({"cache_dir": str(cache), "download_url": f"{url}/tiny-imagenet-200.zip",
                       "download_md5": "0" * 32})
    with pytest.raises(DownloadError, match="checksum mismatch"):
        load_official(cfg)
    assert not cache.exists() or os.listdir(cache) == []


def test_partial_download_is_an_error_and_leaves_nothing(tmp_path):
    import http.server
    import threading

    class Truncating(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"x" * 1000)  # then hang up

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Truncating)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cache = tmp_path / "cache"
    try:
        cfg = make_config({"cache_dir": str(cache),
                           "download_url": f"http://127.0.0.1:{server.server_address[1]}/t.zip"})
        with pytest.raises(DownloadError, match="incomplete|failed"):
            load_official(cfg)
    finally:
        server.shutdown()
        server.server_close()
    assert not cache.exists() or os.listdir(cache) == []


def test_unreachable_download_is_a_clear_error(tmp_path):
    cfg = make_config({"cache_dir": str(tmp_path / "c"), "download_url": "http://127.0.0.1:9/none.zip"})
    with pytest.raises(DownloadError, match="download of http://127.0.0.1:9/none.zip failed"):
        load_official(cfg)
