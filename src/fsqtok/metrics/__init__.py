"""Evaluation metrics (plain functions returning one value per sample)."""

from .audio import mel_distance, pesq_stoi, si_sdr, stft_distance
from .depth import DepthErrorAccumulator, depth_errors
from .frechet import ImageFeatures, frechet_distance, frechet_metric, inception_features
from .image import psnr, ssim, video_psnr_ssim

__all__ = [
    "psnr",
    "ssim",
    "video_psnr_ssim",
    "depth_errors",
    "DepthErrorAccumulator",
    "si_sdr",
    "mel_distance",
    "stft_distance",
    "pesq_stoi",
    "ImageFeatures",
    "frechet_distance",
    "frechet_metric",
    "inception_features",
]
