"""Write an NLTK POS corpus (the Penn Treebank sample by default) as a CoNLL-U file.

    python tests/treebank_to_conllu.py --nltk-data ../shared/data/nltk_data --out /tmp/treebank.conllu

The sentences are exactly the ones ``--corpus treebank`` trains on, in the same order (read by
study.corpora.read_tagged, ``-NONE-`` traces dropped), so ``--corpus conllu --data OUT`` splits and
encodes them identically. Columns: ID, FORM, UPOS = NLTK's universal tag (its 12-tag set, e.g.
``.`` and ``CONJ``, not UD's 17), XPOS = the corpus's own tag; the other six are ``_``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from study.config import make_config
from study.corpora import read_tagged


def write_conllu(nltk_data: str | Path, out: str | Path, corpus: str = "treebank") -> int:
    """Write ``corpus`` from ``nltk_data`` to ``out``; returns the number of sentences."""
    def read(tagset: str):
        cfg = make_config(task="pos", corpus=corpus, nltk_data=str(nltk_data), tagset=tagset)
        return read_tagged(cfg)[0]

    universal, native = read("universal"), read("native")
    assert [[w for w, _ in s] for s in universal] == [[w for w, _ in s] for s in native]
    blocks = []
    for n, (u_sent, x_sent) in enumerate(zip(universal, native), start=1):
        lines = [f"# sent_id = {corpus}-{n}", f"# text = {' '.join(w for w, _ in u_sent)}"]
        lines += [f"{i}\t{w}\t_\t{u}\t{x}\t_\t_\t_\t_\t_"
                  for i, ((w, u), (_, x)) in enumerate(zip(u_sent, x_sent), start=1)]
        blocks.append("\n".join(lines) + "\n\n")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(blocks), encoding="utf-8")
    return len(blocks)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nltk-data", required=True, help="NLTK data directory (with the corpus and universal_tagset)")
    p.add_argument("--out", required=True, help="the CoNLL-U file to write")
    p.add_argument("--corpus", default="treebank", choices=("treebank", "conll2000", "brown"))
    args = p.parse_args(argv)
    n = write_conllu(args.nltk_data, args.out, args.corpus)
    print(f"wrote {n} sentences to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
