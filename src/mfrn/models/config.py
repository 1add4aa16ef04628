"""Configuration of the detectors (MFRN and the SBI baseline); defaults follow method.md §5-6."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelConfig:
    """Everything needed to build a detector; every MFRN part has a switch for the ablation.

    Inputs to every detector are float RGB tensors in [0, 1], shape (B, 3, H, W); the model
    normalises them itself with the backbone's mean/std (``normalize_input``), so the data
    pipeline never needs to know the backbone.
    """

    name: str = "mfrn"  # "mfrn" | "baseline" (registry name, see mfrn.models.MODELS)
    backbone: str = "efficientnet_b4"  # any timm model name that supports features_only
    # timm weights (online), or ``pretrained_file`` when given; set False when a detector
    # checkpoint will overwrite the weights anyway (inference, resume)
    pretrained: bool = True
    # local weights file (.pth/.safetensors, the timm classifier's state dict), read only when
    # ``pretrained``; every backbone tensor must come from it or building fails
    pretrained_file: str | None = None
    input_size: int = 380
    # () = the backbone levels at strides 4/8/16/32; else explicit timm out_indices
    out_indices: tuple[int, ...] = ()
    # interpretation: SBI feeds [0,1] to its own weights; timm weights need their own mean/std
    normalize_input: bool = True
    # interpretation: EfficientNet-PyTorch's B4 defaults as SBI used them (dropout 0.4, drop-connect 0.2)
    dropout: float = 0.4
    drop_path_rate: float = 0.2
    # --- MFRN switches (ignored by the baseline) ---
    use_noise_stream: bool = True
    use_edge_stream: bool = True
    use_attention: bool = True  # multi-head self-attention over the deepest fused tokens
    use_decoder: bool = True  # region + boundary maps; False -> classifier only
    multi_scale: bool = True  # False -> deepest scale only
    # --- MFRN widths ---
    noise_channels: tuple[int, ...] = (16, 32, 64, 128)  # noise features per level, shallow -> deep
    edge_channels: int = 16
    fused_channels: tuple[int, ...] = (64, 96, 128, 256)  # fused features per level, shallow -> deep
    decoder_channels: int = 64
    channel_attention: str = "se"  # "se" | "eca" | "none"
    attention_heads: int = 8
    attention_layers: int = 1
    # interpretation: SRM residuals are taken on 0..255 intensities so the [-3,3] clip is the
    # steganalysis truncation; the clipped residual is then divided by srm_clip
    srm_input_scale: float = 255.0
    srm_clip: float = 3.0
