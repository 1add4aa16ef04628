"""Configuration of the detectors (MFRN and the SBI baseline); defaults follow method.md §5-6."""

from __future__ import annotations

from dataclasses import dataclass

from mfrn.models.pretrained import is_package_spec

HEAD_INITS = ("torch", "timm")


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
    # offline weights, read only when ``pretrained``: a local file (.pth/.safetensors, the timm
    # classifier's state dict) or ``package:NAME``, ImageNet weights shipped as a registry package
    # (mfrn.models.pretrained.WEIGHT_SOURCES: efficientnet_lite0..2 for tf_efficientnet_lite0..2,
    # mobilenet_v2 for mobilenetv2_100); every backbone tensor must come from it or building fails
    pretrained_file: str | None = None
    input_size: int = 380
    # () = the backbone levels at strides 4/8/16/32; else explicit timm out_indices
    out_indices: tuple[int, ...] = ()
    # interpretation: SBI feeds [0,1] to its own weights; timm weights need their own mean/std
    normalize_input: bool = True
    # interpretation: EfficientNet-PyTorch's B4 defaults as SBI used them (dropout 0.4, drop-connect 0.2)
    dropout: float = 0.4
    drop_path_rate: float = 0.2
    # interpretation: the baseline's new 2-way head starts as SBI's did (EfficientNet-PyTorch's nn.Linear,
    # default init, +-1/sqrt(fan_in)); "timm" keeps timm's init, which for EfficientNets scales by
    # 1/sqrt(fan_out) = +-0.71 for 2 classes and starts fine-tuning from logits of about +-10
    head_init: str = "torch"  # "torch" | "timm"
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
    # --- temporal head (mfrn.models.temporal): the frame detector above, shared over the T frames of a
    # clip, then a light model over time -> one clip logit. "off" = the paper's frame detector ---
    temporal: str = "off"  # "off" | "transformer" | "tcn"
    temporal_dim: int = 128  # width of the temporal model
    temporal_layers: int = 2  # transformer layers, or TCN blocks (dilations 1, 2, 4, ...)
    temporal_heads: int = 4  # transformer heads
    temporal_kernel: int = 3  # TCN kernel size over time (odd)
    temporal_max_length: int = 64  # longest clip the transformer's position table covers
    temporal_dropout: float = 0.1
    # per-frame inputs: the pooled deepest features (always), the predicted maps' statistics and the frame
    # logit (temporal_map_stats), and each input's change from the previous frame (temporal_deltas)
    temporal_map_stats: bool = True
    temporal_deltas: bool = True
    # train the head only, on a trained frame detector's frozen features (its checkpoint, an mfrn checkpoint
    # of this model's frame settings); False trains frame detector and head end to end
    temporal_freeze_frame: bool = False
    temporal_frame_checkpoint: str | None = None

    def __post_init__(self) -> None:
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"model.head_init must be one of {', '.join(HEAD_INITS)}, got {self.head_init!r}")
        if self.pretrained and is_package_spec(self.pretrained_file) and not self.normalize_input:
            raise ValueError(f"model.pretrained_file {self.pretrained_file} holds ImageNet weights trained on "
                             "normalised inputs: set model.normalize_input: true")
        if self.temporal not in TEMPORAL_MODELS:
            raise ValueError(f"model.temporal must be one of {', '.join(TEMPORAL_MODELS)}, got {self.temporal!r}")
        if self.temporal == "off":
            return
        if self.temporal_dim % self.temporal_heads:
            raise ValueError(f"model.temporal_dim {self.temporal_dim} is not divisible by model.temporal_heads "
                             f"{self.temporal_heads}")
        if self.temporal_kernel < 1 or self.temporal_kernel % 2 == 0:
            raise ValueError(f"model.temporal_kernel must be odd and >= 1, got {self.temporal_kernel}")
        if self.temporal_layers < 1 or self.temporal_max_length < 1:
            raise ValueError("model.temporal_layers and model.temporal_max_length must be >= 1")
        if self.temporal_freeze_frame and not self.temporal_frame_checkpoint:
            raise ValueError("model.temporal_freeze_frame needs model.temporal_frame_checkpoint: the trained frame "
                             "detector whose features the head learns on")


TEMPORAL_MODELS = ("off", "transformer", "tcn")
