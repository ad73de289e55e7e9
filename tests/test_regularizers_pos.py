"""Tagging (task pos) regularizers: each technique's effect against its formula on a tiny example,
in training only, with evaluation untouched; and every pos technique through a real trial.

Technique names come from ``study.regularizers`` (the catalog), never from a list here.
"""
from __future__ import annotations

import math

import nltk
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import posgen
from study import regularizers
from study.config import ConfigError, make_config
from study.corpora import PAD, UNK, load_corpus
from study.regularization import for_config
from study.regularizers.embedding_dropout import drop_types
from study.regularizers.locked_dropout import LockedDropout
from study.regularizers.penalties import decay_parameters
from study.regularizers.weight_drop import drop_recurrent
from study.regularizers.word_dropout import word_dropout
from study.taggers import MODELS
from study.training import IGNORE, _sums, build_task, run_trial

pytestmark = pytest.mark.usefixtures("isolated_nltk")  # (conftest: no real NLTK data, one thread)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data(tb_dir):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nltk.data, "path", [])
        mp.setenv("REGSTUDY_OFFLINE", "1")
        return load_corpus(cfg_for(tb_dir))


def cfg_for(d, **kw):
    base = dict(task="pos", nltk_data=str(d), embed_dim=16, hidden=16, epochs=2, batch_size=8)
    base.update(kw)
    return make_config(base)


def tagger(regularizer="none", vocab=40, n_tags=6, **kw):
    """A tagger built the way a trial builds it: the registry's hooks for this config."""
    cfg = make_config(task="pos", regularizer=regularizer, embed_dim=8, hidden=8, **kw)
    return MODELS[cfg.model].build(cfg, (vocab, n_tags), for_config(cfg).model_hooks)


def plain_copy(trained, **kw):
    """The same tagger (same weights) with no regularizer hooks."""
    plain = tagger("none", **kw)
    plain.load_state_dict(trained.state_dict())
    return plain


