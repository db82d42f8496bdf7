#!/usr/bin/env python3
"""Verse-aligned Bible text from SWORD module exports (mod2imp): markup cleaning, alignment, chapter split.

The three modules are Debian's public-domain sword-text-kjv (engKJV2006eb), sword-text-web (engWEB2015eb,
text derived from the World English Bible) and sword-text-sparv (spaRV1909eb, Reina-Valera 1909).

    bible_text.py align IMP_DIR OUT_DIR     kjv.imp web.imp rv.imp -> OUT_DIR/TASK/{train,valid,test}.{src,tgt,ids}
    bible_text.py tokenize LANG < raw > tok  Moses-tokenised, lower-cased
    bible_text.py detokenize LANG < tok > raw  back to plain text (for sacreBLEU on model output)

A mod2imp export is a list of "$$$Book chapter:verse" lines, each followed by the verse's OSIS markup on one
line. Everything here is plain regular expressions over those strings, so it runs without the SWORD library.
"""
import argparse
import collections
import html
import json
import math
import random
import re
import sys
from pathlib import Path

TASKS = {"kjv-web": ("kjv", "web"), "rv-web": ("rv", "web")}  # task -> (source module, target module)
MODULES = {"kjv": "engKJV2006eb", "web": "engWEB2015eb", "rv": "spaRV1909eb"}

# ---------------------------------------------------------------------------------------------------- parsing

_ENTRY = re.compile(r"^\$\$\$(.+) (\d+):(\d+)\n(.*)$", re.M)


def parse_imp(text):
    """{(book, chapter, verse): raw markup} in the module's order; module/testament headings are skipped."""
    return {(m[1], int(m[2]), int(m[3])): m[4] for m in _ENTRY.finditer(text)}


# --------------------------------------------------------------------------------------------------- cleaning

# A book's closing <div eID=... type="book"/>: whatever follows it in the same entry belongs to no verse (the
# WEB puts its whole glossary after Revelation 22:21, and KJV/RV close books there too).
_BOOK_END = re.compile(r'<div\b[^>]*\beID="[^"]*"[^>]*\btype="book"[^>]*/>')
_NOTE = re.compile(r"<note\b.*?</note>", re.S)  # footnotes and cross-references (never nested)
# Headings with their text: section titles, acrostic letters, Paul's subscriptions (KJV), book titles,
# Song of Songs speakers (WEB). Canonical psalm titles are kept: they open verse 1 in all three modules,
# and RV1909 prints them as plain text, so dropping them from KJV/WEB only would misalign the pair.
_HEADING = re.compile(r'<title\b(?![^>]*canonical="true")[^>]*>.*?</title>|<speaker\b[^>]*>.*?</speaker>', re.S)
# ...except the WEB marks Psalm 119's acrostic letters ("ALEPH") as canonical psalm titles.
_ACROSTIC_TITLE = re.compile(r'<title\b[^>]*type="psalm"[^>]*>\s*[A-Z]+\s*</title>')
# RV1909 prints those letters as an untagged first word ("ALEPH. <w ...>Word</w>").
_ACROSTIC_LEAD = re.compile(r"^\s*[A-Z]{2,}\.?\s+(?=[¿¡]?<w\b)")
# Tags that sit inside a word or phrase vanish; every other tag (verse/line/paragraph milestones) is a space.
_INLINE = re.compile(r"</?(?:w|transChange|divineName|seg|foreign|name|catchWord|rdg|hi)\b[^>]*>")
_TAG = re.compile(r"<[^>]*>")
_TRUNCATED_TAG = re.compile(r"<[^>]*$")  # one WEB entry (Daniel 12:13) ends inside a tag
_USFM = re.compile(r"\\\+?[a-z]+[0-9]*\*? ?")  # KJV leftovers such as "\nd " and "\+nd*"
_PILCROW = "¶"  # KJV paragraph marks
_GAP = "\x00"  # where a note or red-letter mark was: a space only if words would otherwise run together
_RED_LETTER = re.compile(r"</?q\b[^>]*>")  # words of Jesus; the WEB closes them right before the next word
# RV1909 often tags a word and the translators' added words (<transChange>) with nothing in between:
# "word</w><transChange>word" is two words, but a verb form followed by an added "lo" is one (enclitic pronoun).
_RV_JOIN = re.compile(r"(\w+)(</w>)(?=<transChange\b[^>]*>(\w+))|(\w+)(</transChange>)(?=<w\b[^>]*>\w)")
_CLITIC = {"lo", "la", "los", "las", "le", "les", "me", "te", "se", "nos", "os"}
_CLITIC_HOST = re.compile(r"(?:r|d|ndo|me|te|se|nos)$|[áéíóú]")  # infinitive, imperative, gerund, stressed form


