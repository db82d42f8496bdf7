#!/usr/bin/env bash
# The demo: two small diffusion models (T = 50) trained with fairseq-train on a generated word-reversal task,
# a schedule search for each with fairseq-tp-search, and the test set decoded under all 50 steps, uniform 4
# steps and the searched 4 steps.
#  - absorbing (20-word vocabulary): converges, so 4 steps already match 50; the search keeps uniform, and the
#    front over N finds the fewest passes that keep 99 % of the all-steps BLEU.
#  - vanilla multinomial (40-word vocabulary, RDM's recipe): 50 steps degrade and a searched 4-step schedule
#    beats uniform-4 (the Temporal Pruning paper's case); decoded as the paper did (`default` strategy,
#    argmax, noise replicates in the search), its test rows are means over noise seeds 1-3.
# Usage: [TRAIN_SEED=2] [OMP_NUM_THREADS=1] run.sh [WORK_DIR]   (CPU; ~4 minutes on 2 cores)
# Seed 2: the seed whose multinomial model learned on every CPU tried (seed 1's did not on an AMD EPYC; see
# docs/development.md).
#
# Checkpoint folders are WORK_DIR/ckpt-<model>-<hash of the data generator, the training options and the
# seed>: a finished model of the same recipe is reused (and said so); any other (or unfinished) one is not.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-$here/work}
seed=${TRAIN_SEED:-2}
plugin=$(python -c 'import fairseq_tp, os; print(os.path.dirname(fairseq_tp.__file__))')
# One thread by default: these 64-dim models train no faster on two (measured), and an OpenMP team of two
# slows down ~15x when another process holds one of the cores. The two models train side by side when
# each can have its own cores, one after the other otherwise.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
started=$(now)

# The absorbing recipe. Learned positions, pre-norm, no dropout and no label smoothing (RDM's smoothing term
# is weighted to pull towards uniform at high noise), the length predicted as an offset from the source
# length (here always 0), and the learning rate decayed linearly to 0 at the last update, so training ends
# settled rather than wherever a loss spike left it. It converges (100 test BLEU) by ~1000 updates for
# training seeds 1-3; see docs/development.md for the measurements.
small=(
  --arch diffusion_transformer_iwslt --encoder-layers 2 --decoder-layers 2 --encoder-embed-dim 64
  --decoder-embed-dim 64 --encoder-ffn-embed-dim 128 --decoder-ffn-embed-dim 128 --encoder-attention-heads 2
  --decoder-attention-heads 2 --share-all-embeddings --encoder-learned-pos --decoder-learned-pos --apply-bert-init
  --num-diffusion-timesteps 50 --label-smoothing 0 --optimizer adam --adam-betas '(0.9,0.98)' --weight-decay 0.01
  --max-update 1200 --max-tokens 2048 --seed "$seed"
)
absorbing_args=(
  "${small[@]}" --encoder-normalize-before --decoder-normalize-before --pred-length-offset
  --diffusion-type absorbing --lr 0.002 --lr-scheduler polynomial_decay --warmup-updates 300
  --total-num-update 1200 --end-learning-rate 0 --dropout 0
)
# The multinomial recipe is RDM's own (that of ../shared/fixtures/rdm-toy's multinomial.pt): post-norm,
# dropout 0.1, inverse-sqrt learning rate, EMA weights (decoded with --load-ema-weights). It needs a larger
# vocabulary than the absorbing task's to learn in 1,200 updates: uniform-4 test BLEU 3.8 with 20 words,
# 8.0 with 28, 41.6 with 40 (measured, valid, training seed 1).
multinomial_args=(
  "${small[@]}" --diffusion-type multinomial --not-diffusing-special-sym --dropout 0.1 --lr 0.002
  --lr-scheduler inverse_sqrt --warmup-updates 300 --warmup-init-lr 1e-07 --store-ema --ema-decay 0.99
)
declare -A words=([absorbing]=20 [multinomial]=40)

echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1) ($(nproc --all) cores), OMP_NUM_THREADS=$OMP_NUM_THREADS"

