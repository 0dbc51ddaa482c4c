"""Depth prediction from a trained GasMono checkpoint (the Python API).

Example::

    from inference import DepthEstimator
    estimator = DepthEstimator.from_checkpoint("logs/mdp/models/weights_39", device="cpu")
    depth = estimator.predict(rgb)          # H x W, metres up to scale

The network (the depth encoder named in the checkpoint and the depth decoder)
sees the image resized to the checkpoint's ``height x width``
(PIL LANCZOS, raw [0, 1] RGB); its scale-0 sigmoid disparity is mapped with
``disp_to_depth`` (``min_depth`` / ``max_depth``) to a scaled disparity, which
is resized back to the input size (bilinear) and inverted to depth. Used by
``predict.py`` and ``evaluate_depth.py``.

Inference computes only what the scale-0 disparity needs (the decoder's
scales 1-3 are not built), with the weights and activations in channels-last
memory, without autograd bookkeeping. With the fast kernels (``kernels``,
:func:`accel.plan_inference`: by default where verified, the CPU) it runs
fused copies of the networks (:func:`accel.fusion.fuse_for_inference`:
batch norms folded into the convolutions, the decoder's convolutions of
upsampled maps computed at the low resolution, the attention's key softmax
on the token layout; on the CPU, linear layers and 1 x 1 convolutions
through oneDNN with their activations), and with ``compile=True`` through
``torch.compile``; the output equals the plain networks' scale 0 up to float
rounding (``tests/test_accel_inference.py``).
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import torch
import torch.nn as nn
from PIL import Image

import accel
import networks
from accel.fusion import fuse_for_inference
from datasets.eval_base import prepare_image
from layers import disp_to_depth
from utils import GasMonoError

__all__ = [
    "DepthEstimator",
    "post_process_disparity",
    "resize_disparity",
    "colorize_disparity",
]


def post_process_disparity(disp: torch.Tensor, disp_flipped: torch.Tensor) -> torch.Tensor:
    """Monodepth post-processing: blend a prediction with that of the mirrored image.

    Args:
        disp: ``B x 1 x H x W`` disparity of the images.
        disp_flipped: ``B x 1 x H x W`` disparity of the horizontally flipped
            images (as predicted, i.e. still mirrored).

    Returns:
        ``B x 1 x H x W``: the mean of both, except in the leftmost / rightmost
        5 % of columns where a linear ramp (over the next 5 %) hands over to the
        mirrored / original prediction respectively.
    """
    unflipped = torch.flip(disp_flipped, dims=[3])
    width = disp.shape[3]
    ramp = torch.linspace(0.0, 1.0, width, device=disp.device, dtype=disp.dtype)
    left_mask = 1.0 - torch.clamp(20.0 * (ramp - 0.05), 0.0, 1.0)
    right_mask = torch.flip(left_mask, dims=[0])
    mean = 0.5 * (disp + unflipped)
    return right_mask * disp + left_mask * unflipped + (1.0 - left_mask - right_mask) * mean


def resize_disparity(disp: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an ``h x w`` disparity to ``height x width`` (float32)."""
    disp = np.asarray(disp, dtype=np.float32)
    if disp.shape == (height, width):
        return disp
    return cv2.resize(disp, (width, height), interpolation=cv2.INTER_LINEAR)


def colorize_disparity(disp: np.ndarray, colormap: str = "magma") -> np.ndarray:
    """Colour-map a disparity for display (range: min to 95th percentile).

    Returns:
        ``H x W x 3`` uint8 RGB.
    """
    try:
        cmap = matplotlib.colormaps[colormap]
    except KeyError:
        raise GasMonoError(f"unknown matplotlib colormap {colormap!r}") from None
    low = float(np.min(disp))
    high = float(np.percentile(disp, 95))
    normalized = np.clip((disp - low) / max(high - low, 1e-12), 0.0, 1.0)
    return (cmap(normalized)[..., :3] * 255.0 + 0.5).astype(np.uint8)


