"""The diffusion transformer (fairseq glue).

Parameter names and shapes follow RDM's ``diffusion_transformer`` so its state
dicts load with no mapping: fairseq's transformer layers, positional
embeddings concatenated to token embeddings and fused (``pe_fusion_ffn``), a
sinusoidal timestep embedding added at the decoder input (``time_pos_emb``),
and a length predictor on the mean-pooled encoder states (``embed_length``).

Continuous models (``--diffusion-type continuous``, DiffuSeq) feed the decoder
x_t in embedding space instead of token ids, predict x0 there (``x0_head``) and
round it through the output projection, which must be tied to the embeddings.
"""
import logging
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from fairseq.models import register_model, register_model_architecture
from fairseq.models.nat import FairseqNATModel
from fairseq.models.transformer import Embedding, TransformerDecoderBase, TransformerEncoderBase
from fairseq.modules.transformer_sentence_encoder import init_bert_params

from ..diffusion import X0Prediction, build_diffusion, check_num_timesteps
from ..diffusion.training import copies, training_draw
from ..errors import UsageError

logger = logging.getLogger(__name__)

TIMESTEP_EMBEDDINGS = ("sinusoidal", "learnable", "none")


def choice(cfg, name: str, default):
    """A choice option as a plain string: fairseq's ChoiceEnum value from the command line, a string
    from a checkpoint's stored config."""
    value = getattr(cfg, name, default)
    return value if value is None else str(value)


# RDM options this model cannot honour: refused (training, or a checkpoint that has them set)
# rather than trained or decoded differently.
UNSUPPORTED = {
    "encoder_use_rpe": "--encoder-use-rpe (relative position embeddings) is not supported by fairseq_tp, "
                       "in training or in a checkpoint",
    "decoder_use_rpe": "--decoder-use-rpe (relative position embeddings) is not supported by fairseq_tp, "
                       "in training or in a checkpoint",
    "src_embedding_copy": "--src-embedding-copy is not supported: RDM's model asserts it off in training",
}


