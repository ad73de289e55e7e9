"""Generate tiny POS-tagged corpora in NLTK's on-disk formats, for tests (never the real data).

Every sentence carries a unique number token (``n<k>``, tag CD), so sentences can be told apart
after the split and every test-split number is out of vocabulary. Treebank trees hold ``-NONE-``
trace leaves when ``traces`` is set.
"""
from __future__ import annotations

import hashlib
import io
import random
import zipfile
from pathlib import Path

LEXICON = {
    "DT": ["the", "a", "this", "every"],
    "JJ": ["big", "small", "red", "old"],
    "NN": ["dog", "cat", "house", "plan", "record"],
    "NNS": ["dogs", "cats", "plans", "records"],
    "NNP": ["Pierre", "Vinken", "Smith"],
    "VBZ": ["runs", "sees", "likes", "records"],
    "VBD": ["ran", "saw", "liked"],
    "IN": ["in", "on", "with", "of"],
    "RB": ["quickly", "very"],
    "CC": ["and", "or"],
}
PTB_TO_UNIVERSAL = {
    "DT": "DET", "JJ": "ADJ", "NN": "NOUN", "NNS": "NOUN", "NNP": "NOUN", "VBZ": "VERB",
    "VBD": "VERB", "IN": "ADP", "RB": "ADV", "CC": "CONJ", "CD": "NUM", ".": ".", "-NONE-": "X",
}
TRACES = ["*-1", "*T*-1", "0", "*U*"]


def sentence(k: int, rng: random.Random, traces: bool) -> list[tuple[str, str, str]]:
    """(word, tag, phrase) triples; phrase groups leaves for the bracketed tree."""
    def pick(tag):
        return (rng.choice(LEXICON[tag]), tag)

    subj = [pick("DT")] + ([pick("JJ")] if rng.random() < 0.5 else []) + [pick(rng.choice(["NN", "NNS"]))]
    if rng.random() < 0.3:
        subj = [pick("NNP")]
    verb = [pick(rng.choice(["VBZ", "VBD"]))] + ([pick("RB")] if rng.random() < 0.3 else [])
    obj = [pick("DT"), (f"n{k}", "CD"), pick(rng.choice(["NN", "NNS"]))]
    pp = [pick("IN"), pick("DT"), pick("NN")] if rng.random() < 0.5 else []
    out = [(w, t, "NP-SBJ") for w, t in subj] + [(w, t, "VP") for w, t in verb]
    if traces and rng.random() < 0.6:
        out.append((rng.choice(TRACES), "-NONE-", "VP"))
    out += [(w, t, "NP") for w, t in obj] + [(w, t, "PP") for w, t in pp]
    if traces and rng.random() < 0.3:
        out.append((rng.choice(TRACES), "-NONE-", "NP"))
    if rng.random() < 0.3:
        out += [pick("CC") + ("VP",), pick("VBD") + ("VP",)]
    out.append((".", ".", "."))
    return out


