#!/usr/bin/env python3
"""Moses-normalise, tokenise and lower-case stdin to stdout: tokenize_lc.py LANG < raw > tok"""
import sys

from sacremoses import MosesPunctNormalizer, MosesTokenizer

lang = sys.argv[1]
normalizer, tokenizer = MosesPunctNormalizer(lang), MosesTokenizer(lang)
# The dictionary's placeholders (etw. = something, jdn. = somebody, ...) keep their dot, as "z.B." does.
tokenizer.NONBREAKING_PREFIXES += {"de": ["etw", "jd", "jdm", "jdn", "jds", "jmd"], "en": ["sb", "sth"]}.get(lang, [])
for line in sys.stdin:
    # escape=False: keep ' and & as they are; fairseq needs no XML entities and they would only inflate BPE.
    print(tokenizer.tokenize(normalizer.normalize(line.strip()), escape=False, return_str=True).lower())
