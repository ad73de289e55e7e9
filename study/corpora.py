"""POS-tagged corpora through NLTK's own readers: find (or fetch), read, split, encode.

``load_corpus(cfg)`` returns a :class:`PosData`: the corpus split by sentence into
train/validation/test (``1 - val_fraction - test_fraction`` / ``val_fraction`` / ``test_fraction``,
80/10/10 by default, permuted with ``split_seed`` so every seed sees the same split), encoded
as flat int64 arrays with sentence offsets. The vocabulary and the tag set come from the
training split only; id 0 is padding, id 1 the unknown word. Tag id 0 (``<unk>``) stands for a
validation/test tag never seen in training: the model can never be right about such a token,
which is the honest way to count it.

Where the data comes from: the corpus is read with the reader NLTK itself uses for
``nltk.corpus.treebank`` / ``conll2000`` / ``brown`` (a fresh ``LazyCorpusLoader`` with the same
arguments), searching ``cfg.nltk_data`` first and then ``nltk.data.path`` (which includes
``$NLTK_DATA``). The ``universal`` tagset goes through NLTK's mapping (``tagged_sents(tagset=...)``'s
``map_tag``), which needs the ``universal_tagset`` resource. Anything missing is fetched with
NLTK's downloader (``Downloader(server_index_url=cfg.nltk_url).download(...)``, NLTK's default
index when ``nltk_url`` is unset) into ``cfg.nltk_data`` (or NLTK's default download directory);
set ``REGSTUDY_OFFLINE=1`` to never try. When it stays missing, :class:`CorpusError` says how
to install it.

``corpus: conllu`` reads a CoNLL-U file or a Universal Dependencies treebank directory (``cfg.data``)
instead: see :mod:`study.conllu_corpus`; it ends in the same :func:`encode_splits`.

Penn Treebank ``-NONE-`` trace tokens (``*-1``, ``*T*-1``, ``0``, ...) are empty elements, not
words: they are dropped unless ``keep_traces`` is set, so accuracy is over real tokens.
"""
from __future__ import annotations

import contextlib
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # (config imports the task table, which imports this module)
    from .config import TrialConfig


PAD, UNK = 0, 1
PAD_WORD, UNK_WORD = "<pad>", "<unk>"
UNK_TAG = "<unk>"
TRACE_TAG = "-NONE-"
UNIVERSAL_PACKAGE = "universal_tagset"



class CorpusError(RuntimeError):
    """An NLTK corpus is missing or unusable."""


@dataclass(frozen=True)
class _ReaderSpec:
    """The arguments ``nltk.corpus`` gives the corpus's ``LazyCorpusLoader`` (kept identical)."""

    package: str  # the NLTK downloader id
    subdir: str  # below corpora/
    reader: str  # class name in nltk.corpus.reader
    args: tuple
    kwargs: dict
    map_source: str  # universal_tagset mapping file for the native tagset


READERS = {
    "treebank": _ReaderSpec("treebank", "treebank/combined", "BracketParseCorpusReader",
                            (r"wsj_.*\.mrg",), {"tagset": "wsj", "encoding": "ascii"}, "en-ptb"),
    "conll2000": _ReaderSpec("conll2000", "conll2000", "ConllChunkCorpusReader",
                             (["train.txt", "test.txt"], ("NP", "VP", "PP")),
                             {"tagset": "wsj", "encoding": "ascii"}, "en-ptb"),
    "brown": _ReaderSpec("brown", "brown", "CategorizedTaggedCorpusReader", (r"c[a-z]\d\d",),
                         {"cat_file": "cats.txt", "tagset": "brown", "encoding": "ascii"}, "en-brown"),
}