def _space_rv_joins(raw):
    def fix(m):
        if m[2]:  # word</w><transChange>next
            glue = m[3] in _CLITIC and _CLITIC_HOST.search(m[1])
            return m[1] + m[2] + ("" if glue else " ")
        return m[4] + m[5] + " "
    return _RV_JOIN.sub(fix, raw)


def clean_verse(raw):
    """One verse's markup -> plain text (no notes, headings, Strong's numbers, red-letter or paragraph marks)."""
    text = _BOOK_END.split(raw, 1)[0]
    text = _TRUNCATED_TAG.sub("", text)
    text = _RED_LETTER.sub(_GAP, _NOTE.sub(_GAP, text))
    text = _ACROSTIC_TITLE.sub(" ", text)
    text = _HEADING.sub(" ", text)
    text = _ACROSTIC_LEAD.sub("", text)
    text = _space_rv_joins(text)
    text = _INLINE.sub("", text)
    text = _TAG.sub(" ", text)
    text = _USFM.sub("", text).replace(_PILCROW, " ")
    text = html.unescape(text)
    # The WEB puts notes between words ("word<note>...</note>word"): keep a space there, not before ".,;".
    text = re.sub(rf"(?<=\S){_GAP}+(?=[\w“‘\[(])", " ", text).replace(_GAP, "")
    # ...and a few notes after a space, leaving "word ? Word" (never intended in these texts).
    text = re.sub(r"\s+(?=[,.;:?!](?:\s|$))", "", text)
    return " ".join(text.split())


_LEMMA = re.compile(r'lemma="([^"]*)"')


def strongs_numbers(raw):
    """Strong's numbers tagged in a verse's text (not its notes), e.g. {"H430", "H1254"}."""
    text = _NOTE.sub("", _BOOK_END.split(raw, 1)[0])
    return frozenset(f"{kind}{int(num)}" for lemma in _LEMMA.findall(text)
                     for kind, num in re.findall(r"([HG])(\d+)", lemma))


# -------------------------------------------------------------------------------------------------- alignment

def weighted_jaccard(a, b, idf):
    union = sum(idf[x] for x in a | b)
    return sum(idf[x] for x in a & b) / union if union else 0.0


def shifted_verses(refs, tags_a, tags_b, window=5, margin=0.15, trusted=0.5):
    """References where version B's verse is not version A's: it shares clearly less of A's verse (tags: sets
    of Strong's numbers or of words) than a B verse up to `window` places away in reading order does (RV1909
    numbers a dozen chapters like the Hebrew Bible, e.g. its Numbers 13:1 is the KJV's 12:16). IDF weights keep
    LORD/said/and from matching anywhere; `trusted` spares verses that already match well (refrains such as
    Psalm 42:5/11 and 43:5 or Leviticus 3:10/15, which repeat within the window)."""
    df = collections.Counter(x for tags in (tags_a, tags_b) for r in refs for x in tags[r])
    idf = {x: math.log(2 * len(refs) / n) for x, n in df.items()}
    found = []
    for i, ref in enumerate(refs):
        own = weighted_jaccard(tags_a[ref], tags_b[ref], idf)
        if own >= trusted:
            continue
        near = (weighted_jaccard(tags_a[ref], tags_b[refs[j]], idf)
                for j in range(max(0, i - window), min(len(refs), i + window + 1)) if j != i)
        if max(near, default=0.0) > own + margin:
            found.append(ref)
    return found


def length_mismatches(refs, text_a, text_b, ratio=2.0, min_words=8):
    """References whose two verses differ in length by more than `ratio`: one side holds a merged verse
    (RV1909's Job 39:30 carries KJV 39:30 and 40:1-5) or lost half of one."""
    found = []
    for ref in refs:
        a, b = len(text_a[ref].split()), len(text_b[ref].split())
        if max(a, b) >= min_words and max(a, b) > ratio * max(1, min(a, b)):
            found.append(ref)
    return found


def subscriptions(raw_kjv):
    """Last verses of Paul's letters: the KJV closes them with a subscription heading (where and by whom the
    letter was sent), which RV1909 prints inside the verse instead."""
    return [ref for ref, raw in raw_kjv.items() if re.search(r"<chapter eID[^>]*/>\s*(?:<[^>]*>\s*)*<title>", raw)]


