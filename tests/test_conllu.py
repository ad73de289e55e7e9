"""POS task on CoNLL-U corpora (``corpus: conllu``): the reader, splits, config, the CLI.

Every file here is generated at test time (tests/conllugen.py), with comments, multiword-token
range lines and empty nodes in it.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import conllugen
import posgen
from study import train_once
from study.config import ConfigError, make_config
from study.conllu_corpus import read_file
from study.corpora import CorpusError, load_corpus, split_indices
from treebank_to_conllu import write_conllu

pytestmark = pytest.mark.usefixtures("isolated_nltk")  # (conftest: no real NLTK data, one thread)

# Two sentences in the UD style: a contraction in each, an empty node, comments with and without
# a value, a FORM with a space in it.
HANDWRITTEN = """\
# newdoc id = d1
# sent_id = 1
# text = Vámonos del mar.
1-2\tVámonos\t_\t_\t_\t_\t_\t_\t_\t_
1\tVamos\tir\tVERB\tVMM01P0\t_\t0\troot\t_\t_
2\tnos\tnosotros\tPRON\tPP1CP000\t_\t1\tobj\t_\t_
3-4\tdel\t_\t_\t_\t_\t_\t_\t_\t_
3\tde\tde\tADP\tSPS00\t_\t5\tcase\t_\t_
4\tel\tel\tDET\tDA0MS0\t_\t5\tdet\t_\t_
5\tmar\tmar\tNOUN\tNCMS000\t_\t1\tobl\t_\tSpaceAfter=No
6\t.\t.\tPUNCT\tFp\t_\t1\tpunct\t_\t_

# sent_id = 2
# a comment without a value
1\tSue\tSue\tPROPN\tNNP\t_\t2\tnsubj\t_\t_
2\tlikes\tlike\tVERB\tVBZ\t_\t0\troot\t_\t_
3\tcoffee\tcoffee\tNOUN\tNN\t_\t2\tobj\t_\t_
3.1\tlikes\tlike\tVERB\tVBZ\t_\t_\t_\t2:conj\tCopyOf=2
4\tand\tand\tCCONJ\tCC\t_\t5\tcc\t_\t_
5\tNew York\tNew York\tPROPN\tNNP\t_\t2\tconj\t_\t_
6\ttea\ttea\tNOUN\tNN\t_\t5\torphan\t_\t_
"""


def cfg_for(data, **kw):
    base = dict(task="pos", corpus="conllu", data=str(data), embed_dim=16, hidden=16, epochs=2, batch_size=8)
    base.update(kw)
    return make_config(base)


def tags(expected, column):
    """conllugen's (form, upos, xpos) words -> (form, tag) for one column, lower-cased as the loader does."""
    k = {"upos": 1, "xpos": 2}[column]
    return [[(w[0].lower(), w[k]) for w in s] for s in expected]


def decoded(data, split):
    """A split's sentences back as (word, tag) pairs (UNK words as <unk>)."""
    words = {i: w for w, i in data.vocab.items()}
    return [[(words[int(w)], data.tags[int(t)]) for w, t in zip(*split.sentence(i))]
            for i in range(split.n_sentences)]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    path = tmp_path_factory.mktemp("conllu") / "gen.conllu"
    return path, conllugen.write_file(path, 60)


# --- the reader -----------------------------------------------------------------------------------
def test_reader_skips_ranges_empty_nodes_and_comments_exactly(tmp_path):
    path = tmp_path / "hand.conllu"
    path.write_text(HANDWRITTEN, encoding="utf-8")
    sents, skipped = read_file(path, "upos")
    assert sents == [[("Vamos", "VERB"), ("nos", "PRON"), ("de", "ADP"), ("el", "DET"), ("mar", "NOUN"),
                      (".", "PUNCT")],
                     [("Sue", "PROPN"), ("likes", "VERB"), ("coffee", "NOUN"), ("and", "CCONJ"),
                      ("New York", "PROPN"), ("tea", "NOUN")]]
    assert dict(skipped) == {"multiword_tokens": 2, "empty_nodes": 1}
    xpos, _ = read_file(path, "xpos")
    assert [t for s in xpos for _, t in s] == ["VMM01P0", "PP1CP000", "SPS00", "DA0MS0", "NCMS000", "Fp",
                                               "NNP", "VBZ", "NN", "CC", "NNP", "NN"]
    assert read_file(path, "universal")[0] == sents  # universal = UPOS for CoNLL-U