class TimestepEmbedding(nn.Module):
    def __init__(self, dim: int, num_steps: int, kind: str = "sinusoidal"):
        super().__init__()
        if kind not in TIMESTEP_EMBEDDINGS:
            raise UsageError(f"unknown --timestep-emb-type '{kind}' (choose from {', '.join(TIMESTEP_EMBEDDINGS)})")
        self.dim, self.kind = dim, kind
        if kind == "none":
            self.register_buffer("zero_emb", torch.zeros(1, 1, 1))
            return
        if kind == "learnable":
            self.learned_timestep_emb = nn.Embedding(num_steps, dim)
        self.output_mlp = nn.Linear(dim, dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return self.zero_emb
        if self.kind == "learnable":
            emb = self.learned_timestep_emb(t)
        else:
            half = self.dim // 2
            freqs = torch.exp(torch.arange(half, device=t.device) * -(math.log(10000) / (half - 1)))
            angles = t[:, None] * freqs[None, :]
            emb = torch.cat((angles.sin(), angles.cos()), dim=-1)
        return self.output_mlp(emb).view(t.size(0), 1, self.dim)


def is_plain_layer(layer) -> bool:
    """A fairseq decoder layer without the options (--scale-heads, --scale-attn, --scale-fc,
    --scale-resids, cross self-attention, extra key/value biases, zero attention) that
    :func:`plain_layer_forward` leaves out."""
    if layer.cross_self_attention or layer.encoder_attn is None:
        return False
    if any(getattr(layer, name, None) is not None for name in ("c_attn", "attn_ln", "ffn_layernorm", "w_resid")):
        return False
    return all(attn.bias_k is None and not attn.add_zero_attn and not getattr(attn, "use_xformers", False)
               for attn in (layer.self_attn, layer.encoder_attn))


def plain_layer_forward(layer, x, encoder_states, encoder_mask, padding_mask, cache):
    """fairseq's ``TransformerDecoderLayer.forward`` at inference for a plain layer, with its
    attentions written out (:func:`attend`) and the encoder attention's keys and values computed on
    the first pass over ``encoder_states`` and kept in ``cache`` for the others."""
    x = _residual_block(layer, layer.self_attn_layer_norm, x, lambda h: attend(layer.self_attn, h, h, padding_mask))
    x = _residual_block(layer, layer.encoder_attn_layer_norm, x,
                        lambda h: attend(layer.encoder_attn, h, encoder_states, encoder_mask, cache))
    return _residual_block(layer, layer.final_layer_norm, x, lambda h: layer.fc2(layer.activation_fn(layer.fc1(h))))


def _residual_block(layer, norm, x, sublayer):
    """x + sublayer(x), normalised before the sublayer (pre-norm) or after the sum (post-norm), as fairseq's
    layers do."""
    residual = x
    if layer.normalize_before:
        x = norm(x)
    x = layer.residual_connection(sublayer(x), residual)
    if not layer.normalize_before:
        x = norm(x)
    return x


def is_plain_encoder_layer(layer) -> bool:
    """A fairseq encoder layer whose self-attention :func:`attend` can stand in for."""
    attn = layer.self_attn
    return attn.bias_k is None and not attn.add_zero_attn and not getattr(attn, "use_xformers", False)


def plain_encoder_layer_forward(layer, x, padding_mask):
    """fairseq's ``TransformerEncoderLayer.forward`` at inference (no attention mask), the
    self-attention written out (:func:`attend`)."""
    x = _residual_block(layer, layer.self_attn_layer_norm, x, lambda h: attend(layer.self_attn, h, h, padding_mask))
    return _residual_block(layer, layer.final_layer_norm, x, lambda h: layer.fc2(layer.activation_fn(layer.fc1(h))))


def attend(attention, query, states, padding_mask, cache=None):
    """fairseq's ``MultiheadAttention`` at inference (no dropout): ``query`` [L, B, D] attends to
    ``states`` [S, B, D], skipping positions where ``padding_mask`` [B, S] is set.  With ``cache``
    (a dict), the keys and values of ``states`` are computed once per module and reused."""
    length, batch, dim = query.shape
    heads, head_dim = attention.num_heads, attention.head_dim
    keys_values = cache.get(attention) if cache is not None else None
    if keys_values is None:
        keys_values = tuple(proj(states).view(-1, batch * heads, head_dim).transpose(0, 1)
                            for proj in (attention.k_proj, attention.v_proj))
        if cache is not None:
            cache[attention] = keys_values
    keys, values = keys_values
    q = (attention.q_proj(query) * attention.scaling).view(length, batch * heads, head_dim).transpose(0, 1)
    weights = torch.bmm(q, keys.transpose(1, 2)).view(batch, heads, length, -1)  # [B, H, L, S]
    if padding_mask is not None:
        weights = weights.masked_fill_(padding_mask[:, None, None, :], -math.inf)
    # Written out: torch's CPU softmax is ~10x slower on rows shorter than 16 (short sentences).  In float32
    # as fairseq's softmax (a no-op for float32 weights).
    weights = weights.float()
    weights = weights.sub_(weights.amax(-1, keepdim=True)).exp_()
    weights = weights.div_(weights.sum(-1, keepdim=True)).type_as(values).view(batch * heads, length, -1)
    mixed = torch.bmm(weights, values).transpose(0, 1).reshape(length, batch, dim)
    return attention.out_proj(mixed)


class DiffusionTransformerEncoder(TransformerEncoderBase):
    def __init__(self, cfg, dictionary, embed_tokens):
        super().__init__(cfg, dictionary, embed_tokens)
        dim = cfg.encoder.embed_dim
        self.pe_fusion_ffn = nn.Linear(2 * dim, dim)
        self.plain_layers = all(is_plain_encoder_layer(layer) for layer in self.layers)

    def forward_scriptable(self, src_tokens, src_lengths=None, return_all_hiddens: bool = False,
                           token_embeddings=None):
        if self.training or return_all_hiddens or not self.plain_layers:
            return super().forward_scriptable(src_tokens, src_lengths, return_all_hiddens, token_embeddings)
        return self.encode_for_inference(src_tokens, token_embeddings)

    def encode_for_inference(self, src_tokens, token_embeddings=None):
        """fairseq's encoder forward at inference, the layers' attention written out (:func:`attend`:
        torch's attention and softmax are slow on short CPU rows)."""
        padding_mask = src_tokens.eq(self.padding_idx)
        has_pads = bool(padding_mask.any())
        x, embedding = self.forward_embedding(src_tokens, token_embeddings)
        if has_pads:
            x = x * (1 - padding_mask.unsqueeze(-1).type_as(x))
        x = x.transpose(0, 1)
        for layer in self.layers:
            x = plain_encoder_layer_forward(layer, x, padding_mask if has_pads else None)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        lengths = src_tokens.ne(self.padding_idx).sum(dim=1, dtype=torch.int32).reshape(-1, 1).contiguous()
        return {"encoder_out": [x], "encoder_padding_mask": [padding_mask], "encoder_embedding": [embedding],
                "encoder_states": [], "fc_results": [], "src_tokens": [], "src_lengths": [lengths]}

    def forward_embedding(self, src_tokens, token_embedding=None):
        if token_embedding is None:
            token_embedding = self.embed_tokens(src_tokens)
        x = embed = self.embed_scale * token_embedding
        if self.embed_positions is not None:
            x = self.pe_fusion_ffn(torch.cat((embed, self.embed_positions(src_tokens)), dim=-1))
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
        x = self.dropout_module(x)
        if self.quant_noise is not None:
            x = self.quant_noise(x)
        return x, embed


# Lengths are classified into this many classes (fairseq's NAT models, and so RDM's checkpoints); with
# --pred-length-offset the class is the length minus the source length, shifted by half of them.
LENGTH_CLASSES = 256
LENGTH_OFFSET = LENGTH_CLASSES // 2


class DiffusionTransformerDecoder(TransformerDecoderBase):
    """Non-causal decoder over x_t, conditioned on the timestep and the encoder."""

    def __init__(self, cfg, dictionary, embed_tokens):
        super().__init__(cfg, dictionary, embed_tokens, no_encoder_attn=False)
        dim = cfg.decoder.embed_dim
        self.embed_length = Embedding(LENGTH_CLASSES, cfg.encoder.embed_dim, None)
        self.time_pos_emb = TimestepEmbedding(dim, cfg.num_diffusion_timesteps,
                                              choice(cfg, "timestep_emb_type", "sinusoidal"))
        self.pe_fusion_ffn = nn.Linear(2 * dim, dim)
        self.pred_length_offset = getattr(cfg, "pred_length_offset", False)
        self.sg_length_pred = getattr(cfg, "sg_length_pred", False)
        self.length_loss_factor = getattr(cfg, "length_loss_factor", 0.1)
        # Continuous models only (absent from discrete ones, so RDM's state dicts are unchanged):
        # maps the last layer's features to the x0 estimate in embedding space.
        continuous = choice(cfg, "diffusion_type", None) == "continuous"
        self.x0_head = nn.Linear(self.output_embed_dim, self.output_embed_dim) if continuous else None
        self.plain_layers = all(is_plain_layer(layer) for layer in self.layers)

    def forward(self, prev_output_tokens, encoder_out, t, x_t=None, cross_attention_cache=None, **unused):
        """Logits [B, L, V] for x0 given x_t = ``prev_output_tokens`` at network time ``t`` [B].

        Continuous models pass ``x_t`` [B, L, D] (embedding space; ``prev_output_tokens`` then
        only frames the sentence: positions and padding) and get an :class:`X0Prediction`.
        ``cross_attention_cache``: a dict kept across the passes over one ``encoder_out`` (start
        with ``{}``): the encoder attention's keys and values are then computed once.
        """
        if x_t is None:
            x = self.embed_scale * self.embed_tokens(prev_output_tokens)
        else:
            x = x_t.type_as(self.embed_tokens.weight)
        if self.project_in_dim is not None:
            x = self.project_in_dim(x)
        if self.embed_positions is not None:
            positions = self.embed_positions(prev_output_tokens)
            x = self.pe_fusion_ffn(torch.cat((x, positions), dim=-1)) + self.time_pos_emb(t)
        x = self.dropout_module(x)
        padding_mask = prev_output_tokens.eq(self.padding_idx)
        x = x.transpose(0, 1)
        enc = encoder_out["encoder_out"][0] if encoder_out["encoder_out"] else None
        enc_mask = encoder_out["encoder_padding_mask"][0] if encoder_out["encoder_padding_mask"] else None
        cached = cross_attention_cache is not None and self.plain_layers and not self.training
        for layer in self.layers:
            if cached:
                x = plain_layer_forward(layer, x, enc, enc_mask, padding_mask, cross_attention_cache)
            else:
                x, _, _ = layer(x, enc, enc_mask, self_attn_mask=None, self_attn_padding_mask=padding_mask)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        x = x.transpose(0, 1)
        if self.project_out_dim is not None:
            x = self.project_out_dim(x)
        if self.x0_head is not None:
            return X0Prediction(self.x0_head(x), self.output_projection.weight)
        return self.output_layer(x)

    # -- length prediction (as NAT models: classify the length from pooled encoder states)
    def length_logits(self, encoder_out):
        feats = encoder_out["encoder_out"][0]  # T x B x C
        if encoder_out["encoder_padding_mask"]:
            keep = (~encoder_out["encoder_padding_mask"][0]).transpose(0, 1).type_as(feats)
            pooled = ((feats / keep.sum(0)[None, :, None]) * keep[:, :, None]).sum(0)
        else:
            pooled = feats.mean(0)
        if self.sg_length_pred:
            pooled = pooled.detach()
        return F.linear(pooled, self.embed_length.weight)

    def _source_lengths(self, encoder_out):
        feats = encoder_out["encoder_out"][0]
        if encoder_out["encoder_padding_mask"]:
            return (~encoder_out["encoder_padding_mask"][0]).sum(1).long()
        return torch.full((feats.size(1),), feats.size(0), dtype=torch.long, device=feats.device)

    def predict_length(self, encoder_out):
        predicted = F.log_softmax(self.length_logits(encoder_out), -1).max(-1)[1]
        if self.pred_length_offset:
            return predicted - LENGTH_OFFSET + self._source_lengths(encoder_out)
        return predicted

    def length_target(self, encoder_out, tgt_tokens):
        lengths = tgt_tokens.ne(self.padding_idx).sum(1).long()
        if self.pred_length_offset:
            lengths = lengths - self._source_lengths(encoder_out) + LENGTH_OFFSET
        return lengths.clamp(min=0, max=LENGTH_CLASSES - 1)


@register_model("diffusion_transformer")
class DiffusionTransformerModel(FairseqNATModel):
    def __init__(self, args, encoder, decoder):
        super().__init__(args, encoder, decoder)
        for option, why in UNSUPPORTED.items():
            if getattr(self.args, option, False):
                raise UsageError(why)
        if getattr(self.args, "scale_attn_masking", False):
            logger.warning("--scale-attn-masking has no effect, as in RDM (its decoder is never given the "
                           "mask the option needs)")
        tgt = self.tgt_dict
        self.diffusion = build_diffusion(
            choice(self.args, "diffusion_type", None), self.args.num_diffusion_timesteps, len(tgt),
            pad=tgt.pad(), bos=tgt.bos(), eos=tgt.eos(), mask=tgt.unk(),
            not_diffusing_special_sym=getattr(self.args, "not_diffusing_special_sym", False),
            lambda_direct_xentropy=getattr(self.args, "lambda_direct_xentropy", -1.0),
            reweighting_type=choice(self.args, "reweighting_type", "linear"),
            noise_scheduler_type=getattr(self.args, "noise_scheduler_type", None),
            decoder_loss_type=choice(self.args, "decoder_loss_type", "orig"),
            noise_distribution=choice(self.args, "noise_distribution", "uniform"),
            vocab_count=list(tgt.count) if choice(self.args, "noise_distribution", "") == "unigram" else None,
            embed_dim=self.decoder.embed_tokens.embedding_dim,
        )
        if self.diffusion.continuous:
            self._prepare_continuous()

    def _prepare_continuous(self):
        embed = self.decoder.embed_tokens
        projection = getattr(self.decoder, "output_projection", None)
        if projection is None or projection.weight is not embed.weight:
            raise UsageError("--diffusion-type continuous rounds through the embeddings: tie the output "
                             "projection with --share-decoder-input-output-embed or --share-all-embeddings")
        # DiffuSeq's embeddings start at N(0, 1) (torch's default), the scale of the
        # noise; fairseq's N(0, 1/dim) would leave every x_t almost pure noise.
        with torch.no_grad():
            embed.weight.normal_()
            embed.weight[embed.padding_idx].zero_()
        if self.encoder.embed_tokens is embed:
            self.encoder.embed_scale = 1.0  # already unit scale; sqrt(dim) would swamp the positions

    @property
    def allow_length_beam(self):
        return True

    @staticmethod
    def add_args(parser):
        FairseqNATModel.add_args(parser)
        parser.add_argument("--pred-length-offset", action="store_true",
                            help="predict the length difference between target and source")
        parser.add_argument("--sg-length-pred", action="store_true",
                            help="stop gradients from the length predictor into the encoder")
        parser.add_argument("--length-loss-factor", type=float, help="weight of the length prediction loss")
        # RDM's other model options, with its names and defaults.  Its *-concat-pe flags are
        # store_true with default True: always on there, and so here (pe_fusion_ffn).
        for side in ("encoder", "decoder"):
            parser.add_argument(f"--{side}-concat-pe", action="store_true", default=True,
                                help="concatenate positional embeddings to token embeddings (always on, as RDM)")
            parser.add_argument(f"--{side}-use-rpe", action="store_true", default=False,
                                help="RDM's T5-style relative position biases: refused (not supported)")
            parser.add_argument(f"--{side}-rpe-num-buckets", type=int, default=64,
                                help="buckets of the relative position biases (only with --*-use-rpe)")
        parser.add_argument("--src-embedding-copy", action="store_true",
                            help="RDM's option, which its training asserts off: refused")

    @classmethod
    def build_encoder(cls, cfg, src_dict, embed_tokens):
        return _bert_initialised(DiffusionTransformerEncoder(cfg, src_dict, embed_tokens), cfg)

    @classmethod
    def build_decoder(cls, cfg, tgt_dict, embed_tokens):
        # before the time embedding's T rows are allocated
        check_num_timesteps(cfg.num_diffusion_timesteps)
        return _bert_initialised(DiffusionTransformerDecoder(cfg, tgt_dict, embed_tokens), cfg)

    # -- decoding: what the generator asks of the model
    def encode_source(self, src_tokens, src_lengths):
        """(encoder output, each sentence's predicted target length, bos and eos included)."""
        encoder_out = self.encoder(src_tokens, src_lengths=src_lengths)
        # RDM's minimum (<bos>, <eos> and one token); the maximum keeps a length predicted past the decoder's
        # positions decodable.
        lengths = self.decoder.predict_length(encoder_out).clamp(min=3, max=self.decoder.max_positions())
        return encoder_out, lengths

    def select_encoder_rows(self, encoder_out, rows):
        """The encoder output of the given sentence rows (repeats allowed)."""
        return self.encoder.reorder_encoder_out(encoder_out, rows)

    def denoise(self, tokens, encoder_out, t, x_t=None, cross_attention_cache=None):
        """One decoder pass at decoding timestep ``t`` [B]: logits for x0 (continuous models: an X0Prediction
        from ``x_t``); the network sees the time its training used (RDM's offsets)."""
        return self.decoder(tokens, encoder_out, self.diffusion.network_time_at_decoding(t), x_t=x_t,
                            cross_attention_cache=cross_attention_cache)

    def forward(self, src_tokens, src_lengths, prev_output_tokens=None, tgt_tokens=None, **unused):
        """Training pass: corrupt the target at random timesteps and denoise it."""
        mode = choice(self.args, "q_sample_mode", "default")
        x0, n = tgt_tokens, copies(mode)
        if n > 1:
            # RDM encodes the batch once per copy (each its own dropout) and predicts lengths for all.
            src_tokens, src_lengths = src_tokens.repeat(n, 1), src_lengths.repeat(n)
        encoder_out = self.encoder(src_tokens, src_lengths=src_lengths)
        # RDM feeds the 0-based t while training, for every family.
        if self.diffusion.continuous:
            t, weight = self.diffusion.sample_time(tgt_tokens.size(0), tgt_tokens.device)
            positions = tgt_tokens.ne(self.tgt_dict.pad())
            corrupted = self.diffusion.corrupt(self.decoder.embed_tokens(tgt_tokens), t, positions)
            output = self.decoder(tgt_tokens, encoder_out, t, x_t=corrupted["x_t"])
        else:
            corrupted, t, weight = training_draw(self.diffusion, x0, mode)
            tgt_tokens = x0.repeat(n, 1)
            output = self.decoder(corrupted["x_t"], encoder_out, t)
        return {
            # logits [B, L, V], or an X0Prediction for continuous models: what diffusion.loss reads
            "logits": output, "corrupted": corrupted, "t": t, "weight": weight, "x0": tgt_tokens,
            "length_logits": self.decoder.length_logits(encoder_out),
            "length_target": self.decoder.length_target(encoder_out, tgt_tokens),
        }


def _bert_initialised(module, cfg):
    if getattr(cfg, "apply_bert_init", False):  # RDM's --apply-bert-init
        module.apply(init_bert_params)
    return module


@register_model_architecture("diffusion_transformer", "diffusion_transformer")
def diffusion_base_architecture(args):
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 512)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 2048)
    args.encoder_layers = getattr(args, "encoder_layers", 6)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 8)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", args.encoder_embed_dim)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", args.encoder_ffn_embed_dim)
    args.decoder_layers = getattr(args, "decoder_layers", 6)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 8)
    args.attention_dropout = getattr(args, "attention_dropout", 0.0)
    args.activation_dropout = getattr(args, "activation_dropout", 0.0)
    args.dropout = getattr(args, "dropout", 0.1)
    args.share_all_embeddings = getattr(args, "share_all_embeddings", True)
    args.apply_bert_init = getattr(args, "apply_bert_init", False)
    args.decoder_output_dim = getattr(args, "decoder_output_dim", args.decoder_embed_dim)
    args.decoder_input_dim = getattr(args, "decoder_input_dim", args.decoder_embed_dim)
    args.length_loss_factor = getattr(args, "length_loss_factor", 0.1)
    args.pred_length_offset = getattr(args, "pred_length_offset", False)
    args.sg_length_pred = getattr(args, "sg_length_pred", False)
    args.src_embedding_copy = getattr(args, "src_embedding_copy", False)


def _preset(name, dim, ffn, heads):
    @register_model_architecture("diffusion_transformer", name)
    def preset(args):
        for side in ("encoder", "decoder"):
            setattr(args, f"{side}_embed_dim", getattr(args, f"{side}_embed_dim", dim))
            setattr(args, f"{side}_ffn_embed_dim", getattr(args, f"{side}_ffn_embed_dim", ffn))
            setattr(args, f"{side}_attention_heads", getattr(args, f"{side}_attention_heads", heads))
            setattr(args, f"{side}_layers", getattr(args, f"{side}_layers", 6))
        diffusion_base_architecture(args)
    return preset


# The presets RDM ships, with its sizes.
diffusion_transformer_iwslt = _preset("diffusion_transformer_iwslt", 512, 1024, 4)
diffusion_transformer_wmt = _preset("diffusion_transformer_wmt", 512, 2048, 8)
diffusion_transformer_qg = _preset("diffusion_transformer_qg", 512, 1024, 8)
diffusion_transformer_qqp = _preset("diffusion_transformer_qqp", 512, 1024, 8)
diffusion_transformer_diffuseq = _preset("diffusion_transformer_diffuseq", 768, 3072, 12)