def align(raw):
    """raw: {"kjv"|"web"|"rv": parse_imp(...)} -> (kept references in KJV order, cleaned texts, counts)."""
    refs = [ref for ref in raw["kjv"] if ref[2] > 0]  # verse 0: book and chapter introductions
    missing = {name: [r for r in refs if r not in raw[name]] for name in raw}
    assert not any(missing.values()), f"references missing from a module: { {k: v[:3] for k, v in missing.items()} }"
    text = {name: {r: clean_verse(raw[name][r]) for r in refs} for name in raw}
    empty = [r for r in refs if not all(text[name][r] for name in raw)]
    tags = {name: {r: strongs_numbers(raw[name][r]) for r in refs} for name in ("kjv", "rv")}
    shifted = shifted_verses(refs, tags["kjv"], tags["rv"])
    # The WEB's Strong's tags follow the Hebrew numbering even where its text does not (in its Psalm 3:1 the
    # title's numbers sit on the verse's words), so KJV-WEB compares English words: it finds the WEB's swapped
    # Matthew 23:13-14.
    words = {name: {r: frozenset(re.findall(r"\w+", text[name][r].lower())) for r in refs}
             for name in ("kjv", "web")}
    shifted_web = shifted_verses(refs, words["kjv"], words["web"])
    lengths = sorted(set(length_mismatches(refs, text["kjv"], text["rv"]))
                     | set(length_mismatches(refs, text["kjv"], text["web"])))
    # Dropped with both neighbours: where a verse boundary moved, the verses next to it are suspect too.
    bad = set(empty) | set(shifted) | set(shifted_web) | set(lengths)
    subscribed = subscriptions({r: raw["kjv"][r] for r in refs})
    drop = set(subscribed)
    for i, ref in enumerate(refs):
        if ref in bad:
            drop.update(refs[max(0, i - 1):i + 2])
    kept = [r for r in refs if r not in drop]
    counts = {
        "entries": {MODULES[name]: len(raw[name]) for name in raw},
        "verses_kjv_versification": len(refs),
        "non_empty_in_all_three": len(refs) - len(empty),
        "empty_somewhere": len(empty),
        "shifted_kjv_vs_rv": len(shifted),
        "shifted_chapters": dict(collections.Counter(f"{b} {c}" for b, c, _ in shifted).most_common()),
        "shifted_kjv_vs_web": len(shifted_web),
        "shifted_web_verses": [f"{b} {c}:{v}" for b, c, v in shifted_web],
        "length_mismatch": len(lengths),
        "subscriptions": len(subscribed),
        "kept": len(kept),
    }
    return kept, text, counts


# ------------------------------------------------------------------------------------------------------ split

def _key(text):
    """Texts that differ only in case or punctuation count as identical (parallel passages)."""
    return " ".join(re.findall(r"\w+", text.lower()))


def split_chapters(pairs_by_task, seed=1, test=1000, valid=500):
    """Held-out chapters shared by all tasks: shuffled with random.Random(seed), taken for test until every
    task has >= `test` verses there, then likewise for valid. A chapter split keeps parallel passages and
    repeated verses of one chapter on one side. Returns {(book, chapter): "test"|"valid"|"train"}."""
    chapters = list(dict.fromkeys(ref[:2] for pairs in pairs_by_task.values() for ref in pairs))  # book order
    size = {task: collections.Counter(ref[:2] for ref in pairs) for task, pairs in pairs_by_task.items()}
    random.Random(seed).shuffle(chapters)
    where, have = {}, {task: 0 for task in pairs_by_task}
    targets = [("test", test), ("valid", valid)]
    for chapter in chapters:
        if targets and min(have.values()) >= targets[0][1]:
            targets.pop(0)
            have = {task: 0 for task in pairs_by_task}
        where[chapter] = targets[0][0] if targets else "train"
        if targets:
            for task in have:
                have[task] += size[task][chapter]
    return where


def assign(pairs, where):
    """{ref: (src, tgt)} -> {"train"|"valid"|"test": [ref, ...]} in canonical order, train (and valid) without
    verses whose source or target text also occurs in a later-listed held-out split."""
    splits = {name: [r for r in pairs if where[r[:2]] == name] for name in ("test", "valid", "train")}
    seen_src, seen_tgt = set(), set()
    removed = {}
    for name in ("test", "valid", "train"):
        before = len(splits[name])
        splits[name] = [r for r in splits[name]
                        if _key(pairs[r][0]) not in seen_src and _key(pairs[r][1]) not in seen_tgt]
        removed[name] = before - len(splits[name])
        if name != "train":
            seen_src.update(_key(pairs[r][0]) for r in splits[name])
            seen_tgt.update(_key(pairs[r][1]) for r in splits[name])
    return splits, removed


