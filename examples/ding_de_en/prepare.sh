#!/usr/bin/env bash
# Build a German->English corpus from the Ding dictionary (Debian package trans-de-en, GPL), tokenised with Moses,
# lower-cased, joint BPE (8k merges), binarised for fairseq. Nothing downloaded here is committed.
# Usage: prepare.sh [WORK_DIR]   (default examples/ding_de_en/work; about 1 minute on 2 CPU cores)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mkdir -p "${1:-$here/work}" && cd "${1:-$here/work}" && pwd)
merges=8000
say() { echo "[ding_de_en] $*"; }

# 1. The dictionary file, from the .deb (apt-get download needs no root and installs nothing).
ding=$work/deb/usr/share/trans/de-en
if [ ! -f "$ding" ]; then
  say "downloading trans-de-en with apt-get"
  mkdir -p "$work/deb"
  (cd "$work/deb" && apt-get download trans-de-en >/dev/null 2>&1) \
    || { echo "error: 'apt-get download trans-de-en' failed (needs apt, a Debian source list, network)" >&2; exit 1; }
  dpkg-deb -x "$work"/deb/trans-de-en_*.deb "$work/deb"
fi
say "dictionary: $(wc -l < "$ding") lines"

# 2. Cleaned pairs and the held-out split (fixed seed in extract_pairs.py).
say "extracting pairs -> $work/raw"
python "$here/extract_pairs.py" "$ding" "$work/raw"
mkdir -p "$work/text"
for split in valid test; do  # plain references for scoring detokenised output
  for lang in de en; do cp "$work/raw/$split.$lang" "$work/text/$split.ref.$lang"; done
done

# 3. Moses tokenisation + lower-casing.
say "tokenising"
for split in train valid test; do
  for lang in de en; do
    python "$here/tokenize_lc.py" $lang < "$work/raw/$split.$lang" > "$work/text/$split.tok.$lang"
  done
done

# 4. Joint BPE learnt on train only. The vocabulary threshold keeps subwords that one language barely uses from
#    being emitted on that side (subword-nmt's joint recipe); its usual 50 is meant for large corpora and here
#    would halve the dictionary (4.3k types) and lengthen sentences by 16%, so 10.
say "learning joint BPE ($merges merges)"
TQDM_DISABLE=1 subword-nmt learn-joint-bpe-and-vocab -s $merges \
    --input "$work/text/train.tok.de" "$work/text/train.tok.en" -o "$work/text/bpe.codes" \
    --write-vocabulary "$work/text/bpe.vocab.de" "$work/text/bpe.vocab.en"
say "applying BPE"
for split in train valid test; do
  for lang in de en; do
    subword-nmt apply-bpe -c "$work/text/bpe.codes" --vocabulary "$work/text/bpe.vocab.$lang" \
        --vocabulary-threshold 10 < "$work/text/$split.tok.$lang" > "$work/text/$split.bpe.$lang"
  done
done

# 5. fairseq binaries with one dictionary shared by both languages.
say "binarising -> $work/bin"
rm -rf "$work/bin"  # fairseq-preprocess refuses to overwrite an existing dictionary
fairseq-preprocess --source-lang de --target-lang en --trainpref "$work/text/train.bpe" \
    --validpref "$work/text/valid.bpe" --testpref "$work/text/test.bpe" --joined-dictionary --workers 1 \
    --destdir "$work/bin" > "$work/preprocess.log" 2>&1 || { tail -5 "$work/preprocess.log" >&2; exit 1; }
grep -oE "\[(de|en)\] \S+: [0-9]+ sents, [0-9]+ tokens" "$work/preprocess.log" | sed "s|$work/text/||"
say "done: $work/bin (joint dictionary: $(wc -l < "$work/bin/dict.de.txt") types + 4 specials)"
