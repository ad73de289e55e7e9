"""POS task: corpora through NLTK's readers, splits, encoding, batching, taggers, regularizers.

Every corpus here is generated (tests/posgen.py) in NLTK's own on-disk formats.
"""
from __future__ import annotations

import ipaddress
import json
import math
from collections import Counter

import nltk
import nltk.pathsec
import numpy as np
import pytest
import torch

import posgen
from study import train_once
from study.config import ConfigError, make_config
from study.corpora import PAD, UNK, load_corpus, read_tagged
from study.errors import CorpusError
from study.metrics import TIMINGS
from study.training import IGNORE, _sums, build_task, run_trial

pytestmark = pytest.mark.usefixtures("isolated_nltk")  # (conftest: no real NLTK data, one thread)

CPU = torch.device("cpu")
UNIVERSAL = set(posgen.PTB_TO_UNIVERSAL.values())


def cfg_for(d, **kw):
    base = dict(task="pos", nltk_data=str(d), embed_dim=16, hidden=16, epochs=2, batch_size=8)
    base.update(kw)
    return make_config(base)


def generated_sentences(n=60, **kw):
    """What the generator wrote, traces dropped, lower-cased, universal tags: the expected corpus."""
    return [[(w.lower(), posgen.PTB_TO_UNIVERSAL[t]) for w, t, _ in s if t != "-NONE-"]
            for s in posgen.sentences(n, **kw)]


# --- config ---------------------------------------------------------------------------------------
def test_config_pos_defaults_and_fractions():
    cfg = make_config(task="pos")
    assert (cfg.model, cfg.batch_size, cfg.lr) == ("rnn", 32, 3e-3)
    assert make_config(task="pos", model="gru", batch_size=5).batch_size == 5
    assert make_config().model == "alexnet" and make_config().batch_size == 128
    with pytest.raises(ConfigError, match="model"):
        make_config(task="pos", model="alexnet")
    with pytest.raises(ConfigError, match="test_fraction"):
        make_config(task="pos", val_fraction=0.5, test_fraction=0.5)


# --- reading, splitting, encoding ---------------------------------------------------------------
def test_split_is_deterministic_disjoint_and_vocab_is_train_only(tb_dir):
    data = load_corpus(cfg_for(tb_dir))
    idx = [data.train.index, data.val.index, data.test.index]
    assert [len(i) for i in idx] == [48, 6, 6]  # 80/10/10
    assert sorted(np.concatenate(idx).tolist()) == list(range(60))  # disjoint, complete
    again = load_corpus(cfg_for(tb_dir, seed=7))  # seed does not move the split
    assert all(np.array_equal(a, b) for a, b in zip(idx, [again.train.index, again.val.index, again.test.index]))
    assert np.array_equal(again.test.words, data.test.words)
    other = load_corpus(cfg_for(tb_dir, split_seed=1))
    assert not np.array_equal(other.test.index, data.test.index)

    sents = generated_sentences(lengths={3: 40})
    train_words = {w for i in data.train.index for w, _ in sents[i]}
    assert set(data.vocab) - {"<pad>", "<unk>"} == train_words
    assert data.vocab["<pad>"] == PAD and data.vocab["<unk>"] == UNK
    assert data.tags[0] == "<unk>" and set(data.tags[1:]) == {t for i in data.train.index for _, t in sents[i]}
    # every sentence's number n<k> is unique: test numbers are OOV, flagged, encoded as UNK
    for split in (data.val, data.test):
        for j, k in enumerate(split.index):
            words, tags = split.sentence(j)
            expect = sents[k]
            assert len(words) == len(expect)
            assert [data.tags[t] for t in tags] == [t for _, t in expect]
            for (w, _), wid, oov in zip(expect, words, split.oov[split.offsets[j]:split.offsets[j + 1]]):
                assert oov == (w not in train_words)
                assert wid == (UNK if oov else data.vocab[w])
            assert split.oov[split.offsets[j] + [w for w, _ in expect].index(f"n{k}")]
    assert data.counts["oov_tokens"]["test"] == int(data.test.oov.sum()) >= 6
    assert not data.train.oov.any()