# --------------------------------------------------------------------------------------------------------- CLI

def cmd_align(args):
    imp, out = Path(args.imp_dir), Path(args.out_dir)
    raw = {name: parse_imp((imp / f"{name}.imp").read_text(encoding="utf-8")) for name in MODULES}
    kept, text, counts = align(raw)
    pairs = {}
    for task, (src, tgt) in TASKS.items():
        pairs[task] = {r: (text[src][r], text[tgt][r]) for r in kept
                       if len(text[src][r].split()) <= args.max_words and len(text[tgt][r].split()) <= args.max_words}
        counts[f"pairs_{task}_max{args.max_words}"] = len(pairs[task])
    where = split_chapters(pairs, seed=args.seed)
    counts["held_out_chapters"] = {s: sum(1 for v in where.values() if v == s) for s in ("test", "valid")}
    for task, task_pairs in pairs.items():
        splits, removed = assign(task_pairs, where)
        counts[f"split_{task}"] = {s: len(v) for s, v in splits.items()}
        counts[f"duplicates_dropped_{task}"] = removed
        folder = out / task
        folder.mkdir(parents=True, exist_ok=True)
        for name, refs in splits.items():
            (folder / f"{name}.ids").write_text("".join(f"{b} {c}:{v}\n" for b, c, v in refs), encoding="utf-8")
            for side, idx in (("src", 0), ("tgt", 1)):
                (folder / f"{name}.{side}").write_text("".join(task_pairs[r][idx] + "\n" for r in refs),
                                                       encoding="utf-8")
    (out / "counts.json").write_text(json.dumps(counts, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    say = lambda msg: print(f"[bible] {msg}")  # noqa: E731
    say("entries: " + ", ".join(f"{k} {v}" for k, v in counts["entries"].items()))
    say(f"{counts['verses_kjv_versification']} KJV references, {counts['non_empty_in_all_three']} non-empty in all "
        f"three; dropped with neighbours: {counts['shifted_kjv_vs_rv']} shifted (RV1909 vs KJV Strong's), "
        f"{counts['shifted_kjv_vs_web']} shifted (WEB vs KJV words), "
        f"{counts['empty_somewhere']} empty, {counts['length_mismatch']} length mismatches; "
        f"{counts['subscriptions']} subscriptions; {counts['kept']} kept")
    say("shifted: " + ", ".join(f"{k} ({v})" for k, v in counts["shifted_chapters"].items()))
    for task in TASKS:
        s, d = counts[f"split_{task}"], counts[f"duplicates_dropped_{task}"]
        say(f"{task}: {len(pairs[task])} pairs <= {args.max_words} words; train {s['train']} / valid {s['valid']} / "
            f"test {s['test']} (dropped as duplicates of held-out text: train {d['train']}, valid {d['valid']})")


def cmd_tokenize(args):
    from sacremoses import MosesPunctNormalizer, MosesTokenizer
    normalizer, tokenizer = MosesPunctNormalizer(args.lang), MosesTokenizer(args.lang)
    for line in sys.stdin:
        # escape=False: fairseq needs no XML entities, and they would only lengthen BPE sequences.
        print(tokenizer.tokenize(normalizer.normalize(line.strip()), escape=False, return_str=True).lower())


def cmd_detokenize(args):
    from sacremoses import MosesDetokenizer
    detokenizer = MosesDetokenizer(args.lang)
    for line in sys.stdin:
        print(detokenizer.detokenize(line.split()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("align", help="clean, align and split the three exports")
    p.add_argument("imp_dir", help="folder with kjv.imp, web.imp, rv.imp (mod2imp output)")
    p.add_argument("out_dir")
    p.add_argument("--max-words", type=int, default=40, help="keep pairs with both sides <= this many words")
    p.add_argument("--seed", type=int, default=1, help="chapter shuffle seed")
    p.set_defaults(run=cmd_align)
    p = sub.add_parser("tokenize", help="Moses-tokenise and lower-case stdin")
    p.add_argument("lang")
    p.set_defaults(run=cmd_tokenize)
    p = sub.add_parser("detokenize", help="Moses-detokenise stdin (model output after --remove-bpe)")
    p.add_argument("lang")
    p.set_defaults(run=cmd_detokenize)
    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
