#!/usr/bin/env bash
# Train a small absorbing-diffusion model (T = 50) on generated data with fairseq-train, search a 4-step
# schedule on 20 validation sentences with fairseq-tp-search, then decode the test set with fairseq-generate
# under all 50 steps, uniform 4 steps and the searched 4 steps, printing sacreBLEU and sentences/s.
# Usage: run.sh [WORK_DIR]   (CPU; about 3 minutes on 2 cores)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-$here/work}
plugin=$(python -c 'import fairseq_tp, os; print(os.path.dirname(fairseq_tp.__file__))')
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$work"
python "$here/make_data.py" "$work/raw"
fairseq-preprocess --source-lang src --target-lang tgt --trainpref "$work/raw/train" --validpref "$work/raw/valid" \
    --testpref "$work/raw/test" --joined-dictionary --destdir "$work/bin" --workers 1 2>&1 | tail -1
if [ ! -f "$work/ckpt/checkpoint_last.pt" ]; then
  fairseq-train "$work/bin" --user-dir "$plugin" --task diffusion_translation --criterion diffusion_loss \
      --arch diffusion_transformer_iwslt --encoder-layers 2 --decoder-layers 2 --encoder-embed-dim 64 \
      --decoder-embed-dim 64 --encoder-ffn-embed-dim 128 --decoder-ffn-embed-dim 128 --encoder-attention-heads 2 \
      --decoder-attention-heads 2 --share-all-embeddings --encoder-learned-pos --decoder-learned-pos \
      --apply-bert-init --diffusion-type absorbing --num-diffusion-timesteps 50 --label-smoothing 0.1 \
      --optimizer adam --adam-betas '(0.9,0.98)' --lr 0.002 --lr-scheduler inverse_sqrt --warmup-updates 300 \
      --warmup-init-lr 1e-07 --dropout 0.1 --weight-decay 0.01 --max-tokens 2048 --max-update 700 \
      --save-dir "$work/ckpt" --no-epoch-checkpoints --cpu --seed 1 --log-interval 100 --no-progress-bar --num-workers 0 \
      2>&1 | grep -E "done training|epoch 0[0-9][0-9] \| loss" | tail -3
fi
decoding=(--argmax-decoding --decoding-strategy reparam-uncond-deterministic-cosine)
rm -f "$work/schedule.json" "$work/schedule.trials.jsonl"
fairseq-tp-search "$work/bin" --path "$work/ckpt/checkpoint_last.pt" --steps 4 --shots 20 --budget 30 --cpu \
    --seed 1 --batch-size 100 "${decoding[@]}" --output "$work/schedule.json" --plot "$work/search.png" \
    --no-progress-bar 2>"$work/search.log"
printf '\n| schedule | timesteps | decoder passes | test sacreBLEU | sentences/s |\n|---|---|---|---|---|\n'
for schedule in uniform:50 uniform:4 "$work/schedule.json"; do
  name=$schedule; [ "$schedule" = "$work/schedule.json" ] && name="searched:4"
  log="$work/generate.${name/:/}.log"
  fairseq-generate "$work/bin" --user-dir "$plugin" --task diffusion_translation --path "$work/ckpt/checkpoint_last.pt" \
      --gen-subset test --cpu --seed 1 --batch-size 100 --tp-schedule "$schedule" "${decoding[@]}" \
      --scoring sacrebleu > "$log" 2>&1
  bleu=$(grep -oP "BLEU = \K[0-9.]+" "$log" | tail -1)
  speed=$(grep -oP "\(\K[0-9.]+(?= sentences/s)" "$log" | tail -1)
  timesteps=$(grep -oP "passes at timesteps \K[0-9,]+" "$log" | head -1)
  printf '| %s | %s | %s | %s | %s |\n' "$name" "$timesteps" "${name#*:}" "$bleu" "$speed"
done
