#!/usr/bin/env bash
# Train the Bible benchmark's models (prepare.sh first) on CPU: absorbing and reparameterised multinomial
# diffusion (T = 50) and continuous diffusion (DiffuSeq, T = 2000) with --task diffusion_translation, and
# fairseq's autoregressive transformer of the same size. Recipe: the probe in ../shared/fixtures/bible-kjv-web
# (3+3 layers, 128-dim, pre-norm, sinusoidal positions, no label smoothing for diffusion, lr 0.002).
# Usage: train.sh [WORK]   (default ${FAIRSEQ_TP_BIBLE:-$HOME/.cache/fairseq-tp/bible})
# Environment: TASKS="kjv-web rv-web" (default kjv-web), MODELS="absorbing transformer" (default the first four;
#   `multinomial`, vanilla multinomial diffusion, only when named), MAX_UPDATE=N (default 8000 for every model),
#   DATA=raw|distilled (default raw; distilled trains on WORK/TASK/distilled/bin, made by distill.py, into
#   WORK/ckpt/TASK-MODEL-distilled). Diffusion models log valid BLEU at every save, i.e. every 250 updates
#   (fairseq's --eval-bleu: uniform:10, argmax, default strategy, sacreBLEU of the tokenised text). Checkpoints and the appended log: WORK/ckpt/TASK-MODEL/
#   {checkpoint_last.pt,checkpoint_best.pt,train.log}. An interrupted run resumes from checkpoint_last.pt (saved
#   every 250 updates); a finished one records its update count in `done` and is skipped unless MAX_UPDATE is
#   raised above it, which resumes it.
set -euo pipefail
work=${1:-${FAIRSEQ_TP_BIBLE:-$HOME/.cache/fairseq-tp/bible}}
plugin=$(python -c 'import fairseq_tp, os; print(os.path.dirname(fairseq_tp.__file__))')
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
say() { echo "[bible] $*"; }

size=(--encoder-layers 3 --decoder-layers 3 --encoder-embed-dim 128 --decoder-embed-dim 128
      --encoder-ffn-embed-dim 512 --decoder-ffn-embed-dim 512 --encoder-attention-heads 4 --decoder-attention-heads 4)
common=(--share-all-embeddings --dropout 0.1 --weight-decay 0.01 --optimizer adam --adam-betas '(0.9,0.98)'
        --lr 0.002 --lr-scheduler inverse_sqrt --warmup-updates 300 --warmup-init-lr 1e-07 --max-tokens 4096 --cpu
        --seed 1 --save-interval-updates 250 --keep-interval-updates 1 --no-epoch-checkpoints
        --log-interval 50 --no-progress-bar --num-workers 0 "${size[@]}")
declare -A updates=([absorbing]=8000 [reparam-multinomial]=8000 [multinomial]=8000 [continuous]=8000 [transformer]=8000)
data=${DATA:-raw}
case $data in raw) suffix= ;; distilled) suffix=-distilled ;; *) echo "[bible] error: DATA must be raw or distilled, got '$data'" >&2; exit 1 ;; esac

train() {  # task, model, then fairseq-train options
  local task=$1 name=$2; shift 2
  case " ${MODELS:-absorbing reparam-multinomial continuous transformer} " in *" $name "*) ;; *) return 0 ;; esac
  local bin=$work/$task/bin dir=$work/ckpt/$task-$name$suffix cap=${MAX_UPDATE:-${updates[$name]}}
  [ "$data" = distilled ] && bin=$work/$task/distilled/bin
  [ -f "$bin/dict.src.txt" ] || { echo "[bible] error: $bin has no data; run prepare.sh (and distill.py for DATA=distilled) first" >&2; exit 1; }
  if [ -f "$dir/done" ] && [ "$(cat "$dir/done")" -ge "$cap" ]; then
    say "$task-$name$suffix: already trained to $(cat "$dir/done") updates"; return 0
  fi
  mkdir -p "$dir"
  say "training $task-$name$suffix to $cap updates (log: $dir/train.log)"  # resumes from checkpoint_last.pt if present
  local start=$SECONDS
  fairseq-train "$bin" "${common[@]}" --save-dir "$dir" --max-update "$cap" "$@" >> "$dir/train.log" 2>&1 \
    || { tail -20 "$dir/train.log" >&2; echo "[bible] error: fairseq-train failed for $task-$name$suffix" >&2; exit 1; }
  echo "$cap" > "$dir/done"
  local valid
  valid=$(grep -E "\| valid on 'valid' subset" "$dir/train.log" | tail -1 | grep -oE "\| loss [0-9.]+" || true)
  say "$task-$name$suffix: $cap updates, $((SECONDS - start)) s this run, last valid ${valid#| }"
}

diffusion=(--user-dir "$plugin" --task diffusion_translation --criterion diffusion_loss --arch diffusion_transformer
           --label-smoothing 0 --encoder-normalize-before --decoder-normalize-before
           --eval-bleu --eval-bleu-remove-bpe --eval-tokenized-bleu
           --eval-bleu-args '{"iter_decode_max_iter": 10, "iter_decode_force_max_iter": true}'
           --argmax-decoding --decoding-strategy default)
for task in ${TASKS:-kjv-web}; do
  train "$task" absorbing "${diffusion[@]}" --diffusion-type absorbing --num-diffusion-timesteps 50
  train "$task" reparam-multinomial "${diffusion[@]}" --diffusion-type reparam-multinomial --not-diffusing-special-sym \
      --reweighting-type linear --num-diffusion-timesteps 50
  train "$task" multinomial "${diffusion[@]}" --diffusion-type multinomial --not-diffusing-special-sym \
      --num-diffusion-timesteps 50
  train "$task" continuous "${diffusion[@]}" --diffusion-type continuous --num-diffusion-timesteps 2000
  # --user-dir only for its checkpoint allow-list: resuming needs it on torch >= 2.6 (fairseq alone cannot load).
  train "$task" transformer --user-dir "$plugin" --task translation --arch transformer \
      --criterion label_smoothed_cross_entropy --label-smoothing 0.1
done