@dataclass
class PosSplit:
    """One split, flat: sentence ``i`` is ``words[offsets[i]:offsets[i+1]]`` (and ``tags``, ``oov``)."""

    words: np.ndarray  # int64 word ids (UNK for words outside the vocabulary)
    tags: np.ndarray  # int64 tag ids
    offsets: np.ndarray  # int64, n_sentences + 1
    index: np.ndarray  # int64: each sentence's position in the corpus (tagged_sents order)
    oov: np.ndarray  # bool per token: the word is not in the (train-built) vocabulary

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_sentences(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])

    def sentence(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.words[a:b], self.tags[a:b]


@dataclass
class PosData:
    train: PosSplit
    val: PosSplit
    test: PosSplit
    vocab: dict[str, int]  # word -> id; 0 = <pad>, 1 = <unk>
    tags: list[str]  # tag id -> tag; 0 = <unk> (a tag not seen in training)
    counts: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def test_oov(self) -> np.ndarray:
        return self.test.oov

    def sizes(self) -> dict[str, int]:
        return {"train": self.train.n_sentences, "val": self.val.n_sentences,
                "test": self.test.n_sentences, "train_tokens": self.train.n_tokens,
                "val_tokens": self.val.n_tokens, "test_tokens": self.test.n_tokens}


# --- finding and fetching ------------------------------------------------------------------------
@contextlib.contextmanager
def _data_path(extra: list[str]):
    """``extra`` directories first on ``nltk.data.path`` while the corpus is read, then restored.

    NLTK's path sandbox (``nltk.pathsec``) only reads under directories on ``nltk.data.path``, so
    a ``--nltk-data`` directory has to be there, not merely passed to ``find(paths=...)``.
    """
    import nltk

    saved = list(nltk.data.path)
    nltk.data.path[:0] = [d for d in extra if d not in nltk.data.path]
    try:
        yield
    finally:
        nltk.data.path[:] = saved


def _reader(spec: _ReaderSpec):
    from nltk.corpus import reader as readers
    from nltk.corpus.util import LazyCorpusLoader

    # A fresh loader per call: nltk.corpus.treebank & co. bind themselves to whichever
    # directory they were first found in, for the life of the process.
    return LazyCorpusLoader(spec.subdir, getattr(readers, spec.reader), *spec.args, **spec.kwargs)


def _missing(cfg: TrialConfig) -> list[str]:
    """Downloader ids of what this config needs and cannot find."""
    import nltk

    spec = READERS[cfg.corpus]
    missing = []
    try:
        _reader(spec).fileids()  # forces the lookup: corpora/<name>.zip or corpora/<name>/
    except LookupError:
        missing.append(spec.package)
    if cfg.tagset == "universal":
        try:
            nltk.data.find(f"taggers/{UNIVERSAL_PACKAGE}/{spec.map_source}.map")
        except LookupError:
            missing.append(UNIVERSAL_PACKAGE)
    return missing


def install_hint(cfg: TrialConfig, packages: list[str]) -> str:
    d = cfg.nltk_data or "DIR"
    url = f" -u {cfg.nltk_url}" if cfg.nltk_url else ""
    return (f"install it with: python -m nltk.downloader{url} -d {d} {' '.join(packages)}"
            + ("" if cfg.nltk_data else " and pass --nltk-data DIR"))


def _download(cfg: TrialConfig, packages: list[str]) -> str | None:
    """Fetch ``packages`` with NLTK's downloader; None on success, else why it failed."""
    from nltk.downloader import Downloader

    downloader = Downloader(server_index_url=cfg.nltk_url)
    target = cfg.nltk_data or downloader.default_download_dir()
    try:
        os.makedirs(target, exist_ok=True)
        with open(os.devnull, "w") as quiet:
            for name in packages:
                if not downloader.download(name, download_dir=target, quiet=True,
                                           raise_on_error=True, print_error_to=quiet):
                    return f"the downloader could not install {name!r}"
    except (OSError, ValueError) as e:  # ValueError: NLTK's raise_on_error; OSError: network, disk
        return " ".join(str(e).split())[:300]
    return None


def _locate(cfg: TrialConfig) -> None:
    """Make sure the corpus (and the mapping) can be found, fetching them if allowed."""
    missing = _missing(cfg)
    if not missing:
        return
    where = ", ".join([cfg.nltk_data] if cfg.nltk_data else []) or "NLTK's data path"
    if os.environ.get("REGSTUDY_OFFLINE", "").lower() in ("1", "true", "yes"):
        why = "downloads are off (REGSTUDY_OFFLINE)"
    else:
        why = _download(cfg, missing)
        if why is None:
            missing = _missing(cfg)
            if not missing:
                return
            why = "the download did not provide it"
    raise CorpusError(f"NLTK data {', '.join(missing)} not found in {where} and not downloaded "
                      f"({why}); {install_hint(cfg, missing)}")


# --- reading -------------------------------------------------------------------------------------
def _universal_mapping(source: str) -> None:
    """Forget a cached mapping so NLTK's map_tag re-reads it from the current data path."""
    import nltk
    from nltk.tag import mapping

    mapping._MAPPINGS.pop(source, None)
    nltk.data.clear_cache()


def read_tagged(cfg: TrialConfig) -> tuple[list[list[tuple[str, str]]], int, str]:
    """Every sentence as (word, tag) pairs, traces dropped unless ``keep_traces``.

    Returns (sentences, number of trace tokens dropped, where the corpus was found).
    """
    from nltk.tag.mapping import map_tag

    spec = READERS[cfg.corpus]
    with _data_path([cfg.nltk_data] if cfg.nltk_data else []):
        _locate(cfg)
        corpus = _reader(spec)
        try:
            native = [list(s) for s in corpus.tagged_sents()]
            source = str(corpus.root)
            if cfg.tagset == "universal":
                src = spec.kwargs["tagset"]
                _universal_mapping(spec.map_source)
                to_tag = lambda t: map_tag(src, "universal", t)  # noqa: E731  (NLTK's mapping)
            else:
                to_tag = lambda t: t  # noqa: E731
            dropped = 0
            sents = []
            for s in native:
                kept = [(w, to_tag(t)) for w, t in s if cfg.keep_traces or t != TRACE_TAG]
                dropped += len(s) - len(kept)
                if kept:
                    sents.append(kept)
        except (LookupError, OSError, ValueError, AssertionError) as e:
            raise CorpusError(f"cannot read NLTK corpus {cfg.corpus!r}: "
                              f"{' '.join(str(e).split())[:300]}") from e
    if len(sents) < 3:
        raise CorpusError(f"NLTK corpus {cfg.corpus!r} at {source} has {len(sents)} sentences; "
                          "need at least 3 to split into train/validation/test")
    return sents, dropped, source


# --- splitting and encoding ------------------------------------------------------------------------
def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted sentence indices (train, val, test): a seeded permutation cut by the fractions."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    n_test = max(1, int(round(n * test_fraction)))
    if n_val + n_test >= n:
        raise CorpusError(f"{n} sentences are too few for val_fraction={val_fraction}, "
                          f"test_fraction={test_fraction}: every split (train, validation, test) needs at "
                          f"least one sentence, and these fractions take {n_val} + {n_test}")
    test, val, train = perm[:n_test], perm[n_test:n_test + n_val], perm[n_test + n_val:]
    return np.sort(train), np.sort(val), np.sort(test)


def carve_indices(n: int, fraction: float, seed: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (kept, carved) indices: ``fraction`` of ``n`` sentences carved out by a seeded
    permutation, for a source that gives some splits but not ``what`` (e.g. a UD treebank without
    a dev file). ``split_indices`` is the same cut when both val and test are carved."""
    perm = np.random.default_rng(seed).permutation(n)
    k = max(1, int(round(n * fraction)))
    if k >= n:
        raise CorpusError(f"{n} training sentences are too few to carve a {what} split of {fraction} "
                          "from: the training split needs at least one sentence left")
    return np.sort(perm[k:]), np.sort(perm[:k])


def build_vocab(train_sents: list[list[tuple[str, str]]], min_freq: int) -> tuple[dict[str, int], list[str]]:
    words = Counter(w for s in train_sents for w, _ in s)
    kept = sorted((w for w, c in words.items() if c >= min_freq), key=lambda w: (-words[w], w))
    vocab = {PAD_WORD: PAD, UNK_WORD: UNK}
    for w in kept:
        vocab.setdefault(w, len(vocab))
    tags = [UNK_TAG] + sorted({t for s in train_sents for _, t in s})
    return vocab, tags


def _encode(sents: list[list[tuple[str, str]]], index: np.ndarray, vocab: dict[str, int],
            tag_ids: dict[str, int]) -> PosSplit:
    lengths = np.array([len(s) for s in sents], dtype=np.int64)
    offsets = np.zeros(len(sents) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    words = np.fromiter((vocab.get(w, UNK) for s in sents for w, _ in s), np.int64, int(offsets[-1]))
    tags = np.fromiter((tag_ids.get(t, 0) for s in sents for _, t in s), np.int64, int(offsets[-1]))
    return PosSplit(words=words, tags=tags, offsets=offsets, index=index.astype(np.int64),
                    oov=words == UNK)


def encode_corpus(sents: list[list[tuple[str, str]]], cfg: TrialConfig) -> PosData:
    """Split by sentence (``split_indices``), then :func:`encode_splits`."""
    tr, va, te = split_indices(len(sents), cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    pick = lambda idx: ([sents[i] for i in idx], idx)  # noqa: E731
    return encode_splits({"train": pick(tr), "val": pick(va), "test": pick(te)}, cfg)


def encode_splits(splits: dict[str, tuple[list[list[tuple[str, str]]], np.ndarray]],
                  cfg: TrialConfig) -> PosData:
    """Splits already made, ``{"train"|"val"|"test": (sentences, their positions in the source)}``:
    lower-case (if asked), build vocabulary/tags from train only, encode every split."""
    if cfg.lowercase:
        splits = {k: ([[(w.lower(), t) for w, t in s] for s in ss], idx) for k, (ss, idx) in splits.items()}
    vocab, tags = build_vocab(splits["train"][0], cfg.min_freq)
    tag_ids = {t: i for i, t in enumerate(tags)}
    splits = {name: _encode(*splits[name], vocab, tag_ids) for name in ("train", "val", "test")}
    counts = {
        "sentences": {k: s.n_sentences for k, s in splits.items()},
        "tokens": {k: s.n_tokens for k, s in splits.items()},
        "oov_tokens": {k: int(s.oov.sum()) for k, s in splits.items()},
        "unseen_tag_tokens": {k: int((s.tags == 0).sum()) for k, s in splits.items()},
        "vocab": len(vocab),
        "tags": len(tags),
    }
    return PosData(vocab=vocab, tags=tags, counts=counts, **splits)


def load_corpus(cfg: TrialConfig) -> PosData:
    """The configured corpus, found or fetched, read with NLTK, split and encoded (see module doc);
    ``corpus: conllu`` reads ``cfg.data`` instead (study.conllu_corpus)."""
    if cfg.corpus == "conllu":
        from .conllu_corpus import load_conllu  # (it builds on this module)

        return load_conllu(cfg)
    sents, dropped, source = read_tagged(cfg)
    data = encode_corpus(sents, cfg)
    data.counts.update(corpus=cfg.corpus, tagset=cfg.tagset, traces_dropped=dropped,
                       lowercase=cfg.lowercase)
    data.source = source
    return data
