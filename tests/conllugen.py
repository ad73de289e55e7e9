"""Generate CoNLL-U text for tests (never the real data), with the format's corners in it.

Sentences come from posgen (every sentence has its own number token ``n<k>``, so sentences can be
told apart after a split): UPOS is posgen's universal tag, XPOS the Penn Treebank tag. Around the
words:

* comments: ``# sent_id``, ``# text``, a ``# newdoc id`` every 10 sentences, and a comment without
  ``=`` in every third sentence;
* multiword tokens: every other sentence starts with a range line ``1-2`` whose FORM is its first
  two words run together and every other column ``_`` (the UD convention);
* empty nodes: every third sentence has ``k.1`` after its second-to-last word, with a FORM and UPOS
  and XPOS of its own (``elided`` / ``VERB`` / ``VBD``): a reader that kept it would show an extra
  word.

:func:`write_file` and :func:`write_ud_dir` return what a correct reader gives, built from the
generated sentences themselves, never by parsing the text.
"""
from __future__ import annotations

import random
from pathlib import Path

import posgen

EMPTY_NODE = ("elided", "VERB", "VBD")


def sentence(k: int, rng: random.Random) -> tuple[list[str], list[tuple[str, str, str]]]:
    """(the sentence's CoNLL-U lines, its words as (form, upos, xpos))."""
    words = [(w, posgen.PTB_TO_UNIVERSAL[t], t) for w, t, _ in posgen.sentence(k, rng, traces=False)]
    lines = []
    if k % 10 == 0:
        lines.append(f"# newdoc id = doc{k // 10}")
    lines += [f"# sent_id = s{k}", f"# text = {' '.join(w for w, _, _ in words)}"]
    if k % 3 == 0:
        lines.append("# a comment without a value")
    if k % 2 == 0:
        lines.append("1-2\t" + words[0][0] + words[1][0] + "\t_" * 8)
    for i, (form, upos, xpos) in enumerate(words, start=1):
        head, rel = (0, "root") if i == 1 else (1, "dep")
        lines.append(f"{i}\t{form}\t{form.lower()}\t{upos}\t{xpos}\t_\t{head}\t{rel}\t_\t_")
        if k % 3 == 0 and i == len(words) - 1:
            form_e, upos_e, xpos_e = EMPTY_NODE
            lines.append(f"{i}.1\t{form_e}\t{form_e}\t{upos_e}\t{xpos_e}\t_\t_\t_\t1:dep\t_")
    return lines, words


def generate(n: int, start: int = 0, seed: int = 0) -> tuple[str, list[list[tuple[str, str, str]]]]:
    """CoNLL-U text of sentences ``start .. start + n - 1``, and their words."""
    rng = random.Random(seed * 7919 + start)
    blocks, expected = [], []
    for k in range(start, start + n):
        lines, words = sentence(k, rng)
        blocks.append("\n".join(lines) + "\n\n")
        expected.append(words)
    return "".join(blocks), expected


def write_file(path: Path, n: int, start: int = 0, seed: int = 0) -> list[list[tuple[str, str, str]]]:
    text, expected = generate(n, start, seed)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text, encoding="utf-8")
    return expected


def write_ud_dir(directory: Path, sizes: dict[str, int], prefix: str = "xx_gen") -> dict[str, list]:
    """``<prefix>-ud-<part>.conllu`` for each part (train, dev, test) in ``sizes``; sentence numbers
    run on from part to part, so every sentence of the treebank is distinct."""
    out, start = {}, 0
    for part in ("train", "dev", "test"):
        if part in sizes:
            out[part] = write_file(Path(directory) / f"{prefix}-ud-{part}.conllu", sizes[part], start)
            start += sizes[part]
    return out


def write_untagged(path: Path, n: int, how: str = "tokens") -> Path:
    """A file a tagger cannot learn from: ``tokens`` (ID and FORM only: no tag column),
    ``underscore`` (10 columns, UPOS and XPOS all ``_``) or ``partial`` (one word's UPOS is ``_``)."""
    text, _ = generate(n)
    out = []
    for line in text.splitlines():
        cols = line.split("\t")
        if line.startswith("#") or len(cols) < 10 or "-" in cols[0] or "." in cols[0]:
            out.append(line)
        elif how == "tokens":
            out.append("\t".join(cols[:2]))
        elif how == "underscore":
            out.append("\t".join(cols[:3] + ["_", "_"] + cols[5:]))
        else:
            out.append(line)
    if how == "partial":
        words = [i for i, line in enumerate(out) if line[:1].isdigit() and line.split("\t")[0].isdigit()]
        cols = out[words[len(words) // 2]].split("\t")
        out[words[len(words) // 2]] = "\t".join(cols[:3] + ["_"] + cols[4:])
    Path(path).write_text("\n".join(out) + "\n", encoding="utf-8")
    return Path(path)