def test_traces_dropped_by_default_and_kept_on_request(tb_dir):
    n_traces = sum(t == "-NONE-" for s in posgen.sentences(60, lengths={3: 40}) for _, t, _ in s)
    assert n_traces > 20
    sents, dropped, _ = read_tagged(cfg_for(tb_dir, tagset="native"))
    assert dropped == n_traces
    assert all(t != "-NONE-" for s in sents for _, t in s)
    kept, dropped_k, _ = read_tagged(cfg_for(tb_dir, tagset="native", keep_traces=True))
    assert dropped_k == 0
    assert sum(map(len, kept)) == sum(map(len, sents)) + n_traces
    assert sum(t == "-NONE-" for s in kept for _, t in s) == n_traces
    data = load_corpus(cfg_for(tb_dir, tagset="native"))
    assert "-NONE-" not in data.tags and data.counts["traces_dropped"] == n_traces
    assert "-NONE-" in load_corpus(cfg_for(tb_dir, tagset="native", keep_traces=True)).tags
    # universal: traces would map to X; with them dropped there is no X at all here
    uni = load_corpus(cfg_for(tb_dir))
    assert set(uni.tags[1:]) == UNIVERSAL - {"X"}


def test_lowercase_flag(tb_dir):
    assert "smith" in load_corpus(cfg_for(tb_dir)).vocab
    cased = load_corpus(cfg_for(tb_dir, lowercase=False)).vocab
    assert "Smith" in cased and "smith" not in cased


@pytest.mark.parametrize("corpus", ["treebank", "conll2000", "brown"])
@pytest.mark.parametrize("zipped", [False, True])
def test_each_corpus_format_through_nltk_readers(tmp_path, corpus, zipped):
    d = posgen.make_nltk_data(tmp_path / "nd", corpus, n=40, zipped=zipped)
    data = load_corpus(cfg_for(d, corpus=corpus))
    assert data.counts["tokens"] == {k: sum(len(generated_sentences(40)[i]) for i in s.index)
                                     for k, s in (("train", data.train), ("val", data.val), ("test", data.test))}
    assert set(data.tags[1:]) <= UNIVERSAL
    assert (".zip" in data.source) == zipped
    native = load_corpus(cfg_for(d, corpus=corpus, tagset="native"))
    assert {"NN", "DT", "VBD"} <= set(native.tags)