def sentences(n: int, seed: int = 0, traces: bool = True, lengths: dict[int, int] | None = None):
    """``n`` sentences; ``lengths`` {k: extra} pads sentence k with ``extra`` more nouns."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        s = sentence(k, rng, traces)
        for _ in range((lengths or {}).get(k, 0)):
            s.insert(-1, (rng.choice(LEXICON["NN"]), "NN", "NP"))
        out.append(s)
    return out


def mrg(sent: list[tuple[str, str, str]]) -> str:
    """A Penn-Treebank bracketed tree, leaves grouped by phrase."""
    groups: list[tuple[str, list[str]]] = []
    for w, t, ph in sent:
        leaf = f"({t} {w})"
        if groups and groups[-1][0] == ph:
            groups[-1][1].append(leaf)
        else:
            groups.append((ph, [leaf]))
    body = " ".join(leaves[0] if ph == "." else f"({ph} {' '.join(leaves)})" for ph, leaves in groups)
    return f"( (S {body}) )\n"


def treebank_files(sents, per_file: int = 10) -> dict[str, str]:
    files = {"treebank/combined/README": "generated test corpus\n"}
    for f in range(0, len(sents), per_file):
        files[f"treebank/combined/wsj_{f // per_file + 1:04d}.mrg"] = "".join(mrg(s) for s in sents[f:f + per_file])
    return files


def conll_files(sents) -> dict[str, str]:
    def block(ss):
        return "".join("".join(f"{w} {t} {'B-NP' if ph.startswith('NP') else 'O'}\n"
                               for w, t, ph in s if t != "-NONE-") + "\n" for s in ss)
    cut = len(sents) * 3 // 4
    return {"conll2000/README": "generated\n", "conll2000/train.txt": block(sents[:cut]),
            "conll2000/test.txt": block(sents[cut:])}


def brown_files(sents, per_file: int = 10) -> dict[str, str]:
    files, cats = {}, []
    for f in range(0, len(sents), per_file):
        name = f"ca{f // per_file + 1:02d}"
        files[f"brown/{name}"] = "".join(
            "\n\t" + " ".join(f"{w}/{t.lower()}" for w, t, _ in s if t != "-NONE-") + "\n"
            for s in sents[f:f + per_file])
        cats.append(f"{name} news\n")
    files["brown/cats.txt"] = "".join(cats)
    files["brown/README"] = "generated\n"
    return files


def universal_files() -> dict[str, str]:
    ptb = "".join(f"{k}\t{v}\n" for k, v in PTB_TO_UNIVERSAL.items())
    brown = "".join(f"{k}\t{v}\n" for k, v in PTB_TO_UNIVERSAL.items() if k != "-NONE-")
    return {"universal_tagset/README": "generated\n", "universal_tagset/en-ptb.map": ptb,
            "universal_tagset/en-brown.map": brown}


CORPUS_FILES = {"treebank": treebank_files, "conll2000": conll_files, "brown": brown_files}


def _zip_bytes(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        dirs = sorted({p.rsplit("/", i)[0] + "/" for p in files for i in range(1, p.count("/") + 1)})
        for d in dirs:
            z.writestr(d, "")
        for p, text in sorted(files.items()):
            z.writestr(p, text)
    return buf.getvalue()


def _write(root: Path, subdir: str, files: dict[str, str], zipped: bool) -> Path:
    base = root / subdir
    base.mkdir(parents=True, exist_ok=True)
    if zipped:
        name = next(iter(files)).split("/")[0]
        out = base / f"{name}.zip"
        out.write_bytes(_zip_bytes(files))
        return out
    for p, text in files.items():
        (base / p).parent.mkdir(parents=True, exist_ok=True)
        (base / p).write_text(text)
    return base


def make_nltk_data(root: Path, corpus: str = "treebank", n: int = 60, *, seed: int = 0,
                   traces: bool = True, zipped: bool = False, universal: bool = True,
                   lengths: dict[int, int] | None = None) -> Path:
    """A data directory in NLTK's layout: corpora/<corpus>[.zip] and taggers/universal_tagset."""
    root = Path(root)
    _write(root, "corpora", CORPUS_FILES[corpus](sentences(n, seed, traces, lengths)), zipped)
    if universal:
        _write(root, "taggers", universal_files(), zipped)
    return root


def make_download_server(www: Path, base_url: str, corpus: str = "treebank", n: int = 60,
                         seed: int = 0) -> str:
    """Package zips and an NLTK downloader index under ``www``; returns the index URL."""
    packages = [(corpus, "corpora", CORPUS_FILES[corpus](sentences(n, seed))),
                ("universal_tagset", "taggers", universal_files())]
    entries = []
    for pid, subdir, files in packages:
        blob = _zip_bytes(files)
        (www / f"{pid}.zip").write_bytes(blob)
        unzipped = sum(len(t.encode()) for t in files.values())
        entries.append(
            f'<package id="{pid}" name="generated {pid}" subdir="{subdir}" '
            f'url="{base_url}/{pid}.zip" size="{len(blob)}" unzipped_size="{unzipped}" '
            f'checksum="{hashlib.md5(blob).hexdigest()}" '
            f'sha256_checksum="{hashlib.sha256(blob).hexdigest()}" unzip="1" />')
    index = ('<?xml version="1.0"?>\n<?xml-stylesheet href="index.xsl" type="text/xsl"?>\n'
             "<nltk_data>\n<packages>\n" + "\n".join(entries) + "\n</packages>\n"
             "<collections>\n</collections>\n</nltk_data>\n")
    (www / "index.xml").write_text(index)
    return f"{base_url}/index.xml"
