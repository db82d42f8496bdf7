"""RDM's own recipes run unchanged: experiments/mt_train.sh's fairseq-train line for ``-d iwslt`` plus each
README line's extra flags, then experiments/mt_generate.sh's fairseq-generate flags.  Only the data path,
--save-dir and --user-dir change; --max-update 3 and a tiny model are appended (argparse keeps the last)."""
import shlex

import pytest

from conftest import PLUGIN_DIR, fairseq_main

# mt_train.sh, DATASET=iwslt (DATA_SPECIFIC_ARGS, then SPECIFIC_ARGS without --user-dir), verbatim.
MT_TRAIN = """--ddp-backend=legacy_ddp --task diffusion_translation --criterion diffusion_loss
    --arch diffusion_transformer_iwslt --share-all-embeddings --optimizer adam --adam-betas '(0.9,0.98)'
    --lr 0.0005 --stop-min-lr '1e-09' --lr-scheduler inverse_sqrt --warmup-init-lr 1e-07 --label-smoothing 0.1
    --dropout 0.3 --weight-decay 0.01 --eval-bleu
    --eval-bleu-args '{"iter_decode_max_iter": 10, "iter_decode_force_max_iter": true, "temperature": 0.1}'
    --decoder-learned-pos --encoder-learned-pos --apply-bert-init --log-format 'simple' --log-interval 100
    --no-progress-bar --fixed-validation-seed 7 --save-interval-updates 10000 --keep-interval-updates 10
    --keep-last-epochs 2 --warmup-updates 30000 --max-update 300000 --max-tokens 4096 --update-freq 1
    --num-diffusion-timesteps 50 --diffusion-type"""
# RDM's README, "Training": the flags after -e True, per model.
README_EXTRA = {
    "absorbing": "--store-ema --label-smoothing 0.1",
    "multinomial": "--not-diffusing-special-sym --store-ema --label-smoothing 0.0",
    "reparam-absorbing": "--q-sample-mode coupled  --store-ema --label-smoothing 0.1 --reweighting-type linear",
    "reparam-multinomial": "--not-diffusing-special-sym --q-sample-mode coupled --store-ema --label-smoothing 0.1 "
                           "--reweighting-type linear",
}
# mt_generate.sh's fairseq-generate flags (DATASET=iwslt: reparam-cond-deterministic-cosine), one NUM_ITER.
MT_GENERATE = """--gen-subset test --task diffusion_translation --iter-decode-max-iter {iters} --iter-decode-eos-penalty 0
    --iter-decode-with-beam 5 --iter-decode-force-max-iter --retain-iter-history --argmax-decoding {strategy}
    --load-ema-weights --remove-bpe --print-step --batch-size 25"""
TINY = ("--max-update 3 --encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 32 --decoder-embed-dim 32 "
        "--encoder-ffn-embed-dim 64 --decoder-ffn-embed-dim 64 --encoder-attention-heads 2 --decoder-attention-heads 2")


@pytest.mark.parametrize("model", list(README_EXTRA))
def test_rdm_recipe_trains_and_decodes(model, toy_data, tmp_path):
    save = tmp_path / "ckpt"
    fairseq_main("train", [str(toy_data / "bin"), "--save-dir", str(save), "--user-dir", PLUGIN_DIR,
                           *shlex.split(MT_TRAIN), model, *shlex.split(README_EXTRA[model]), *TINY.split()])
    checkpoint = save / "checkpoint_last.pt"
    assert checkpoint.is_file()
    sentences = len((toy_data / "raw" / "test.src").read_text().splitlines())
    for iters, strategy in [(2, "--decoding-strategy default"), (4, "--decoding-strategy reparam-cond-deterministic-cosine")]:
        results = tmp_path / f"gen{iters}"
        fairseq_main("generate", [str(toy_data / "bin"), "--user-dir", PLUGIN_DIR, "--path", str(checkpoint),
                                  "--results-path", str(results),
                                  *shlex.split(MT_GENERATE.format(iters=iters, strategy=strategy))])
        lines = (results / "generate-test.txt").read_text().splitlines()
        for prefix in ("H-", "I-"):
            assert sum(line.startswith(prefix) for line in lines) == sentences, prefix
        steps = {line.split("\t")[1] for line in lines if line.startswith("I-")}
        assert steps == {str(iters)}
        history = sum(line.startswith("E-") for line in lines)
        assert history == sentences * (iters + 1)  # --retain-iter-history: the start and every pass
