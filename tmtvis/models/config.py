"""The flat, plain-typed model config; the YAML loader fills it by field name (the loss config: tmtvis/losses/config.py)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from tmtvis.errors import ConfigError

BACKBONES = ("resnet18", "resnet50", "swin_t", "swin_s", "swin_b", "swin_l")
TIM_MODES = ("cross_attn", "add_mean", "none")
INIT_CLASSES = (None, "coco", "ytvis_2019", "ytvis_2021", "ovis", "uvo_dense")
TCM_SETS = ("predicted", "oracle", "random", "none")
TCM_STRIDES = (8, 16, 32)
TCM_EVIDENCE = ("queries", "tokens", "video")


@dataclass
class ModelConfig:
    """Defaults are the `tiny` sizes; the r50 preset (tmtvis/configs/r50.yaml) gives the paper's."""

    backbone: str = "resnet18"
    backbone_weights: str | None = None  # local torchvision state_dict file, or None (random init)
    swin_window: int = 0  # Swin attention window (0: 7, swin_l 12); the zoo's 384-px Swin-B/L checkpoints use 12
    # A whole-model start (docs/pretrained-weights.md): a detectron2 Mask2Former(-VIS) .pkl/.pth, a transformers
    # Mask2Former directory or a tmtvis checkpoint directory; applied after backbone_weights.
    init_weights: str | None = None
    init_weights_classes: str | None = None  # the checkpoint's vocabulary when it has no names: coco | ytvis_2019 | ...
    hidden_dim: int = 64
    num_queries: int = 10
    dec_layers: int = 3  # video decoder layers (round-robin over the 3 scales)
    pixel_decoder_layers: int = 1  # deformable encoder layers over strides 8/16/32
    n_heads: int = 4
    dim_feedforward: int = 256  # decoder FFN
    pixel_decoder_ffn: int = 256  # deformable encoder FFN
    deform_points: int = 4  # sampling points per head and level
    mask_dim: int = 64
    dropout: float = 0.0
    tcm: bool = True  # taxonomy compilation module
    tim: str = "cross_attn"  # taxonomy injection: 'cross_attn' | 'add_mean' | 'none'
    set_size: int = 10  # top-K categories kept in the taxonomy set (clipped to C)
    # 'predicted' (TCM's top-K) | controls: 'oracle' (annotated categories), 'random' (K among the candidates),
    # 'none' (TCM, its losses and the two decoder passes run as for 'predicted', but TIM gets an all-zero set).
    tcm_set: str = "predicted"
    # What TCM reads: 'queries' = a first decoder pass without the set (object queries and their class
    # predictions); 'tokens' = the pixel tokens of one feature level (tcm_stride), the first design; 'video' =
    # the paper's: adapted category embeddings attend to the clip's spatio-temporal tokens (tcm_stride), scored by
    # their similarity to what they attended to (one decoder pass).
    tcm_evidence: str = "queries"
    tcm_stride: int = 8  # feature level for 'tokens': 8 | 16 | 32 (on 64x64 tiny input, 32 is 2x2 tokens per frame)
    text_classifier: bool = False  # cosine similarity to the bank instead of a linear class head

    @classmethod
    def baseline(cls, base: "ModelConfig | None" = None) -> "ModelConfig":
        """The same sizes with TCM and TIM off: plain Mask2Former-VIS."""
        return replace(base or cls(), tcm=False, tim="none")

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ConfigError(f"model.backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.swin_window < 0 or self.swin_window and not self.backbone.startswith("swin"):
            raise ConfigError(f"model.swin_window must be >= 0 and is for swin backbones only, got {self.swin_window} "
                              f"with {self.backbone}")
        if self.init_weights_classes not in INIT_CLASSES:
            raise ConfigError(f"model.init_weights_classes must be one of {INIT_CLASSES[1:]} or null, "
                              f"got {self.init_weights_classes!r}")
        if self.tim not in TIM_MODES:
            raise ConfigError(f"model.tim must be one of {TIM_MODES}, got {self.tim!r}")
        if self.tcm_set not in TCM_SETS:
            raise ConfigError(f"model.tcm_set must be one of {TCM_SETS}, got {self.tcm_set!r}")
        if self.tcm_evidence not in TCM_EVIDENCE:
            raise ConfigError(f"model.tcm_evidence must be one of {TCM_EVIDENCE}, got {self.tcm_evidence!r}")
        if self.tcm_stride not in TCM_STRIDES:
            raise ConfigError(f"model.tcm_stride must be one of {TCM_STRIDES}, got {self.tcm_stride!r}")
        if self.tim != "none" and not self.tcm:
            raise ConfigError("model.tim needs the taxonomy set: set model.tcm: true or model.tim: none")
        for name in ("hidden_dim", "num_queries", "dec_layers", "n_heads", "dim_feedforward",
                     "pixel_decoder_ffn", "deform_points", "mask_dim", "set_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.pixel_decoder_layers < 0:
            raise ConfigError(f"model.pixel_decoder_layers must be >= 0, got {self.pixel_decoder_layers}")
        if self.hidden_dim % self.n_heads or self.hidden_dim % 2:
            raise ConfigError(f"model.hidden_dim ({self.hidden_dim}) must be even and divisible by "
                              f"n_heads ({self.n_heads})")
        if self.hidden_dim % 32:
            raise ConfigError(f"model.hidden_dim ({self.hidden_dim}) must be a multiple of 32 (GroupNorm(32))")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