class DepthEstimator:
    """A depth encoder/decoder pair ready for inference.

    Args:
        encoder: depth encoder (``forward(B x 3 x H x W in [0, 1]) -> 5 maps``).
        decoder: depth decoder returning ``{("disp", 0): B x 1 x H x W}``
            (a :class:`networks.DepthDecoder` built with ``scales=[0]``
            computes nothing else).
        height, width: network input size (multiples of 32).
        min_depth, max_depth: range of ``disp_to_depth``.
        device: where the networks run.
        compile: run the networks through ``torch.compile`` (for GPUs; on
            the CPU compiling takes minutes).
        kernels: ``--kernels`` (:func:`accel.plan_inference`): ``reference``
            runs the networks as given; ``fast`` runs fused copies
            (:func:`accel.fusion.fuse_for_inference`; with ``compile``,
            without the oneDNN modules, whose weights ``torch.compile``
            cannot lower); ``auto`` the fused copies where verified.
            ``encoder`` and ``decoder`` stay as given either way.
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        height: int,
        width: int,
        min_depth: float = 0.1,
        max_depth: float = 10.0,
        device: str | torch.device = "cpu",
        compile: bool = False,
        kernels: str = "auto",
    ) -> None:
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device, memory_format=torch.channels_last).eval()
        self.decoder = decoder.to(self.device, memory_format=torch.channels_last).eval()
        self.kernels = accel.plan_inference(kernels, self.device, compile)
        fuse, onednn = self.kernels.fuse, self.kernels.onednn
        self._encoder = fuse_for_inference(self.encoder, onednn) if fuse else self.encoder
        self._decoder = fuse_for_inference(self.decoder, onednn) if fuse else self.decoder
        self._network = torch.compile(self._disparity) if compile else self._disparity
        self.height = int(height)
        self.width = int(width)
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.checkpoint: Path | None = None
        self.depth_encoder: str | None = None

    @classmethod
    def from_checkpoint(
        cls,
        folder: str | os.PathLike,
        device: str | torch.device = "cpu",
        min_depth: float = 0.1,
        max_depth: float = 10.0,
        depth_encoder: str | None = None,
        compile: bool = False,
        kernels: str = "auto",
    ) -> "DepthEstimator":
        """Load ``encoder.pth`` and ``depth.pth`` of a weights folder (ours or
        the release's); the depth encoder and the input size come from
        ``encoder.pth`` (MPViT-small when it names no encoder).

        Args:
            depth_encoder: when given, the checkpoint must hold this encoder.
            compile, kernels: see the class.

        Raises:
            GasMonoError: missing folder/file, another encoder than
                ``depth_encoder``, another architecture, or an
                ``encoder.pth`` without ``height`` / ``width``.
        """
        folder = Path(folder)
        encoder, decoder, extras = networks.load_depth_model(folder, scales=[0], depth_encoder=depth_encoder)
        if "height" not in extras or "width" not in extras:
            raise GasMonoError(f"{folder / 'encoder.pth'} has no 'height'/'width' entries")
        height, width = int(extras["height"]), int(extras["width"])
        if height % 32 or width % 32 or height <= 0 or width <= 0:
            raise GasMonoError(f"{folder / 'encoder.pth'}: input size {height}x{width} is not a multiple of 32")
        estimator = cls(encoder, decoder, height, width, min_depth, max_depth, device, compile, kernels)
        estimator.checkpoint = folder
        estimator.depth_encoder = extras["depth_encoder"]
        return estimator

    def _disparity(self, images: torch.Tensor) -> torch.Tensor:
        """``B x 3 x height x width`` -> the network's sigmoid disparity ``B x 1 x height x width``."""
        return self._decoder(self._encoder(images.contiguous(memory_format=torch.channels_last)))[("disp", 0)]

    @torch.inference_mode()
    def disparity_batch(self, images: torch.Tensor, post_process: bool = False) -> torch.Tensor:
        """Scaled disparity of a batch at the network size.

        Args:
            images: ``B x 3 x height x width`` RGB in [0, 1] (any device).
            post_process: also run the mirrored images and blend
                (:func:`post_process_disparity`).

        Returns:
            ``B x 1 x height x width`` scaled disparity (``1 / depth``) on the
            estimator's device.
        """
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != (self.height, self.width):
            raise GasMonoError(
                f"expected images B x 3 x {self.height} x {self.width}, got {tuple(images.shape)}"
            )
        images = images.to(self.device, non_blocking=True)
        if post_process:
            images = torch.cat([images, torch.flip(images, dims=[3])], dim=0)
        scaled, _ = disp_to_depth(self._network(images), self.min_depth, self.max_depth)
        if post_process:
            half = scaled.shape[0] // 2
            scaled = post_process_disparity(scaled[:half], scaled[half:])
        return scaled

    def _check_image(self, image: np.ndarray) -> None:
        if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            shape = getattr(image, "shape", None)
            dtype = getattr(image, "dtype", type(image).__name__)
            raise GasMonoError(f"expected an H x W x 3 uint8 RGB image, got shape {shape} and dtype {dtype}")

    def predict_disparity(self, image: np.ndarray, post_process: bool = False) -> np.ndarray:
        """Scaled disparity of one image at its own resolution.

        Args:
            image: ``H x W x 3`` uint8 RGB.

        Returns:
            ``H x W`` float32 scaled disparity (``1 / depth``).
        """
        self._check_image(image)
        tensor = prepare_image(Image.fromarray(image), self.height, self.width).unsqueeze(0)
        disp = self.disparity_batch(tensor, post_process)[0, 0].cpu().numpy()
        return resize_disparity(disp, image.shape[0], image.shape[1])

    def predict(self, image: np.ndarray, post_process: bool = False) -> np.ndarray:
        """Depth of one image at its own resolution.

        Args:
            image: ``H x W x 3`` uint8 RGB.

        Returns:
            ``H x W`` float32 depth in metres up to an unknown scale (the
            network is self-supervised and monocular).
        """
        return 1.0 / self.predict_disparity(image, post_process)
