"""The assembled TMT-VIS model: backbone -> pixel decoder -> (TCM -> TIM) -> video decoder."""
from __future__ import annotations

import torch
from torch import nn

from tmtvis.errors import ConfigError
from tmtvis.models.backbone import Backbone
from tmtvis.models.config import ModelConfig
from tmtvis.models.pixel_decoder import PixelDecoder
from tmtvis.models.tcm import TCM
from tmtvis.models.tim import TIM
from tmtvis.models.video_decoder import VideoDecoder

# detectron2's PIXEL_MEAN / PIXEL_STD on 0-255 RGB: what Mask2Former's R50 checkpoints were trained with.
PIXEL_MEAN = (123.675, 116.280, 103.530)
PIXEL_STD = (58.395, 57.120, 57.375)
TCM_LEVELS = {32: 0, 16: 1, 8: 2}  # stride -> index in the decoder memory (lowest resolution first)


class TMTVIS(nn.Module):
    """Input: frames (B, T, 3, H, W), uint8 0..255 or float 0..1 RGB; detectron2's normalisation (on 0..255) inside.

    Output dict: pred_logits (B, Q, C+1; last = no-object), pred_masks (B, Q, T, H/4, W/4) logits,
    pred_embeds (B, Q, hidden), aux_outputs [{pred_logits, pred_masks}] for layers 0..L-1 (then, with TCM on
    queries, the first pass's final layer: supervised like every layer), and with TCM on tcm_scores (B, C) logits,
    taxonomy_ids (B, K), and on tokens tcm_token_logits (B, C, T*h*w) over TCM's feature level of size
    tcm_token_size (h, w). H and W should be multiples of 32.
    """

    def __init__(self, cfg: ModelConfig, bank: torch.Tensor) -> None:
        super().__init__()
        if bank.ndim != 2 or bank.shape[0] < 1:
            raise ConfigError(f"taxonomy bank must be a (C, D) tensor, got shape {tuple(bank.shape)}")
        self.cfg = cfg
        self.num_classes, text_dim = bank.shape
        self.register_buffer("bank", bank.detach().float().clone(), persistent=True)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)
        self.backbone = Backbone(cfg.backbone, cfg.backbone_weights, cfg.swin_window)
        self.pixel_decoder = PixelDecoder(self.backbone.channels, cfg.hidden_dim, cfg.mask_dim,
                                          cfg.pixel_decoder_layers, cfg.n_heads, cfg.pixel_decoder_ffn,
                                          cfg.deform_points, cfg.dropout)
        self.decoder = VideoDecoder(cfg.hidden_dim, cfg.num_queries, cfg.n_heads, cfg.dim_feedforward, cfg.dec_layers,
                                    cfg.mask_dim, self.num_classes, text_dim, cfg.text_classifier, cfg.dropout)
        # Baseline (tcm off, tim none) creates no TCM/TIM modules at all: exactly Mask2Former-VIS.
        self.tcm = (TCM(text_dim, cfg.hidden_dim, cfg.n_heads, cfg.dim_feedforward, cfg.set_size, self.num_classes,
                        cfg.dropout, set_mode=cfg.tcm_set, evidence=cfg.tcm_evidence) if cfg.tcm else None)
        self.tcm_level = TCM_LEVELS[cfg.tcm_stride]
        self.tim = (TIM(cfg.tim, cfg.hidden_dim, cfg.n_heads, cfg.dropout, blind=cfg.tcm_set == "none")
                    if cfg.tim != "none" else None)

    def set_bank(self, bank: torch.Tensor) -> None:
        """Swap the taxonomy bank (open-vocabulary inference; needs text_classifier unless C is unchanged)."""
        if bank.shape[1] != self.bank.shape[1]:
            raise ConfigError(f"bank text dim {bank.shape[1]} != model's {self.bank.shape[1]}")
        if not self.cfg.text_classifier and bank.shape[0] != self.num_classes:
            raise ConfigError("a bank with a different number of categories needs model.text_classifier: true")
        if self.tcm is not None and bank.shape[0] != self.num_classes:
            # No training statistics for a new vocabulary: every category gets the old mean prior.
            self.tcm.prior_logit = self.tcm.prior_logit.mean().expand(bank.shape[0]).clone()
        self.bank = bank.detach().float().to(self.bank.device)
        self.num_classes = bank.shape[0]

    def encode(self, frames: torch.Tensor) -> tuple[list, torch.Tensor]:
        """frames (B, T, 3, H, W) -> decoder memory (3 levels) and mask features (B, T, mask_dim, H/4, W/4)."""
        b, t = frames.shape[:2]
        x = frames.flatten(0, 1)  # (B*T, 3, H, W)
        x = x.float() if x.dtype == torch.uint8 else x.float() * 255.0  # 0..255, as detectron2 normalises
        x = (x - self.pixel_mean) / self.pixel_std
        mask_features, scales = self.pixel_decoder(self.backbone(x))  # (B*T, mask_dim, H/4, W/4), 3 x (B*T, C, h, w)
        return self.decoder.memory(scales, b, t), mask_features.view(b, t, *mask_features.shape[1:])

    def compile_taxonomy(self, memory: list, mask_features: torch.Tensor, set_ids: torch.Tensor | None = None,
                         candidates: torch.Tensor | None = None) -> dict:
        """TCM: scores (B, C), ids (B, K), set (K, B, hidden), modulated, token_logits/token_size, first_pass.

        On 'queries' TCM reads a first decoder pass without the set (the same decoder: a first look at the
        objects, then a second pass focused by the set); on 'tokens' one level of the decoder memory."""
        if self.cfg.tcm_evidence == "queries":
            first = self.decoder(memory, mask_features, self.bank)
            out = self.tcm(self.bank, first["pred_embeds"].transpose(0, 1), None, set_ids, candidates,
                           class_logits=first["pred_logits"])  # queries (Q, B, hidden) as TCM's memory
            return {**out, "token_size": None,
                    "first_pass": {"pred_logits": first["pred_logits"], "pred_masks": first["pred_masks"]}}
        src, pos, size = memory[self.tcm_level]
        return {**self.tcm(self.bank, src, pos, set_ids, candidates), "token_size": size, "first_pass": None}

    def forward(self, frames: torch.Tensor, set_ids: torch.Tensor | None = None,
                candidates: torch.Tensor | None = None) -> dict:
        """set_ids (B, K): force the taxonomy set (the oracle control); otherwise TCM's top-K (or random) among
        candidates (B, C) bool, the clip's source taxonomy or the dataset predicted for (all when None)."""
        memory, mask_features = self.encode(frames)
        inject, extra = None, {}
        if self.tcm is not None:
            tcm = self.compile_taxonomy(memory, mask_features, set_ids, candidates)
            extra = {"tcm_scores": tcm["scores"], "taxonomy_ids": tcm["ids"], "tcm_token_logits": tcm["token_logits"],
                     "tcm_token_size": tcm["token_size"]}
            if self.tim is not None:
                inject = lambda q, qpos: self.tim(q, qpos, tcm["set"])  # noqa: E731
        out = self.decoder(memory, mask_features, self.bank, inject)
        out.update(extra)
        if self.tcm is not None and tcm["first_pass"] is not None:
            out["aux_outputs"].append(tcm["first_pass"])
        return out


def build_model(cfg: ModelConfig, bank: torch.Tensor) -> TMTVIS:
    """The model for `cfg` over the taxonomy bank (C, D) of L2-normalised text embeddings (a frozen buffer)."""
    return TMTVIS(cfg, bank)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
