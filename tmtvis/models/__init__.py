"""TMT-VIS model: Mask2Former-VIS plus the taxonomy compilation (TCM) and injection (TIM) modules."""
from tmtvis.models.config import ModelConfig
from tmtvis.models.tmtvis_model import TMTVIS, build_model, count_parameters

__all__ = ["ModelConfig", "TMTVIS", "build_model", "count_parameters"]
