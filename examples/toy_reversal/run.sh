#!/usr/bin/env bash
# Train a small absorbing-diffusion model (T = 50) on generated data with fairseq-train, search a 4-step
# schedule on 20 validation sentences with fairseq-tp-search, and the smallest N of 2, 3, 4 that keeps 99 %
# of the all-steps BLEU (the front over N), then decode the test set with fairseq-generate under all 50 steps,
# uniform 4 steps, the searched 4 steps and the front's choice, printing sacreBLEU and sentences/s.
# Usage: [TRAIN_SEED=1] [OMP_NUM_THREADS=1] run.sh [WORK_DIR]   (CPU; 2-3 minutes, ~100 s of it CPU time)
#
# The checkpoint folder is WORK_DIR/ckpt-<hash of the data generator, the training options and the seed>:
# a finished model of the same recipe is reused (and said so); any other (or unfinished) one is not.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-$here/work}
seed=${TRAIN_SEED:-1}
plugin=$(python -c 'import fairseq_tp, os; print(os.path.dirname(fairseq_tp.__file__))')
# One thread by default: this 64-dim model trains no faster on two (measured), and an OpenMP team of two
# slows down ~15x when another process holds one of the cores. The results do not depend on it.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
started=$(now)

# The recipe. Learned positions, pre-norm, no dropout and no label smoothing (RDM's smoothing term is
# weighted to pull towards uniform at high noise), the length predicted as an offset from the source length
# (here always 0), and the learning rate decayed linearly to 0 at the last update, so training ends settled
# rather than wherever a loss spike left it. It converges (100 test BLEU) by ~1000 updates for training
# seeds 1-3; see the README's demo section for the measurements.
train_args=(
  --arch diffusion_transformer_iwslt --encoder-layers 2 --decoder-layers 2 --encoder-embed-dim 64
  --decoder-embed-dim 64 --encoder-ffn-embed-dim 128 --decoder-ffn-embed-dim 128 --encoder-attention-heads 2
  --decoder-attention-heads 2 --share-all-embeddings --encoder-learned-pos --decoder-learned-pos
  --encoder-normalize-before --decoder-normalize-before --apply-bert-init --pred-length-offset
  --diffusion-type absorbing --num-diffusion-timesteps 50 --label-smoothing 0
  --optimizer adam --adam-betas '(0.9,0.98)' --lr 0.002 --lr-scheduler polynomial_decay --warmup-updates 300
  --total-num-update 1200 --end-learning-rate 0 --max-update 1200 --dropout 0 --weight-decay 0.01
  --max-tokens 2048 --seed "$seed"
)
recipe=$( (cat "$here/make_data.py"; printf '%s\n' "${train_args[@]}") | sha256sum | cut -c1-12)
ckpt=$work/ckpt-$recipe

echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1) ($(nproc --all) cores), OMP_NUM_THREADS=$OMP_NUM_THREADS"
echo "recipe: $recipe (TRAIN_SEED=$seed), checkpoints in $ckpt"

t0=$(now)
mkdir -p "$work"
rm -rf "$work/raw" "$work/bin"  # regenerated every run (seeded, so identical; fairseq-preprocess will not overwrite)
python "$here/make_data.py" "$work/raw"
fairseq-preprocess --source-lang src --target-lang tgt --trainpref "$work/raw/train" --validpref "$work/raw/valid" \
    --testpref "$work/raw/test" --joined-dictionary --destdir "$work/bin" --workers 1 2>&1 | tail -1
t_data=$(secs "$t0" "$(now)")

for other in "$work"/ckpt "$work"/ckpt-*; do
  if [ -d "$other" ] && [ "$other" != "$ckpt" ]; then echo "note: ignoring $other (another recipe or seed)"; fi
done
t0=$(now)
if [ -f "$ckpt/done" ] && [ -f "$ckpt/checkpoint_last.pt" ]; then
  echo "reusing the finished model $ckpt/checkpoint_last.pt (same recipe and seed)"
  train_note=" (reused)"
else
  rm -rf "$ckpt"  # an unfinished run: start over rather than resume into a different model
  mkdir -p "$ckpt"
  fairseq-train "$work/bin" --user-dir "$plugin" --task diffusion_translation --criterion diffusion_loss \
      "${train_args[@]}" --save-dir "$ckpt" --no-epoch-checkpoints --save-interval 1000 --cpu \
      --log-interval 100 --no-progress-bar --num-workers 0 > "$ckpt/train.log" 2>&1 \
      || { tail -20 "$ckpt/train.log"; exit 1; }
  grep -E "train \| epoch [0-9]+ \| loss" "$ckpt/train.log" | tail -1 \
      | grep -oE "epoch [0-9]+ \| loss [0-9.]+ \| nll_loss [0-9.]+ \| word_ins [0-9.]+ \| length [0-9.]+" || true
  grep -oE "done training in .*" "$ckpt/train.log" || true
  touch "$ckpt/done"
  train_note=""
fi
t_train=$(secs "$t0" "$(now)")

t0=$(now)
decoding=(--argmax-decoding --decoding-strategy reparam-uncond-deterministic-cosine)
rm -f "$work"/schedule.json "$work"/schedule.trials.jsonl "$work"/front.json "$work"/front.trials.*
fairseq-tp-search "$work/bin" --path "$ckpt/checkpoint_last.pt" --steps 4 --shots 20 --budget 30 --cpu \
    --seed 1 --batch-size 100 "${decoding[@]}" --output "$work/schedule.json" --plot "$work/search.png" \
    --no-progress-bar 2>"$work/search.log"
# How many steps are enough? The smallest N whose searched schedule keeps 99 % of the all-steps BLEU.
fairseq-tp-search "$work/bin" --path "$ckpt/checkpoint_last.pt" --steps 2,3,4 --target 0.99 --shots 20 \
    --budget 30 --cpu --seed 1 --batch-size 100 "${decoding[@]}" --output "$work/front.json" \
    --front-plot "$work/front.png" --no-progress-bar 2>"$work/front.log" | grep -E "front over N|^  N = |no N reached"
t_search=$(secs "$t0" "$(now)")

t0=$(now)
printf '\n| schedule | timesteps | decoder passes | test sacreBLEU | sentences/s |\n|---|---|---|---|---|\n'
front_steps=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['steps'])" "$work/front.json")
for schedule in uniform:50 uniform:4 "$work/schedule.json" "$work/front.json"; do
  name=$schedule; [ "$schedule" = "$work/schedule.json" ] && name="searched:4"
  [ "$schedule" = "$work/front.json" ] && name="front:$front_steps"
  log="$work/generate.${name/:/}.log"
  fairseq-generate "$work/bin" --user-dir "$plugin" --task diffusion_translation --path "$ckpt/checkpoint_last.pt" \
      --gen-subset test --cpu --seed 1 --batch-size 100 --tp-schedule "$schedule" "${decoding[@]}" \
      --scoring sacrebleu > "$log" 2>&1
  bleu=$(grep -oP "BLEU = \K[0-9.]+" "$log" | tail -1)
  speed=$(grep -oP "\(\K[0-9.]+(?= sentences/s)" "$log" | tail -1)
  timesteps=$(grep -oP "passes at timesteps \K[0-9,]+" "$log" | head -1)
  printf '| %s | %s | %s | %s | %s |\n' "$name" "$timesteps" "${name#*:}" "$bleu" "$speed"
done
t_decode=$(secs "$t0" "$(now)")
echo
echo "wall seconds: data $t_data, train $t_train$train_note, searches $t_search, decode (4 runs) $t_decode," \
     "total $(secs "$started" "$(now)")"
