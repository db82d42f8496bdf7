#!/usr/bin/env bash
# Build two verse-aligned Bible tasks from Debian's public-domain SWORD modules: KJV -> WEB (archaic -> modern
# English paraphrase) and RV1909 -> WEB (Spanish -> English). Nothing downloaded here is committed.
# Usage: prepare.sh [WORK]   (default ${FAIRSEQ_TP_BIBLE:-$HOME/.cache/fairseq-tp/bible}; needs the project's
#   virtualenv active (sacremoses, subword-nmt, fairseq, sacrebleu), apt-get, and root once to install
#   libsword-utils for mod2imp; about 3 minutes on 2 CPU cores, see README.md)
# Results: WORK/{kjv-web,rv-web}/bin (fairseq data-bin), WORK/TASK/text (tokenised, BPE, and the detokenised
#   valid/test references *.ref.{src,tgt} for sacreBLEU), WORK/raw/counts.json. Reruns give identical files.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-${FAIRSEQ_TP_BIBLE:-$HOME/.cache/fairseq-tp/bible}}
mkdir -p "$work" && work=$(cd "$work" && pwd)
merges=6000
say() { echo "[bible] $*"; }
die() { echo "[bible] error: $*" >&2; exit 1; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} TQDM_DISABLE=1 PYTHONHASHSEED=0
python -c 'import sacremoses, subword_nmt, fairseq, sacrebleu' 2>/dev/null \
  || die "python lacks sacremoses/subword-nmt/fairseq/sacrebleu: activate the project's .venv first"

# 1-3. Module exports, once: the .debs (apt-get download installs nothing), unpacked, exported with mod2imp.
declare -A module=([kjv]=engKJV2006eb [web]=engWEB2015eb [rv]=spaRV1909eb)
declare -A package=([kjv]=sword-text-kjv [web]=sword-text-web [rv]=sword-text-sparv)
if [ -s "$work/imp/kjv.imp" ] && [ -s "$work/imp/web.imp" ] && [ -s "$work/imp/rv.imp" ]; then
  say "module exports already in $work/imp (delete it to download again)"
else
  if ! command -v mod2imp >/dev/null; then
    say "installing libsword-utils (mod2imp) with apt-get"
    { apt-get install -y libsword-utils || { apt-get update && apt-get install -y libsword-utils; }; } \
        > "$work/apt-install.log" 2>&1 \
      || die "'apt-get install -y libsword-utils' failed (needs root and an apt source list; see $work/apt-install.log)"
  fi
  mkdir -p "$work/deb"
  for name in kjv web rv; do
    pkg=${package[$name]}
    if ! ls "$work/deb/${pkg}"_*.deb >/dev/null 2>&1; then
      say "downloading $pkg"
      (cd "$work/deb" && { apt-get download "$pkg" || { apt-get update && apt-get download "$pkg"; }; }) \
          > "$work/apt-download.log" 2>&1 \
        || die "'apt-get download $pkg' failed (needs network and an apt source list; see $work/apt-download.log)"
    fi
  done
  rm -rf "$work/sword" "$work/imp.tmp" && mkdir -p "$work/imp.tmp"
  for deb in "$work"/deb/*.deb; do dpkg-deb -x "$deb" "$work/sword"; done
  for name in kjv web rv; do
    SWORD_PATH=$work/sword/usr/share/sword mod2imp "${module[$name]}" > "$work/imp.tmp/$name.imp" \
      || die "mod2imp ${module[$name]} failed"
    [ -s "$work/imp.tmp/$name.imp" ] || die "mod2imp ${module[$name]} wrote nothing (module not in $work/sword?)"
  done
  mv "$work/imp.tmp" "$work/imp"  # only complete exports count as done
  say "exported $(for n in kjv web rv; do printf '%s ' "${module[$n]}"; done)with mod2imp -> $work/imp"
fi

# 4. Clean, align by reference, drop misaligned verses, split by chapter (prints its own counts).
rm -rf "$work/raw"
python "$here/bible_text.py" align "$work/imp" "$work/raw"

for task in kjv-web rv-web; do
  src_lang=en; [ $task = rv-web ] && src_lang=es
  raw=$work/raw/$task text=$work/$task/text bin=$work/$task/bin
  rm -rf "$text" "$bin" && mkdir -p "$text"
  # 5. Detokenised references for sacreBLEU, then Moses tokenisation + lower-casing.
  for split in valid test; do
    for side in src tgt; do cp "$raw/$split.$side" "$text/$split.ref.$side"; done
    cp "$raw/$split.ids" "$text/$split.ids"
  done
  for split in train valid test; do
    python "$here/bible_text.py" tokenize $src_lang < "$raw/$split.src" > "$text/$split.tok.src"
    python "$here/bible_text.py" tokenize en < "$raw/$split.tgt" > "$text/$split.tok.tgt"
  done
  # 6. Joint BPE learnt on train source + target only, applied to every split.
  cat "$text/train.tok.src" "$text/train.tok.tgt" | subword-nmt learn-bpe -s $merges > "$text/bpe.codes"
  for split in train valid test; do
    for side in src tgt; do
      subword-nmt apply-bpe -c "$text/bpe.codes" < "$text/$split.tok.$side" > "$text/$split.bpe.$side"
    done
  done
  # 7. fairseq binaries with one dictionary for both sides.
  fairseq-preprocess --source-lang src --target-lang tgt --trainpref "$text/train.bpe" --validpref "$text/valid.bpe" \
      --testpref "$text/test.bpe" --joined-dictionary --workers 1 --destdir "$bin" > "$work/$task/preprocess.log" 2>&1 \
    || { tail -5 "$work/$task/preprocess.log" >&2; die "fairseq-preprocess failed for $task"; }
  sizes=$(grep -oE "\[(src|tgt)\] \S+: [0-9]+ sents, [0-9]+ tokens" "$work/$task/preprocess.log" \
          | sed -E "s|$text/||; s|\.bpe\.(src\|tgt)||" | paste -sd ';' | sed 's/;/; /g')
  say "$task: $bin, dictionary $(wc -l < "$bin/dict.src.txt") types + 4 specials; $sizes"
  # 8. The floor: sacreBLEU (13a, cased, detokenised) of copying the source.
  copy=$(sacrebleu "$text/test.ref.tgt" -i "$text/test.ref.src" -tok 13a -b)
  say "$task: copying the source scores sacreBLEU $copy on test"
done
say "done: $work"
