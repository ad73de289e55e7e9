"""Bad dataset input through study.train_once's main(): exit 2, one line naming the file or the
setting, and nothing written (no --json file, no decoded-image cache entry)."""
from __future__ import annotations

import pytest

from cifargen import cifar10_files, make_cifar
from cliout import one_error
from imagefoldergen import image_name, make_imagefolder, tree, write
from study import train_once
from study.datasets import names


def refused(capsys, cache_dir, tmp_path, args) -> str:
    out = tmp_path / "out.json"
    rc = train_once.main([*args, "--epochs", "1", "--set", "image_size=64", "--json", str(out)])
    err = one_error(capsys)
    assert rc == 2, err
    assert not out.exists()
    assert not (cache_dir / "decoded").exists() or not any((cache_dir / "decoded").iterdir())
    return err


def test_unknown_dataset_lists_the_allowed_ones(tmp_path, cache_dir, capsys, no_training):
    err = refused(capsys, cache_dir, tmp_path, ["--dataset", "nope"])
    assert err == f"error: dataset: unknown value 'nope'; allowed: {', '.join(names())}"
    assert {"cifar10", "cifar100", "imagefolder", "tinyimagenet"} <= set(names())


def test_wrong_imagefolder_layout(tmp_path, cache_dir, capsys, no_training):
    files = tree(per_class=(3, 3, 3))
    src = write({**files, "stray.png": files[image_name("train", 1, 0)]}, tmp_path / "photos")
    err = refused(capsys, cache_dir, tmp_path, ["--dataset", "imagefolder", "--data", str(src)])
    assert err.startswith(f"error: {src / 'stray.png'}: an image outside a class folder; expected CLASS/IMAGE. "
                          "Accepted layouts: CLASS/IMAGE (one pool")


@pytest.mark.parametrize("as_zip", [False, True])
def test_corrupt_image(tmp_path, cache_dir, capsys, no_training, as_zip):
    bad = image_name("train", 2, 1)
    src = make_imagefolder(tmp_path / ("p.zip" if as_zip else "p"), per_class=(3, 3, 3), corrupt=bad, as_zip=as_zip)
    err = refused(capsys, cache_dir, tmp_path, ["--dataset", "imagefolder", "--data", str(src)])
    assert err.startswith(f"error: corrupt image {f'{src}:{bad}' if as_zip else src / bad}: ")


def test_empty_class_folder(tmp_path, cache_dir, capsys, no_training):
    src = write(tree(per_class=(3, 3, 3)), tmp_path / "p", empty_dirs=("zebra",))
    err = refused(capsys, cache_dir, tmp_path, ["--dataset", "imagefolder", "--data", str(src)])
    assert err.startswith(f"error: class zebra has no images: {src / 'zebra'} holds no file with an image extension")


@pytest.mark.parametrize("case", ["not_an_archive", "missing_batch"])
def test_bad_cifar_archive(tmp_path, cache_dir, capsys, no_training, case):
    p = tmp_path / "cifar-10-python.tar.gz"
    if case == "not_an_archive":
        p.write_text("hello")
        message = f"{p} is not a CIFAR-10 archive (cifar-10-python.tar.gz) or directory: "
    else:
        files = cifar10_files()
        del files["test_batch"]
        make_cifar(p, files=files)
        message = f"missing from the CIFAR-10 archive: {p}:cifar-10-batches-py/test_batch"
    err = refused(capsys, cache_dir, tmp_path, ["--dataset", "cifar10", "--data", str(p)])
    assert err.startswith(f"error: {message}"), err


def test_imagefolder_without_data_says_give_it(tmp_path, cache_dir, capsys, no_training):
    err = refused(capsys, cache_dir, tmp_path, ["--dataset", "imagefolder"])
    assert err.startswith("error: dataset 'imagefolder' has no download; give its data with --data (an ImageFolder "
                          "directory or zip: ")


def test_imagefolder_space_without_data_is_refused_and_writes_nothing(tmp_path, cache_dir, capsys):
    from study import run

    results = tmp_path / "results"
    rc = run.main(["--space", "imagefolder_example", "--results-dir", str(results)])
    assert rc == 2
    assert one_error(capsys).startswith("error: dataset 'imagefolder' has no download; give its data with --data")
    assert not results.exists() or not any(results.rglob("*"))
