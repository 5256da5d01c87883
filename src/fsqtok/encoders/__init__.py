"""Modality networks: an encoder and a decoder per modality, built from shared blocks."""

from .audio import AudioDecoder, AudioEncoder
from .image import ImageDecoder, ImageEncoder
from .video import VideoDecoder, VideoEncoder

__all__ = [
    "AudioDecoder",
    "AudioEncoder",
    "ImageDecoder",
    "ImageEncoder",
    "VideoDecoder",
    "VideoEncoder",
]