def test_generated_file_read_exactly_upos_and_xpos(single):
    path, expected = single
    upos, skipped = read_file(path, "upos")
    xpos, _ = read_file(path, "xpos")
    assert upos == [[(f, u) for f, u, _ in s] for s in expected]
    assert xpos == [[(f, x) for f, _, x in s] for s in expected]
    # every other sentence had a range line, every third an empty node: none of them became words
    assert dict(skipped) == {"multiword_tokens": 30, "empty_nodes": 20}
    assert conllugen.EMPTY_NODE[0] not in {w for s in upos for w, _ in s}


# --- splits ---------------------------------------------------------------------------------------
def test_single_file_split_by_sentence_disjoint_vocab_from_train(single):
    path, expected = single
    data = load_corpus(cfg_for(path))
    idx = [data.train.index, data.val.index, data.test.index]
    assert [len(i) for i in idx] == [48, 6, 6]  # 80/10/10, as the NLTK corpora
    assert [i.tolist() for i in idx] == [i.tolist() for i in split_indices(60, 0.1, 0.1, 0)]
    assert sorted(np.concatenate(idx).tolist()) == list(range(60))
    want = tags(expected, "upos")
    assert decoded(data, data.train) == [want[i] for i in data.train.index]  # the right sentences, in order
    train_words = {w for i in data.train.index for w, _ in want[i]}
    assert set(data.vocab) - {"<pad>", "<unk>"} == train_words  # vocabulary from train only
    assert data.tags[1:] == sorted({t for i in data.train.index for _, t in want[i]})
    # each test sentence's number token n<k> was never seen in training
    for i, k in enumerate(data.test.index):
        words, _ = data.test.sentence(i)
        assert f"n{k}" not in data.vocab and 1 in words.tolist()
    assert data.counts["corpus"] == "conllu" and data.counts["column"] == "UPOS"
    assert data.counts["source"] == str(path) == data.source
    assert data.counts["skipped"] == {"multiword_tokens": 30, "empty_nodes": 20}

    x = load_corpus(cfg_for(path, tagset="xpos"))
    assert decoded(x, x.test) == [[(w if w in x.vocab else "<unk>", t if t in x.tags else "<unk>")
                                   for w, t in tags(expected, "xpos")[i]] for i in x.test.index]


def test_ud_directory_used_as_given(tmp_path):
    expected = conllugen.write_ud_dir(tmp_path, {"train": 40, "dev": 7, "test": 9})
    data = load_corpus(cfg_for(tmp_path))
    assert (data.train.n_sentences, data.val.n_sentences, data.test.n_sentences) == (40, 7, 9)
    # index: positions in train + dev + test, concatenated
    assert data.train.index.tolist() == list(range(40))
    assert data.val.index.tolist() == list(range(40, 47))
    assert data.test.index.tolist() == list(range(47, 56))
    unk = lambda ss: [[(w if w in data.vocab else "<unk>", t if t in data.tags else "<unk>")  # noqa: E731
                       for w, t in s] for s in ss]
    assert decoded(data, data.train) == tags(expected["train"], "upos")
    assert decoded(data, data.val) == unk(tags(expected["dev"], "upos"))
    assert decoded(data, data.test) == unk(tags(expected["test"], "upos"))
    assert set(data.vocab) - {"<pad>", "<unk>"} == {w for s in tags(expected["train"], "upos") for w, _ in s}
    assert all(f"n{k}" not in data.vocab for k in range(40, 56))
    assert data.counts["splits"] == {"train": "given: xx_gen-ud-train.conllu", "val": "given: xx_gen-ud-dev.conllu",
                                     "test": "given: xx_gen-ud-test.conllu"}


