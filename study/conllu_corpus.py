"""CoNLL-U corpora for the POS task (``corpus: conllu``), read with the ``conllu`` package.

``cfg.data`` is either

* one CoNLL-U file: split by sentence exactly as the NLTK corpora are
  (:func:`study.corpora.split_indices`: ``val_fraction`` / ``test_fraction`` of its sentences,
  permuted with ``split_seed``), or
* the directory of one Universal Dependencies treebank: ``<name>-ud-train.conllu`` and, optionally,
  ``<name>-ud-dev.conllu`` and ``<name>-ud-test.conllu``, used as given (train, validation, test).
  A missing dev or test file is carved out of train (``val_fraction`` / ``test_fraction`` of the
  training sentences, seeded by ``split_seed``; both missing = the single-file split of the train
  file). ``PosData.counts["splits"]`` says where each split came from.

The words are CoNLL-U's syntactic words (integer IDs): multiword-token range lines (``1-2 del``)
are skipped, their parts (``de``, ``el``) being the words, as are empty nodes (``8.1``) and
comments. The tag is the UPOS column (``tagset: universal``, the POS default, or ``upos``) or the
XPOS column (``tagset: xpos``). Every word needs one: a tag column that is absent or ``_`` is a
:class:`CorpusError` naming the file and line, never a silent ``_`` tag. ``PosSplit.index`` is
each sentence's position in the source: the file, or train, dev and test concatenated in that
order. Vocabulary and tag set come from the training split only (study.corpora.encode_splits).
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .corpora import CorpusError, PosData, carve_indices, encode_splits, split_indices

if TYPE_CHECKING:
    from .config import TrialConfig

LAYOUT = "a .conllu file or a Universal Dependencies directory"  # (study.run.data_layout's words)
# tagset -> (the conllu package's field name, the CoNLL-U column number)
COLUMNS = {"universal": ("upos", 4), "upos": ("upos", 4), "xpos": ("xpos", 5)}
UD_SPLITS = (("train", "train"), ("val", "dev"), ("test", "test"))  # our split, UD's file word

Sentence = list[tuple[str, str]]


class _Lines:
    """A text file's lines, counted, so that errors can name a line.

    The parser reads a sentence up to the blank line after it (or the end of the file), so when
    it hands over a sentence, ``start`` is its first line and :meth:`end` the line after it.
    """

    def __init__(self, f):
        self._f = f
        self.read = f.read  # (parse_incr checks for a file-like object)
        self.n = 0
        self.start = 1
        self._blank = True

    def __iter__(self):
        for line in self._f:
            self.n += 1
            blank = not line.strip()  # (the parser's own test)
            if self._blank and not blank:
                self.start = self.n
            self._blank = blank
            yield line

    def end(self) -> int:
        return self.n if self._blank else self.n + 1


def read_file(path: Path, tagset: str) -> tuple[list[Sentence], Counter]:
    """The file's sentences as (form, tag) pairs, and how many range lines / empty nodes were skipped."""
    import conllu
    from conllu.exceptions import ParseException

    field, column = COLUMNS[tagset]
    name = field.upper()
    sents: list[Sentence] = []
    skipped: Counter = Counter(multiword_tokens=0, empty_nodes=0)
    words, untagged = 0, []
    lines = None
    try:
        with open(path, encoding="utf-8") as f:
            lines = _Lines(f)
            for tokens in conllu.parse_incr(lines):
                # CoNLL-U puts a sentence's comments before its words: the words are its last lines
                first = lines.end() - len(tokens)
                sent = []
                for i, tok in enumerate(tokens):
                    tid = tok.get("id")
                    if isinstance(tid, tuple):  # (1, "-", 2): a multiword token; (8, ".", 1): an empty node
                        skipped["multiword_tokens" if tid[1] == "-" else "empty_nodes"] += 1
                        continue
                    if not isinstance(tid, int):
                        raise CorpusError(f"{path}: line {first + i}: no word ID (column 1 is '_')")
                    words += 1
                    tag = tok.get(field)
                    if tag is None or tag in ("_", ""):
                        untagged.append((first + i, tok.get("form")))
                    sent.append((tok["form"], tag))
                if sent:
                    sents.append(sent)
    except ParseException as e:
        where = f"lines {lines.start}-{lines.end() - 1}" if lines else "line 1"
        raise CorpusError(f"{path}: {where}: not CoNLL-U ({' '.join(str(e).split())[:200]})") from None
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except FileNotFoundError:
        raise CorpusError(f"data not found: {path} (give {LAYOUT})") from None
    except OSError as e:
        raise CorpusError(f"{path}: cannot read it ({e.strerror or e})") from None
    if not sents:
        raise CorpusError(f"{path}: no sentences (an empty file, or not CoNLL-U); give {LAYOUT}")
    if untagged and len(untagged) == words:
        other = "tagset: upos reads UPOS" if field == "xpos" else "tagset: xpos reads XPOS"
        raise CorpusError(f"{path}: no {name} column: column {column} ({name}) is missing or '_' on every "
                          f"word; give a tagged CoNLL-U file ({other})")
    if untagged:
        line, form = untagged[0]
        raise CorpusError(f"{path}: line {line}: word {form!r} has no {name} tag (column {column} is "
                          f"missing or '_'; {len(untagged)} of {words} words are untagged); every word needs one")
    return sents, skipped