checkpoint_dir() {  # model, training options...
  local model=$1; shift
  local recipe
  recipe=$( (cat "$here/make_data.py"; echo "words ${words[$model]}"; printf '%s\n' "$@") | sha256sum | cut -c1-12)
  echo "$work/ckpt-$model-$recipe"
}
declare -A ckpt=([absorbing]=$(checkpoint_dir absorbing "${absorbing_args[@]}")
                 [multinomial]=$(checkpoint_dir multinomial "${multinomial_args[@]}"))
echo "recipes (TRAIN_SEED=$seed): ${ckpt[absorbing]}, ${ckpt[multinomial]}"

t0=$(now)
mkdir -p "$work"
for model in absorbing multinomial; do
  rm -rf "$work/$model/raw" "$work/$model/bin"  # regenerated every run (seeded, so identical)
  python "$here/make_data.py" "$work/$model/raw" --words "${words[$model]}"
  fairseq-preprocess --source-lang src --target-lang tgt --trainpref "$work/$model/raw/train" \
      --validpref "$work/$model/raw/valid" --testpref "$work/$model/raw/test" --joined-dictionary \
      --destdir "$work/$model/bin" --workers 1 > "$work/$model/preprocess.log" 2>&1 \
      || { cat "$work/$model/preprocess.log"; exit 1; }
done
t_data=$(secs "$t0" "$(now)")

for other in "$work"/ckpt*; do
  if [ -d "$other" ] && [ "$other" != "${ckpt[absorbing]}" ] && [ "$other" != "${ckpt[multinomial]}" ]; then
    echo "note: ignoring $other (another recipe or seed)"
  fi
done

train() {  # model, training options...
  local model=$1 dir=${ckpt[$1]}; shift
  if [ -f "$dir/done" ] && [ -f "$dir/checkpoint_last.pt" ]; then
    echo "$model: reusing the finished model $dir/checkpoint_last.pt (same recipe and seed)"; return 0
  fi
  rm -rf "$dir"  # an unfinished run: start over rather than resume into a different model
  mkdir -p "$dir"
  local t=$(now)
  fairseq-train "$work/$model/bin" --user-dir "$plugin" --task diffusion_translation --criterion diffusion_loss \
      "$@" --save-dir "$dir" --no-epoch-checkpoints --save-interval 1000 --cpu \
      --log-interval 100 --no-progress-bar --num-workers 0 > "$dir/train.log" 2>&1 \
      || { tail -20 "$dir/train.log"; echo "error: training $model failed (log: $dir/train.log)" >&2; return 1; }
  touch "$dir/done"
  echo "$model: trained in $(secs "$t" "$(now)") s, last $(grep -E "train \| epoch [0-9]+ \| loss" "$dir/train.log" \
      | tail -1 | grep -oE "loss [0-9.]+ \| nll_loss [0-9.]+" || true)"
}

# Runs "$@" for both models: side by side when there are cores for both, else one after the other.
for_both() {
  if [ $((2 * OMP_NUM_THREADS)) -le "$(env -u OMP_NUM_THREADS nproc)" ]; then  # nproc alone obeys OMP_NUM_THREADS
    local a m status=0
    "$@" absorbing & a=$!
    "$@" multinomial & m=$!
    wait "$a" || status=1
    wait "$m" || status=1
    return "$status"
  else
    "$@" absorbing && "$@" multinomial
  fi
}

t0=$(now)
train_one() { if [ "$1" = absorbing ]; then train absorbing "${absorbing_args[@]}"; else train multinomial "${multinomial_args[@]}"; fi; }
for_both train_one
t_train=$(secs "$t0" "$(now)")