@pytest.mark.parametrize("given, carved", [({"train": 40, "test": 9}, "val"), ({"train": 40, "dev": 7}, "test"),
                                           ({"train": 40}, "val and test")])
def test_ud_directory_missing_split_carved_from_train(tmp_path, given, carved):
    conllugen.write_ud_dir(tmp_path, given)
    data = load_corpus(cfg_for(tmp_path))
    splits = {"train": data.train, "val": data.val, "test": data.test}
    idx = {k: s.index.tolist() for k, s in splits.items()}
    if carved == "val and test":  # the single-file split of the train file
        assert list(idx.values()) == [i.tolist() for i in split_indices(40, 0.1, 0.1, 0)]
    else:
        assert len(idx[carved]) == 4 and set(idx[carved]) < set(range(40))  # 0.1 of the 40 training sentences
        assert sorted(idx["train"] + idx[carved]) == list(range(40))
        other = "test" if carved == "val" else "val"
        assert idx[other] == list(range(40, 40 + given["test" if other == "test" else "dev"]))
        assert data.counts["splits"][carved].startswith("carved from xx_gen-ud-train.conllu: 0.1")
    assert sorted(sum(idx.values(), [])) == list(range(sum(given.values())))


# --- config ---------------------------------------------------------------------------------------
def test_config_tagsets_per_corpus_and_data_required(single):
    path, _ = single
    assert cfg_for(path).tagset == "universal"
    assert cfg_for(path, tagset="upos").tagset == "upos"
    with pytest.raises(ConfigError, match=r"^tagset: 'native' is not a tag set of corpus 'conllu'; "
                                          r"allowed: universal, upos, xpos$"):
        cfg_for(path, tagset="native")
    with pytest.raises(ConfigError, match=r"^tagset: 'xpos' .* corpus 'treebank'; allowed: native, universal$"):
        make_config(task="pos", corpus="treebank", tagset="xpos")
    with pytest.raises(ConfigError, match=r"^data: corpus 'conllu' .*--data PATH"):
        make_config(task="pos", corpus="conllu")


# --- the command line ----------------------------------------------------------------------------
def bad_cases(tmp: Path) -> dict:
    """name -> (train_once arguments, a text the one error line must hold)."""
    tokens = conllugen.write_untagged(tmp / "tokens.conllu", 12, "tokens")
    blank_xpos = conllugen.write_untagged(tmp / "underscore.conllu", 12, "underscore")
    partial = conllugen.write_untagged(tmp / "partial.conllu", 12, "partial")
    line = 1 + next(i for i, t in enumerate(partial.read_text().splitlines()) if t.split("\t")[3:4] == ["_"]
                    and t.split("\t")[0].isdigit())
    (tmp / "ud").mkdir()
    conllugen.write_file(tmp / "ud" / "xx-ud-dev.conllu", 5)
    (tmp / "bad.conllu").write_text("1\tone\tone\tNUM\tCD\t_\t0\troot\t_\t_\n2 two\n")
    (tmp / "tiny.conllu").write_text(conllugen.generate(2)[0])
    return {
        "no tag column": (["--data", str(tokens)], f"{tokens}: no UPOS column: column 4 (UPOS) is missing"),
        "xpos all _": (["--data", str(blank_xpos), "--tagset", "xpos"], f"{blank_xpos}: no XPOS column"),
        "one word untagged": (["--data", str(partial)], f"{partial}: line {line}: word "),
        "missing path": (["--data", str(tmp / "nothing.conllu")], f"data not found: {tmp / 'nothing.conllu'}"),
        "no data": ([], "data: corpus 'conllu'"),
        "tagset native": (["--data", str(tokens), "--tagset", "native"], "tagset: 'native'"),
        "no train file": (["--data", str(tmp / "ud")], f"data: {tmp / 'ud'} has no *-ud-train.conllu file (it holds xx-ud-dev.conllu)"),
        "not CoNLL-U": (["--data", str(tmp / "bad.conllu")], f"{tmp / 'bad.conllu'}: lines 1-2: not CoNLL-U"),
        "too few sentences": (["--data", str(tmp / "tiny.conllu")], f"{tmp / 'tiny.conllu'}: 2 sentences are too few"),
    }