# --- missing data, downloads ----------------------------------------------------------------------
def test_missing_corpus_offline_is_one_line_with_install_hint(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    with pytest.raises(CorpusError) as e:
        load_corpus(cfg_for(d))
    msg = str(e.value)
    assert "\n" not in msg
    assert "treebank, universal_tagset not found" in msg
    assert f"python -m nltk.downloader -d {d} treebank universal_tagset" in msg
    # only the mapping missing: only it is named
    posgen.make_nltk_data(d, "treebank", n=20, universal=False)
    with pytest.raises(CorpusError, match=r"universal_tagset not found.*-d \S+ universal_tagset$"):
        load_corpus(cfg_for(d))
    assert load_corpus(cfg_for(d, tagset="native")).counts["sentences"]["train"] == 16


def test_missing_corpus_unreachable_server(tmp_path, monkeypatch, http_dir):
    monkeypatch.delenv("REGSTUDY_OFFLINE")
    _, base = http_dir  # serves an empty directory: the index is a 404
    with pytest.raises(CorpusError, match=r"not downloaded \(.*\); install it with: python -m nltk\.downloader -u "):
        load_corpus(cfg_for(tmp_path / "nd", nltk_url=f"{base}/index.xml"))


def test_download_over_localhost(tmp_path, monkeypatch, http_dir):
    monkeypatch.delenv("REGSTUDY_OFFLINE")
    # NLTK's SSRF filter refuses every non-global address; let the test server's through.
    forbidden = nltk.pathsec._ip_is_forbidden
    monkeypatch.setattr(nltk.pathsec, "_ip_is_forbidden",
                        lambda ip: ip != ipaddress.ip_address("127.0.0.1") and forbidden(ip))
    www, base = http_dir
    index = posgen.make_download_server(www, base, "treebank", n=50)
    target = tmp_path / "downloaded"
    data = load_corpus(cfg_for(target, nltk_url=index))
    assert (target / "corpora" / "treebank.zip").is_file()
    assert (target / "taggers" / "universal_tagset.zip").is_file()
    local = load_corpus(cfg_for(posgen.make_nltk_data(tmp_path / "local", "treebank", n=50)))
    assert data.counts == local.counts and data.vocab == local.vocab
    assert np.array_equal(data.test.words, local.test.words)
    (www / "index.xml").unlink()  # second load: found on disk, nothing fetched
    assert load_corpus(cfg_for(target, nltk_url=index)).counts == data.counts


# --- batching, padding ----------------------------------------------------------------------------
def test_training_batches_cover_train_once_bucketed_and_seeded(tb_dir):
    cfg = cfg_for(tb_dir, batch_size=8)
    data = load_corpus(cfg)
    task = build_task(cfg, data, CPU)
    gen = torch.Generator().manual_seed(0)
    batches = list(task.train_batches(gen))
    tokens = Counter()
    total = 0
    for (ids, lengths), y in batches:
        assert ids.shape[0] <= 8 and ids.shape == y.shape
        real = torch.arange(ids.shape[1])[None] < lengths[:, None]
        assert torch.equal(ids == PAD, ~real) and torch.equal(y == IGNORE, ~real)
        total += int(real.sum())
        tokens.update(ids[real].tolist())
    assert total == data.train.n_tokens
    assert tokens == Counter(data.train.words.tolist())
    spans = sorted((int(lengths.min()), int(lengths.max())) for (_, lengths), _ in batches)
    assert all(hi <= nxt_lo for (_, hi), (nxt_lo, _) in zip(spans, spans[1:]))  # length buckets
    again = list(task.train_batches(torch.Generator().manual_seed(0)))
    assert all(torch.equal(a[0][0], b[0][0]) for a, b in zip(batches, again))
    other = list(task.train_batches(torch.Generator().manual_seed(1)))
    assert any(not torch.equal(a[0][0], b[0][0]) for a, b in zip(batches, other))


@pytest.mark.parametrize("model,bi", [("rnn", False), ("lstm", True), ("gru", True)])
def test_padding_changes_no_loss(tb_dir, model, bi):
    cfg = cfg_for(tb_dir, model=model, bidirectional=bi)
    data = load_corpus(cfg)
    task = build_task(cfg, data, CPU)
    task.model.eval()
    lengths = data.train.lengths
    long_i = int(np.argmax(lengths))
    short_i = int(np.argmin(lengths))
    assert lengths[long_i] > 4 * lengths[short_i]
    from study.tasks.pos import _DeviceSplit
    split = _DeviceSplit(data.train, CPU)
    with torch.no_grad():
        x1, y1 = split.batch(torch.tensor([short_i]))
        x2, y2 = split.batch(torch.tensor([short_i, long_i]))
        l1, c1, n1 = _sums(task.forward(task.model, x1), y1)
        l2, c2, n2 = _sums(task.forward(task.model, x2)[:1], y2[:1])
        lb, _, nb = _sums(task.forward(task.model, x2), y2)
    assert int(n1) == int(n2) == lengths[short_i] and int(nb) == lengths[short_i] + lengths[long_i]
    assert torch.allclose(l1, l2, atol=1e-5) and int(c1) == int(c2)
    # and the long sentence alone gives the rest of the batch's loss
    with torch.no_grad():
        x3, y3 = split.batch(torch.tensor([long_i]))
        l3, _, _ = _sums(task.forward(task.model, x3), y3)
    assert torch.allclose(lb, l1 + l3, atol=1e-4)


# --- regularizers ---------------------------------------------------------------------------------
def test_dropout_only_with_dropout_regularizers_and_only_in_train_mode(tb_dir):
    data = load_corpus(cfg_for(tb_dir))
    rates = {}
    for reg in ("none", "l2", "word_dropout", "dropout", "l2_dropout"):
        m = build_task(cfg_for(tb_dir, regularizer=reg), data, CPU).model
        rates[reg] = {mod.p for mod in m.modules() if isinstance(mod, torch.nn.Dropout)}
    # without a dropout technique the dropout sites hold no dropout module at all
    assert rates["none"] == rates["l2"] == rates["word_dropout"] == set()
    assert rates["dropout"] == {0.25} and rates["l2_dropout"] == {0.2}
    task = build_task(cfg_for(tb_dir, regularizer="dropout", dropout=0.5, layers=2), data, CPU)
    assert task.model.rnn.dropout == 0.5  # between stacked layers too
    (x, _), = [next(iter(task.eval_sets["val"]()))]
    task.model.eval()
    with torch.no_grad():
        assert torch.equal(task.forward(task.model, x), task.forward(task.model, x))
        task.model.train()
        assert not torch.allclose(task.forward(task.model, x), task.forward(task.model, x))


# --- the trial --------------------------------------------------------------------------------------
def test_trial_metrics_deterministic_and_test_accuracy_over_real_and_oov_tokens(tb_dir):
    data = load_corpus(cfg_for(tb_dir))
    cfg = cfg_for(tb_dir, model="lstm", epochs=6, lr=3e-2, regularizer="word_dropout", seed=3)
    runs = []
    for _ in range(2):
        states = []
        metrics = run_trial(cfg, lambda m, get: states.append((dict(m), get())), data=data)
        runs.append((metrics, states))
    drop = set(TIMINGS)
    assert [{k: v for k, v in m.items() if k not in drop} for m, _ in runs[0][1]] == \
           [{k: v for k, v in m.items() if k not in drop} for m, _ in runs[1][1]]
    m = runs[0][0]
    assert m["train_clean_acc"] > 0.9  # the generated language is learnable
    assert m["gap_acc"] == pytest.approx(m["train_clean_acc"] - m["val_acc"])
    # recompute test accuracy by hand from the final model: real tokens, then OOV tokens only
    task = build_task(cfg, data, CPU)
    task.model.load_state_dict(runs[0][1][-1][1]["model"])
    task.model.eval()
    correct = oov_correct = 0
    with torch.no_grad():
        for j in range(data.test.n_sentences):
            words, tags = data.test.sentence(j)
            oov = data.test.oov[data.test.offsets[j]:data.test.offsets[j + 1]]
            pred = task.model(torch.from_numpy(words)[None], torch.tensor([len(words)]))[0].argmax(-1).numpy()
            correct += int((pred == tags).sum())
            oov_correct += int((pred == tags)[oov].sum())
    assert m["test_acc"] == pytest.approx(correct / data.test.n_tokens)
    assert m["test_acc_oov"] == pytest.approx(oov_correct / int(data.test.oov.sum()))
    assert math.isfinite(m["test_loss_oov"])


def test_train_once_cli(tb_dir, tmp_path, capsys):
    out = tmp_path / "out.json"
    rc = train_once.main(["--task", "pos", "--corpus", "treebank", "--nltk-data", str(tb_dir),
                          "--tagset", "universal", "--regularizer", "none", "--epochs", "2",
                          "--seed", "0", "--set", "hidden=8", "--set", "embed_dim=8",
                          "--json", str(out)])
    assert rc == 0
    rec = json.loads(out.read_text())
    assert rec["config"]["model"] == "rnn" and rec["config"]["task"] == "pos"
    assert [e["epoch"] for e in rec["epochs"]] == [1, 2]
    assert set(rec["test"]) == {"test_loss", "test_acc", "test_loss_oov", "test_acc_oov"}
    assert 0.0 <= rec["test"]["test_acc"] <= 1.0
    assert "samples_per_s" in capsys.readouterr().out

    rc = train_once.main(["--task", "pos", "--nltk-data", str(tmp_path / "nothing"), "--epochs", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: NLTK data treebank") and err.count("\n") == 1
