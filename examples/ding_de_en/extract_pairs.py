#!/usr/bin/env python3
"""Turn the Ding German-English dictionary (Debian package trans-de-en) into parallel text.

Usage: extract_pairs.py DING_FILE OUT_DIR
Writes OUT_DIR/{train,valid,test}.{de,en}: one cleaned, untokenised, cased pair per line.

Line format: `de1 | de2 :: en1 | en2`. ` | ` sub-entries correspond positionally on both sides; inside a
sub-entry `;` separates synonyms, of which we keep the first on each side.
Valid/test are drawn from the sentence pairs only; train is the remaining sentences plus multi-word phrases.
"""
import os
import random
import re
import sys

SEED, N_VALID, N_TEST = 1, 500, 1000

# Annotations: {m} {pl} {vt} (genus/part of speech), [ugs.] [Br.] (register/region/field), <> (separable-particle
# slot), <Kanada> (keyword), (...) (explanations). Parentheses may nest, so they are removed innermost first.
BRACKETS = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]|<[^<>]*>")
PARENS = re.compile(r"\([^()]*\)")
XREF = re.compile(r"~\S+")  # "Kriegsentschädigung ~Reparationen": see-also link, not part of the entry
# `er/sie fährt`, `ist/war` -> first alternative (both sides alike, so the pair stays parallel). Acronyms such as
# `I/O` and numbers such as `1/2` are left alone and the pair is dropped below, as its slash has no clear scope.
SLASH_ALT = re.compile(r"\b[^\W\d_]+(?:/[^\W\d_]+)+\b")
SENT_END = re.compile(r"[.?!]$")
# Dictionary placeholders end in a dot but do not end a sentence ("to put sth.", "etw. abgeben").
ABBREV_END = re.compile(r"\b(sth|sb|etw|jdn|jdm|jds|jd|jmd|usw|etc|o\.ä|u\.a)\.$")


def clean(text):
    """Remove annotations and keep the first `;` variant; '' when nothing usable is left."""
    text = XREF.sub(" ", BRACKETS.sub(" ", text))
    while PARENS.search(text):
        text = PARENS.sub(" ", text)
    text = text.split(";")[0]
    text = text.replace("\u2019", "'").replace(".'s", "'s")  # "sb.'s clutches" -> "sb's clutches"
    text = SLASH_ALT.sub(lambda m: m[0] if m[0].isupper() else m[0].split("/")[0], text)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" ([.,?!:])", r"\1", text)  # "Keine Anzahlung (nötig)." left a space before the dot
    # Leftover markup, spaced alternatives ("Autostopp / Anhalter" has no clear scope) or ellipsis slots.
    if re.search(r"[(){}\[\]<>/]|\.\.\.|…", text):
        return ""
    return text


def entry_pairs(line):
    """Yield the (de, en) pairs of one dictionary line; nothing if its sub-entries do not line up."""
    if line.startswith("#") or " :: " not in line:
        return
    de_side, en_side = line.rstrip("\n").split(" :: ", 1)
    de_subs, en_subs = de_side.split(" | "), en_side.split(" | ")
    if len(de_subs) != len(en_subs):
        return
    for de, en in zip(de_subs, en_subs):
        de, en = clean(de), clean(en)
        if de and en and de != en:
            yield de, en


def is_sentence(de, en):
    """Both sides end like a sentence; the English one also starts with a capital (phrases are lower-case)."""
    return all(SENT_END.search(s) and not ABBREV_END.search(s) for s in (de, en)) and en[0].isupper()


def key(text):
    """Comparison key for dedup and leak checks: case, punctuation and spacing ignored."""
    return " ".join(re.findall(r"\w+", text.lower()))


def split_pairs(path):
    sentences, phrases, seen = [], [], set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            for de, en in entry_pairs(line):
                if (key(de), key(en)) in seen:
                    continue
                seen.add((key(de), key(en)))
                if is_sentence(de, en):
                    sentences.append((de, en))
                elif len(de.split()) >= 2 and len(en.split()) >= 2:  # single-word glosses are dropped
                    phrases.append((de, en))
    # Held-out sentences: one pair per German sentence, so a second translation cannot leak into train.
    by_source = {}
    for de, en in sentences:
        by_source.setdefault(key(de), (de, en))
    held = list(by_source.values())
    random.Random(SEED).shuffle(held)
    valid, test = held[:N_VALID], held[N_VALID:N_VALID + N_TEST]
    held_keys = {key(s) for pair in valid + test for s in pair}
    # Neither side of a held-out pair may occur in train (covers other translations of the same sentence).
    train = [(de, en) for de, en in sentences + phrases if key(de) not in held_keys and key(en) not in held_keys]
    return {"train": train, "valid": valid, "test": test}


def main(ding_file, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for split, pairs in split_pairs(ding_file).items():
        for side, lang in enumerate(("de", "en")):
            with open(os.path.join(out_dir, f"{split}.{lang}"), "w", encoding="utf-8") as f:
                f.writelines(pair[side] + "\n" for pair in pairs)
        print(f"  {split}: {len(pairs)} pairs, {sum(is_sentence(*p) for p in pairs)} of them sentences")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