CASES = ["no tag column", "xpos all _", "one word untagged", "missing path", "no data", "tagset native",
         "no train file", "not CoNLL-U", "too few sentences"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, tmp_path, capsys):
    args, says = bad_cases(tmp_path)[case]
    out = tmp_path / "out" / "trial.json"
    rc = train_once.main(["--task", "pos", "--corpus", "conllu", *args, "--epochs", "1", "--json", str(out)])
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: "), captured.err
    assert says in captured.err, captured.err
    assert captured.out == "" and not out.exists() and not out.parent.exists()


def test_train_once_end_to_end(single, tmp_path, capsys):
    path, _ = single
    out = tmp_path / "trial.json"
    rc = train_once.main(["--task", "pos", "--corpus", "conllu", "--data", str(path), "--epochs", "2",
                          "--seed", "0", "--set", "hidden=16", "--set", "embed_dim=16", "--json", str(out)])
    assert rc == 0
    rec = json.loads(out.read_text())
    assert rec["config"]["corpus"] == "conllu" and rec["config"]["data"] == str(path)
    assert [e["epoch"] for e in rec["epochs"]] == [1, 2]
    for e in rec["epochs"]:
        assert all(math.isfinite(e[k]) for k in train_once.COLUMNS), e
        assert 0.0 <= e["val_acc"] <= 1.0
    assert set(rec["test"]) == {"test_loss", "test_acc", "test_loss_oov", "test_acc_oov"}
    assert 0.0 < rec["test"]["test_acc"] <= 1.0 and math.isfinite(rec["test"]["test_loss"])
    assert "test: test_loss=" in capsys.readouterr().out


# --- the treebank writer (tests/treebank_to_conllu.py) --------------------------------------------
def test_treebank_written_as_conllu_encodes_identically(tmp_path):
    nltk_dir = posgen.make_nltk_data(tmp_path / "nltk_data", "treebank", n=60)
    out = tmp_path / "treebank.conllu"
    assert write_conllu(nltk_dir, out) == 60
    for tagset, column in (("universal", "universal"), ("native", "xpos")):
        tb = load_corpus(make_config(task="pos", corpus="treebank", nltk_data=str(nltk_dir), tagset=tagset))
        cu = load_corpus(cfg_for(out, tagset=column))
        assert cu.vocab == tb.vocab and cu.tags == tb.tags
        for name in ("train", "val", "test"):
            a, b = getattr(tb, name), getattr(cu, name)
            for field in ("words", "tags", "offsets", "index", "oov"):
                assert np.array_equal(getattr(a, field), getattr(b, field)), (tagset, name, field)


def test_reader_errors_are_corpus_errors_naming_the_file(tmp_path):
    (tmp_path / "latin1.conllu").write_bytes("1\tcaf\xe9\t_\tNOUN\tNN\t_\t0\troot\t_\t_\n".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"latin1\.conllu: not UTF-8 text"):
        read_file(tmp_path / "latin1.conllu", "upos")
    conllugen.write_ud_dir(tmp_path / "two", {"train": 5}, prefix="aa")
    conllugen.write_ud_dir(tmp_path / "two", {"train": 5}, prefix="bb")
    with pytest.raises(CorpusError, match=r"holds 2 treebanks' training files \(aa-ud-train.conllu, bb-ud-train"):
        load_corpus(cfg_for(tmp_path / "two"))
    conllugen.write_ud_dir(tmp_path / "mixed", {"train": 5}, prefix="aa")
    conllugen.write_ud_dir(tmp_path / "mixed", {"dev": 5}, prefix="bb")
    with pytest.raises(CorpusError, match=r"bb-ud-dev.conllu does not belong to aa-ud-train.conllu"):
        load_corpus(cfg_for(tmp_path / "mixed"))
