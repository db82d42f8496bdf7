#!/usr/bin/env bash
# Train the benchmark's models on the Ding de-en data (prepare.sh first): absorbing and multinomial diffusion
# (T = 50) and continuous diffusion (DiffuSeq, T = 2000) with --task diffusion_translation, and fairseq's
# autoregressive transformer of the same size.
# Usage: train.sh [WORK_DIR] [cpu|gpu]
#   cpu (default): 3+3 layers, 128-dim, updates of <= 4,096 tokens, no label smoothing for the diffusion
#     models (see README.md for why, for the update counts and for wall times).
#   gpu: 6+6 layers, 512-dim (RDM's IWSLT size), 30,000 updates of <= 16,384 tokens, fp16, RDM's label
#     smoothing (0.1).
# Environment: MODELS="absorbing transformer" trains a subset; MAX_UPDATE=N overrides every model's update
# count. A model is done once fairseq-train finishes; an interrupted or shorter run resumes from
# checkpoint_last.pt (delete WORK_DIR/ckpt/NAME/done and raise MAX_UPDATE to train further).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-$here/work}
config=${2:-cpu}
plugin=$(python -c 'import fairseq_tp, os; print(os.path.dirname(fairseq_tp.__file__))')
[ -f "$work/bin/dict.de.txt" ] || { echo "error: $work/bin has no data; run prepare.sh first" >&2; exit 1; }

declare -A updates=()  # per model: --max-update overriding the config's
case $config in
  cpu)
    size=(--encoder-layers 3 --decoder-layers 3 --encoder-embed-dim 128 --decoder-embed-dim 128
          --encoder-ffn-embed-dim 512 --decoder-ffn-embed-dim 512 --encoder-attention-heads 4
          --decoder-attention-heads 4)
    schedule=(--max-tokens 4096 --max-update 1000 --lr 0.002 --warmup-updates 300 --cpu)
    # RDM weighs the smoothing term by T but the NLL by T/(t+1) (absorbing) or 1 - t/T (reparam): at high
    # noise the pull towards uniform wins, and a CPU-sized run learned to ignore the source (README.md).
    smoothing=0.0
    # Pre-norm layers: with post-norm at this learning rate the diffusion models' encoders collapsed to
    # a constant (predicted lengths uncorrelated with the source); RDM's post-norm recipe warms up 30k updates.
    diffusion_extra=(--encoder-normalize-before --decoder-normalize-before --save-interval-updates 200
                     --keep-interval-updates 1)
    # About an hour each with the three sharing 2 cores (OMP_NUM_THREADS=1 each): see README.md.
    updates=([absorbing]=2200 [reparam-multinomial]=1800 [continuous]=2000)
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} ;;
  gpu)
    size=(--encoder-layers 6 --decoder-layers 6 --encoder-embed-dim 512 --decoder-embed-dim 512
          --encoder-ffn-embed-dim 1024 --decoder-ffn-embed-dim 1024 --encoder-attention-heads 4
          --decoder-attention-heads 4)
    schedule=(--max-tokens 16384 --max-update 30000 --lr 0.0005 --warmup-updates 4000 --fp16)
    smoothing=0.1
    diffusion_extra=() ;;
  *) echo "error: unknown config '$config' (cpu or gpu)" >&2; exit 1 ;;
esac
common=("$work/bin" --share-all-embeddings --dropout 0.1 --weight-decay 0.01 --optimizer adam
        --adam-betas '(0.9,0.98)' --lr-scheduler inverse_sqrt --warmup-init-lr 1e-07 --seed 1
        --no-epoch-checkpoints --log-interval 100 --no-progress-bar --num-workers 0 "${size[@]}" "${schedule[@]}")

train() {  # name, then fairseq-train options
  local name=$1; shift
  case " ${MODELS:-absorbing reparam-multinomial continuous transformer} " in *" $name "*) ;; *) return ;; esac
  if [ -f "$work/ckpt/$name/done" ]; then echo "[ding_de_en] $name: already trained"; return; fi
  echo "[ding_de_en] training $name ($config config)"  # an interrupted run resumes from checkpoint_last.pt
  local start=$SECONDS
  local cap=${MAX_UPDATE:-${updates[$name]:-}}
  fairseq-train "${common[@]}" --save-dir "$work/ckpt/$name" "$@" ${cap:+--max-update $cap} \
      >> "$work/train.$name.log" 2>&1 \
    || { tail -20 "$work/train.$name.log" >&2; exit 1; }
  touch "$work/ckpt/$name/done"
  grep -E "\| valid on 'valid' subset" "$work/train.$name.log" | tail -1 | grep -oE "loss [0-9.]+" || true
  echo "[ding_de_en] $name: $((SECONDS - start)) s"
}

diffusion=(--user-dir "$plugin" --task diffusion_translation --criterion diffusion_loss --arch diffusion_transformer
           --encoder-learned-pos --decoder-learned-pos --apply-bert-init)
train absorbing "${diffusion[@]}" --diffusion-type absorbing --num-diffusion-timesteps 50 \
    --label-smoothing $smoothing "${diffusion_extra[@]}"
# RDM's reparameterised multinomial: its loss is a cross-entropy on the noisy positions, where vanilla
# multinomial's KL over the whole vocabulary made an update ~4x dearer on CPU.
train reparam-multinomial "${diffusion[@]}" --diffusion-type reparam-multinomial --num-diffusion-timesteps 50 \
    --not-diffusing-special-sym --reweighting-type linear --label-smoothing $smoothing "${diffusion_extra[@]}"
train continuous "${diffusion[@]}" --diffusion-type continuous --num-diffusion-timesteps 2000 "${diffusion_extra[@]}"
# --user-dir only for its checkpoint allow-list: resuming needs it on torch >= 2.6 (fairseq alone cannot load).
train transformer --user-dir "$plugin" --task translation --arch transformer --criterion label_smoothed_cross_entropy \
    --label-smoothing 0.1