def padded_batch():
    """Four sentences of lengths 6, 4, 3, 1 (ids >= 2), padded with PAD."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([6, 4, 3, 1])
    ids = torch.randint(2, 40, (4, 6), generator=g)
    ids[torch.arange(6)[None] >= lengths[:, None]] = PAD
    return ids, lengths


def capture(module):
    """Records (input, output) of every forward call of ``module``."""
    seen = []
    module.register_forward_hook(lambda m, args, out: seen.append((args[0].detach(), out.detach())))
    return seen


# --- locked dropout ---------------------------------------------------------------------------------
def test_locked_dropout_one_mask_for_every_time_step_and_identity_in_eval():
    p = 0.3
    torch.manual_seed(0)
    drop = LockedDropout(p).train()
    x = torch.ones(64, 7, 32)
    out = drop(x)
    for t in range(7):
        assert torch.equal(out[:, t, :], out[:, 0, :])
    kept = out[:, 0, :] != 0
    assert torch.allclose(out[:, 0, :][kept], torch.full_like(out[:, 0, :][kept], 1 / (1 - p)))
    assert abs(1 - float(kept.float().mean()) - p) < 0.04  # 2048 draws: sd ~ 0.010
    assert not torch.equal(out[0], out[1])  # one mask per sequence, not per batch
    x = torch.randn(3, 5, 4)
    drop.eval()
    assert torch.equal(drop(x), x)
    assert torch.equal(LockedDropout(0.0).train()(x), x)


def test_tagger_applies_locked_dropout_at_embeddings_and_rnn_outputs():
    p = 0.5
    model = tagger("locked_dropout", locked_dropout=p, layers=2, model="lstm")
    assert isinstance(model.drop_embed, LockedDropout) and isinstance(model.drop_out, LockedDropout)
    assert model.drop_embed.p == model.drop_out.p == p
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    assert model.rnn.dropout == 0.0  # between stacked layers only plain dropout (nn.LSTM's own)
    ids, lengths = padded_batch()
    sites = {"embeddings": capture(model.drop_embed), "rnn outputs": capture(model.drop_out)}
    torch.manual_seed(0)
    model.train()
    model(ids, lengths)
    for name, ((x, out),) in sites.items():
        # out = x * m / (1 - p) with m (B, 1, D): read m off the first step (every sentence has one)
        m = (out[:, :1, :] != 0).float()
        assert torch.allclose(out, x * m / (1 - p)), name
        assert 0 < float(m.mean()) < 1, name
    plain = plain_copy(model, layers=2, model="lstm")
    model.eval()
    plain.eval()
    assert torch.equal(model(ids, lengths), plain(ids, lengths))


# --- weight drop ------------------------------------------------------------------------------------
def test_weight_drop_masks_only_hidden_to_hidden_matrices():
    p = 0.4
    torch.manual_seed(0)
    rnn = nn.LSTM(16, 32, num_layers=2, bidirectional=True, batch_first=True)
    fn = drop_recurrent(p)
    hh = [n for n, _ in rnn.named_parameters() if n.startswith("weight_hh")]
    assert len(hh) == 4  # 2 layers x 2 directions
    masks = []
    for name, w in rnn.named_parameters():
        out = fn(name, w)
        if name in hh:
            kept = out != 0
            assert torch.allclose(out, w * kept / (1 - p)), name
            assert abs(1 - float(kept.float().mean()) - p) < 0.05, name  # 4096 draws: sd ~ 0.008
            masks.append(kept)
        else:
            assert torch.equal(out, w), name  # input weights and biases untouched
    assert not torch.equal(masks[0], masks[1])
    assert not torch.equal(fn(hh[0], rnn.weight_hh_l0) != 0, masks[0])  # a new mask per call (batch)


@pytest.mark.parametrize("kind,bi,layers", [("rnn", False, 1), ("lstm", True, 2), ("gru", True, 1)])
def test_tagger_weight_drop_in_training_only(kind, bi, layers):
    p = 0.5
    shape = dict(model=kind, bidirectional=bi, layers=layers)
    cfg = make_config(task="pos", regularizer="weight_drop", weight_drop=p, embed_dim=8, hidden=8, **shape)
    hooks = for_config(cfg).model_hooks
    substituted = {}

    def recording(name, w):
        out = hooks["recurrent_weights"](name, w)
        substituted[name] = out.detach().clone()
        return out
    model = MODELS[kind].build(cfg, (40, 6), {**hooks, "recurrent_weights": recording})
    plain = plain_copy(model, **shape)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids, lengths = padded_batch()
    real = ids != PAD

    torch.manual_seed(0)
    model.train()
    plain.train()
    out = model(ids, lengths)
    assert not torch.allclose(out[real], plain(ids, lengths)[real])
    # the training output is the same RNN run with the masked hidden-to-hidden matrices
    assert {n for n, w in substituted.items() if not torch.equal(w, dict(model.rnn.named_parameters())[n])} \
        == {n for n, _ in model.rnn.named_parameters() if n.startswith("weight_hh")}
    with torch.no_grad():
        for n, w in substituted.items():
            getattr(plain.rnn, n).copy_(w)
    assert torch.allclose(out, plain(ids, lengths), atol=1e-6)

    out[real].sum().backward()
    for n, w in model.rnn.named_parameters():
        if n.startswith("weight_hh"):
            assert w.grad is not None and w.grad.abs().sum() > 0, n
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k  # the module's own weights were not modified

    plain.load_state_dict(before)
    model.eval()
    plain.eval()
    with torch.no_grad():
        assert torch.equal(model(ids, lengths), plain(ids, lengths))


# --- embedding dropout -------------------------------------------------------------------------------
def test_embedding_dropout_drops_whole_rows():
    p = 0.25
    torch.manual_seed(0)
    w = torch.randn(4000, 3)
    out = drop_types(p)(w)
    dropped = (out == 0).all(dim=1)
    assert torch.allclose(out[~dropped], w[~dropped] / (1 - p))
    assert abs(float(dropped.float().mean()) - p) < 0.03  # 4000 draws: sd ~ 0.007


def test_tagger_embedding_dropout_zeroes_every_occurrence_of_a_dropped_word():
    p = 0.5
    model = tagger("embedding_dropout", embedding_dropout=p, vocab=12)
    seen = capture(model.drop_embed)  # its input is the embedding output
    ids = torch.tensor([[5, 5, 7, 2, 5], [7, 5, 2, 3, 0]])  # repeated ids across and within sentences
    lengths = torch.tensor([5, 4])
    w = model.embed.weight.detach()
    torch.manual_seed(0)
    model.train()
    outcomes = set()
    for _ in range(20):
        model(ids, lengths)
        emb = seen[-1][0]
        for i in (2, 3, 5, 7):
            rows = emb[ids == i]
            if (rows == 0).all():
                outcomes.add("dropped")
            else:
                assert torch.allclose(rows, w[i].expand_as(rows) / (1 - p)), i
                outcomes.add("kept")
    assert outcomes == {"dropped", "kept"}
    model.eval()
    model(ids, lengths)
    assert torch.equal(seen[-1][0], F.embedding(ids, w))
    plain = plain_copy(model, vocab=12)
    plain.eval()
    with torch.no_grad():
        assert torch.equal(model(ids, lengths), plain(ids, lengths))


# --- word dropout -------------------------------------------------------------------------------------
def test_word_dropout_rate_and_only_on_training_batches(tb_dir, data):
    ids = torch.randint(2, 50, (400, 50))
    ids[:, 40:] = PAD
    out = word_dropout(ids, 0.25, torch.Generator().manual_seed(0), PAD, UNK)
    real = ids != PAD
    rate = float((out[real] == UNK).float().mean())
    assert abs(rate - 0.25) < 0.01  # 16k draws: sd ~ 0.0034
    assert torch.equal(out[~real], ids[~real])
    assert torch.equal(out[(out != UNK)], ids[(out != UNK)])

    def unk_share(reg, **kw):
        task = build_task(cfg_for(tb_dir, regularizer=reg, **kw), data, CPU)
        n = unk = 0
        for (x, lengths), y in task.train_batches(torch.Generator().manual_seed(0)):
            unk += int((x == UNK).sum())
            n += int(lengths.sum())
        evals = [int((x == UNK).sum()) for name in ("train_clean", "val")
                 for (x, _), _ in task.eval_sets[name]()]
        return unk / n, evals
    base, evals_none = unk_share("none")
    assert base == 0.0
    rate, evals_wd = unk_share("word_dropout", word_dropout=0.3)
    assert abs(rate - 0.3) < 0.05  # ~460 tokens
    assert evals_wd == evals_none  # evaluation untouched (val's UNKs are its OOV words)


def test_augment_for_pos_is_a_config_error_pointing_to_word_dropout():
    with pytest.raises(ConfigError, match=r"augment is not for task 'pos'.*word_dropout"):
        make_config(task="pos", regularizer="augment")
    with pytest.raises(ConfigError, match=r"augment is not for task 'pos'.*word_dropout"):
        make_config(task="pos", regularizer="l2+augment")


# --- penalties, decay, label smoothing -----------------------------------------------------------------
def test_l2_term_covers_weight_matrices(tb_dir, data):
    cfg = cfg_for(tb_dir, regularizer="l2", l2=1e-3, epochs=1, lr=1e-4)
    states = []
    m = run_trial(cfg, lambda metrics, get: states.append(get()), data=data)
    model = build_task(cfg, data, CPU).model
    covered = decay_parameters(model, False)[0]
    names = {n for n, p in model.named_parameters() if any(p is q for q in covered)}
    assert names == {"embed.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "out.weight"}
    model.load_state_dict(states[-1]["model"])
    expect = 1e-3 * sum(float(p.detach().pow(2).sum()) for p in decay_parameters(model, False)[0])
    assert m["l2_term"] == pytest.approx(expect, rel=1e-2)  # before the last step vs after it
    assert "l2_term" not in run_trial(cfg_for(tb_dir, epochs=1), data=data)  # no penalty, no term


def test_l1_term_is_lambda_times_sum_of_absolute_weights(tb_dir, data):
    cfg = cfg_for(tb_dir, regularizer="l1", l1=1e-3, epochs=1, lr=1e-4)
    states = []
    m = run_trial(cfg, lambda metrics, get: states.append(get()), data=data)
    model = build_task(cfg, data, CPU).model
    model.load_state_dict(states[-1]["model"])
    expect = 1e-3 * sum(float(p.detach().abs().sum()) for p in decay_parameters(model, False)[0])
    assert m["l1_term"] == pytest.approx(expect, rel=1e-2)


def test_weight_decay_groups_for_the_tagger():
    model = tagger("weight_decay", weight_decay=0.05, model="gru", bidirectional=True)
    cfg = make_config(task="pos", regularizer="weight_decay", weight_decay=0.05)
    groups = for_config(cfg).param_groups(model)
    name = {id(p): n for n, p in model.named_parameters()}
    decayed = {name[id(p)] for g in groups if g["weight_decay"] for p in g["params"]}
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert decayed == {"embed.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.weight_ih_l0_reverse",
                       "rnn.weight_hh_l0_reverse", "out.weight"}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_label_smoothing_ignores_padding():
    eps = 0.1
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4)
    y = torch.tensor([[1, 3, IGNORE], [0, IGNORE, IGNORE]])
    loss, _, n = _sums(logits, y, label_smoothing=eps)
    logp = logits.log_softmax(-1)
    real = [(0, 0), (0, 1), (1, 0)]
    # (1 - eps) * CE + eps * mean over the K classes of -log p, summed over real tokens only
    expect = sum(-(1 - eps) * logp[b, t, y[b, t]] - eps * logp[b, t].mean() for b, t in real)
    assert int(n) == 3
    assert float(loss) == pytest.approx(float(expect), rel=1e-5)
    plain, _, _ = _sums(logits, y)
    assert float(plain) == pytest.approx(float(sum(-logp[b, t, y[b, t]] for b, t in real)), rel=1e-5)


# --- every pos technique through a trial -----------------------------------------------------------------
def _several() -> str:
    """As many pos techniques as combine (catalog order, each kept if it combines with the rest)."""
    parts: list[str] = []
    for name in regularizers.names("pos"):
        if name == regularizers.NONE:
            continue
        try:
            regularizers.parse("+".join(parts + [name]))
        except regularizers.CatalogError:
            continue
        parts.append(name)
    return "+".join(parts)


@pytest.fixture(scope="module")
def none_run(tb_dir, data):
    return run_trial(cfg_for(tb_dir, epochs=1, model="lstm", bidirectional=True, layers=2), data=data)


@pytest.mark.parametrize("regularizer", regularizers.names("pos") + [_several()])
def test_every_pos_technique_trains(tb_dir, data, none_run, regularizer):
    combo = regularizers.parse(regularizer)
    assert len(combo.techniques) >= (1 if "+" not in regularizer else 4)
    cfg = cfg_for(tb_dir, regularizer=regularizer, epochs=1, model="lstm", bidirectional=True, layers=2)
    m = run_trial(cfg, data=data)
    for key in ("train_loss", "train_clean_loss", "val_loss", "test_loss", "test_loss_oov"):
        assert math.isfinite(m[key]), key
    for key in ("train_acc", "val_acc", "test_acc"):
        assert 0.0 <= m[key] <= 1.0, key
    for t in combo.techniques:
        if t.penalty is not None:
            assert m[f"{t.name}_term"] > 0.0
    if combo.name != regularizers.NONE:  # it acts on training: same seed, other training loss
        assert m["train_loss"] != none_run["train_loss"]
    else:
        assert m["train_loss"] == none_run["train_loss"]
