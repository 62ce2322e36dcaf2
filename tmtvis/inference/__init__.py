"""Inference: per-video predictions in the YouTube-VIS results format."""
from tmtvis.inference.video_predictor import VideoPredictor, link, window_starts

__all__ = ["VideoPredictor", "link", "window_starts"]
