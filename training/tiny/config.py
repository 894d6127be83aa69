"""Sizes of the tiny model, in one place (training/README.md explains the choice with flops.py's numbers)."""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class VideoConfig:
    frame_size: int = 128           # pixels, square
    spatial_stride: int = 8         # TAEHV / Wan VAE
    temporal_stride: int = 4
    latent_channels: int = 16

    @property
    def latent_size(self) -> int:
        return self.frame_size // self.spatial_stride


@dataclass(frozen=True)
class DecoderConfig:
    """TAEHV decoder structure (Reel's TinyDecoder): channels of its four stages, time upscale [1, 2, 2]."""
    channels: tuple = (64, 32, 24, 16)
    latent_channels: int = 16


@dataclass(frozen=True)
class EncoderConfig:
    """Training-only encoder (4 frames -> 1 latent frame); not shipped."""
    channels: tuple = (32, 64, 96, 128)
    latent_channels: int = 16


@dataclass(frozen=True)
class TextConfig:
    """umT5 encoder (Wan's t5.py / transformers UMT5EncoderModel)."""
    vocabulary: int = 0             # from the tokenizer
    dim: int = 128
    heads: int = 4
    head_dim: int = 32
    ffn: int = 384
    layers: int = 3
    buckets: int = 32
    max_distance: int = 128
    max_tokens: int = 32            # captions are far shorter; Reel truncates at 512


@dataclass(frozen=True)
class DiTConfig:
    """Causal Wan DiT (Wan key layout). head_dim 64 so Reel's detection (dim % 64) agrees with 'heads'."""
    dim: int = 192
    ffn: int = 768
    heads: int = 3
    layers: int = 8
    in_channels: int = 16
    out_channels: int = 16
    freq_dim: int = 256
    text_dim: int = 128
    # Cross-attention attends to text_len rows: the prompt's tokens, then zero rows (Wan pads to 512). With
    # 512 a freshly trained model sees ~15 caption keys among ~500 identical pad keys and learns its text
    # conditioning slowly (the first GPU run drew backgrounds but no objects); 32 rows hold every caption.
    # Reel reads it from dit.safetensors' "text_len" metadata.
    text_len: int = 32
    patch: int = 2
    eps: float = 1e-6


@dataclass(frozen=True)
class ScheduleConfig:
    """LongLive's streaming schedule (REFERENCE.md section 2)."""
    frames_per_block: int = 3
    sink_frames: int = 3
    attention_frames: int = 12       # sink included
    shift: float = 5.0
    steps: tuple = (1000, 750, 500, 250)   # warped to t = [1000, 937.5, 833.33, 625]

    @property
    def window_frames(self) -> int:
        return self.attention_frames - self.sink_frames


@dataclass(frozen=True)
class TinyConfig:
    video: VideoConfig = field(default_factory=VideoConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    text: TextConfig = field(default_factory=TextConfig)
    dit: DiTConfig = field(default_factory=DiTConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


def warped_timesteps(steps=(1000, 750, 500, 250), shift=5.0, train_steps=1000):
    """LongLive's warp_denoising_step over FlowMatchScheduler(shift, sigma_min=0, extra_one_step=True):
    returns (timesteps, sigmas), e.g. ([1000, 937.5, 833.33, 625], [1, .9375, .8333, .625])."""
    import numpy as np
    s = (1.0 - np.arange(train_steps, dtype=np.float64) / train_steps).astype(np.float32)
    table = (np.float32(shift) * s / (1 + (np.float32(shift) - 1) * s)).astype(np.float32)
    sig = [float(table[train_steps - k]) if k else 0.0 for k in steps]
    return [float(np.float32(x) * np.float32(train_steps)) for x in sig], sig