absorbing_search_and_decode() {
  local dir=$work/absorbing bin=$work/absorbing/bin model=${ckpt[absorbing]}/checkpoint_last.pt
  local decoding=(--argmax-decoding --decoding-strategy reparam-uncond-deterministic-cosine)
  rm -f "$dir"/schedule.json "$dir"/schedule.trials.jsonl "$dir"/front.json "$dir"/front.trials.*
  fairseq-tp-search "$bin" --path "$model" --steps 4 --shots 20 --budget 30 --cpu --seed 1 --batch-size 100 \
      "${decoding[@]}" --output "$dir/schedule.json" --plot "$dir/search.png" --no-progress-bar > "$dir/search.out" \
      2> "$dir/search.log" || { tail -5 "$dir/search.log"; return 1; }
  # How many steps are enough? The smallest N whose searched schedule keeps 99 % of the all-steps BLEU.
  fairseq-tp-search "$bin" --path "$model" --steps 2,3,4 --target 0.99 --shots 20 --budget 30 --cpu --seed 1 \
      --batch-size 100 "${decoding[@]}" --output "$dir/front.json" --front-plot "$dir/front.png" --no-progress-bar \
      > "$dir/front.out" 2> "$dir/front.log" || { tail -5 "$dir/front.log"; return 1; }
  local front_steps
  front_steps=$(python -c "import json, sys; print(json.load(open(sys.argv[1]))['steps'])" "$dir/front.json")
  {
    grep -E "front over N|^  N = |no N reached" "$dir/front.out" || true
    printf '\n| schedule | timesteps | decoder passes | test sacreBLEU | sentences/s |\n|---|---|---|---|---|\n'
    for schedule in uniform:50 uniform:4 "$dir/schedule.json" "$dir/front.json"; do
      local name=$schedule
      [ "$schedule" = "$dir/schedule.json" ] && name="searched:4"
      [ "$schedule" = "$dir/front.json" ] && name="front:$front_steps"
      local log="$dir/generate.${name/:/}.log"
      fairseq-generate "$bin" --user-dir "$plugin" --task diffusion_translation --path "$model" \
          --gen-subset test --cpu --seed 1 --batch-size 100 --tp-schedule "$schedule" "${decoding[@]}" \
          --scoring sacrebleu > "$log" 2>&1 || { tail -5 "$log"; return 1; }
      local timesteps
      timesteps=$(grep -oP "passes at timesteps \K[0-9,]+" "$log" | head -1 | sed -E 's/^([0-9]+,[0-9]+),([0-9]+,){7,}/\1,…,/')
      printf '| %s | %s | %s | %s | %s |\n' "$name" "$timesteps" \
          "${name#*:}" "$(grep -oP "BLEU = \K[0-9.]+" "$log" | tail -1)" \
          "$(grep -oP "\(\K[0-9.]+(?= sentences/s)" "$log" | tail -1)"
    done
  } > "$dir/table.md"
}

multinomial_search_and_decode() {
  local dir=$work/multinomial bin=$work/multinomial/bin model=${ckpt[multinomial]}/checkpoint_last.pt
  local decoding=(--argmax-decoding --decoding-strategy default --load-ema-weights)
  rm -f "$dir"/schedule.json "$dir"/schedule.trials.jsonl
  fairseq-tp-search "$bin" --path "$model" --steps 4 --shots 20 --budget 30 --cpu --seed 1 --batch-size 100 \
      "${decoding[@]}" --output "$dir/schedule.json" --plot "$dir/search.png" --no-progress-bar > "$dir/search.out" \
      2> "$dir/search.log" || { tail -5 "$dir/search.log"; return 1; }
  {
    grep -E "^(uniform|searched) |<- written|chose|kept|wrote" "$dir/search.out" || true
    echo
    python "$here/test_table.py" --json "$dir/test.json" --seeds 1 2 3 --schedule uniform:50=uniform:50 \
        --schedule uniform:4=uniform:4 --schedule "searched:4=$dir/schedule.json" -- \
        "$bin" --path "$model" --cpu --batch-size 200 "${decoding[@]}" 2> "$dir/test.log" \
        || { tail -5 "$dir/test.log"; return 1; }
  } > "$dir/table.md"
}

t0=$(now)
search_and_decode() { "${1}_search_and_decode"; }
for_both search_and_decode
t_search=$(secs "$t0" "$(now)")

echo
echo "## absorbing (20 words): all 50 steps, uniform 4, searched 4 (20 shots, budget 30) and the front over N"
echo "decoding: --argmax-decoding --decoding-strategy reparam-uncond-deterministic-cosine (deterministic)"
cat "$work/absorbing/table.md"
echo
echo "## vanilla multinomial (40 words): all 50 steps, uniform 4, searched 4 (20 shots, budget 30)"
echo "decoding: --argmax-decoding --decoding-strategy default --load-ema-weights (random: test BLEU over noise seeds 1-3)"
cat "$work/multinomial/table.md"
echo
echo "wall seconds: data $t_data, training $t_train, searches and test decoding $t_search," \
     "total $(secs "$started" "$(now)")"