def ud_files(directory: Path) -> dict[str, Path]:
    """``{"train": ..., "val": ..., "test": ...}``: the treebank's files that exist (train always)."""
    trains = sorted(p for p in directory.glob("*-ud-train.conllu") if p.is_file())
    if not trains:
        found = sorted(p.name for p in directory.glob("*.conllu"))
        seen = f" (it holds {', '.join(found[:4])}{', ...' if len(found) > 4 else ''})" if found else ""
        raise CorpusError(f"data: {directory} has no *-ud-train.conllu file{seen}; give {LAYOUT} "
                          "(<name>-ud-train.conllu, optionally -ud-dev and -ud-test)")
    if len(trains) > 1:
        raise CorpusError(f"data: {directory} holds {len(trains)} treebanks' training files "
                          f"({', '.join(p.name for p in trains)}); give the directory of one treebank, or one .conllu file")
    prefix = trains[0].name[: -len("-ud-train.conllu")]
    files = {"train": trains[0]}
    for split, word in UD_SPLITS[1:]:
        found = sorted(p for p in directory.glob(f"*-ud-{word}.conllu") if p.is_file())
        mine = directory / f"{prefix}-ud-{word}.conllu"
        if found and found != [mine]:
            raise CorpusError(f"data: {directory}: {', '.join(p.name for p in found)} does not belong to "
                              f"{trains[0].name}; expected {mine.name}")
        if found:
            files[split] = mine
    return files


def _directory_splits(parts: dict[str, list[Sentence]], files: dict[str, Path], cfg: TrialConfig):
    """The given splits, with a missing val and/or test carved out of train; and how each was made."""
    start, index = 0, {}
    for split, _ in UD_SPLITS:  # positions in train + dev + test, concatenated
        if split in parts:
            index[split] = np.arange(start, start + len(parts[split]), dtype=np.int64)
            start += len(parts[split])
    train = parts["train"]
    missing = [s for s, _ in UD_SPLITS[1:] if s not in parts]
    fraction = {"val": cfg.val_fraction, "test": cfg.test_fraction}
    try:
        if len(missing) == 2:
            keep, va, te = split_indices(len(train), cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
            carved = {"val": va, "test": te}
        elif missing:
            keep, cut = carve_indices(len(train), fraction[missing[0]], cfg.split_seed, missing[0])
            carved = {missing[0]: cut}
        else:
            keep, carved = np.arange(len(train)), {}
    except CorpusError as e:
        raise CorpusError(f"{files['train']}: {e}") from None
    out = {s: (parts[s], index[s]) for s in parts if s != "train"}
    how = {s: f"given: {files[s].name}" for s in parts}
    for s, idx in carved.items():
        out[s] = ([train[i] for i in idx], index["train"][idx])
        how[s] = (f"carved from {files['train'].name}: {fraction[s]} of its sentences "
                  f"(split_seed {cfg.split_seed})")
    out["train"] = ([train[i] for i in keep], index["train"][keep])
    if carved:
        how["train"] += f" less the carved {' and '.join(carved)} sentences"
    return out, how


def load_conllu(cfg: TrialConfig) -> PosData:
    """``cfg.data`` read, split and encoded (see the module doc)."""
    path = Path(cfg.data or "").expanduser()
    if not cfg.data or not path.exists():
        raise CorpusError(f"data not found: {cfg.data} (give {LAYOUT})")
    skipped: Counter = Counter()
    if path.is_dir():
        files = ud_files(path)
        parts = {}
        for split, f in files.items():
            parts[split], sk = read_file(f, cfg.tagset)
            skipped.update(sk)
        splits, how = _directory_splits(parts, files, cfg)
    else:
        files = {"file": path}
        sents, skipped = read_file(path, cfg.tagset)
        try:
            tr, va, te = split_indices(len(sents), cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
        except CorpusError as e:
            raise CorpusError(f"{path}: {e}") from None
        splits = {s: ([sents[i] for i in idx], idx) for s, idx in (("train", tr), ("val", va), ("test", te))}
        how = {"train": f"the rest of {path.name}", "val": f"{cfg.val_fraction} of {path.name}'s sentences",
               "test": f"{cfg.test_fraction} of {path.name}'s sentences"}
        how = {s: f"{h} (split_seed {cfg.split_seed})" for s, h in how.items()}
    data = encode_splits(splits, cfg)
    data.counts.update(corpus=cfg.corpus, tagset=cfg.tagset, column=COLUMNS[cfg.tagset][0].upper(),
                       source=str(path), files={k: str(v) for k, v in files.items()}, splits=how,
                       skipped=dict(skipped), lowercase=cfg.lowercase)
    data.source = str(path)
    return data
