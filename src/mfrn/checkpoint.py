"""The mfrn checkpoint format: one file with the weights, the resolved config, the preprocessing, an
optional calibration (how scores become verdicts) and, while training, the training state.

A low layer: ``train/`` writes checkpoints through it and ``inference/`` reads them, and it imports
nothing above ``io_utils`` and ``weights``. Saved atomically (a kill never leaves a half-written
file); loaded with ``weights_only=True``; a file that is not an mfrn checkpoint, is truncated, or holds
another model gets a clear error that names the file.

The calibration entry (``payload["calibration"]``, see :class:`Calibration`) is written at the end
of training from the validation split; a checkpoint without one is used with the threshold 0.5, and
the inference core says so.
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from mfrn import __version__
from mfrn.io_utils import atomic_write_bytes
from mfrn.weights import WeightsError

FORMAT = "mfrn-checkpoint-v1"
CALIBRATION_KEY = "calibration"
DEFAULT_THRESHOLD = 0.5  # the verdict threshold of a checkpoint that stores no calibration


class CheckpointError(WeightsError):
    """A checkpoint that cannot be used, with the file and the reason in the message."""


@dataclass(frozen=True)
class Calibration:
    """How a detector's scores become verdicts, chosen on validation data (issue 8, item 3).

    - ``threshold``: a face or file whose P(fake) is >= it is called fake. When ``temperature`` is set,
      P(fake) is the temperature-scaled probability, so the threshold must be chosen on those.
    - ``rule``: how the threshold was chosen, in words; printed with every verdict
      (for example ``"EER point on the validation split (412 real, 412 fake faces)"``).
    - ``temperature``: the two class logits are divided by it before the softmax (None: not fitted).
    - ``pixel_threshold``: a region-map value >= it marks a pixel as manipulated (the outline the
      overlays draw); None when no pixel threshold was learned.
    - ``pixel_rule``: how ``pixel_threshold`` was chosen (required with it).
    - ``image_threshold``: the threshold for a single image, when ``threshold`` was chosen on videos
      (a video's score is the mean over its frames, a photo's is one face's: the same share of false
      alarms needs a higher threshold on one face); None: ``threshold`` serves images too.
    - ``image_rule``: how ``image_threshold`` was chosen (required with it).
    - ``tta_flip``: the validation faces were scored with flip TTA (the protocol's ``tta_flip``): the
      thresholds fit scores made the same way (the ``Detector`` warns when its protocol differs).
    """

    threshold: float
    rule: str
    temperature: float | None = None
    pixel_threshold: float | None = None
    pixel_rule: str | None = None
    image_threshold: float | None = None
    image_rule: str | None = None
    tta_flip: bool = False

    def __post_init__(self) -> None:
        def number(value, name: str) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"calibration.{name} must be a finite number, got {value!r}")
            return float(value)

        if not 0.0 <= number(self.threshold, "threshold") <= 1.0:
            raise ValueError(f"calibration.threshold must be in [0, 1], got {self.threshold!r}")
        if not isinstance(self.rule, str) or not self.rule.strip():
            raise ValueError("calibration.rule must say how the threshold was chosen (a non-empty string)")
        if self.temperature is not None and number(self.temperature, "temperature") <= 0.0:
            raise ValueError(f"calibration.temperature must be > 0, got {self.temperature!r}")
        if self.pixel_threshold is not None:
            if not 0.0 <= number(self.pixel_threshold, "pixel_threshold") <= 1.0:
                raise ValueError(f"calibration.pixel_threshold must be in [0, 1], got {self.pixel_threshold!r}")
            if not isinstance(self.pixel_rule, str) or not self.pixel_rule.strip():
                raise ValueError("calibration.pixel_rule must say how the pixel threshold was chosen")
        if self.image_threshold is not None:
            if not 0.0 <= number(self.image_threshold, "image_threshold") <= 1.0:
                raise ValueError(f"calibration.image_threshold must be in [0, 1], got {self.image_threshold!r}")
            if not isinstance(self.image_rule, str) or not self.image_rule.strip():
                raise ValueError("calibration.image_rule must say how the image threshold was chosen")
        if not isinstance(self.tta_flip, bool):
            raise ValueError(f"calibration.tta_flip must be true or false, got {self.tta_flip!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain floats and strings (loadable with ``weights_only=True``, writable as JSON)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str | Path = "calibration") -> "Calibration":
        """The inverse of :meth:`to_dict`; a bad entry raises :class:`CheckpointError` naming ``source``."""
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: the calibration entry is not a mapping (got {type(data).__name__})")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"{source}: unknown calibration field(s) {unknown}; known: {sorted(known)}")
        try:
            return cls(**data)
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"{source}: bad calibration entry ({error})") from None

    def describe(self) -> str:
        """One line for the console and the reports."""
        text = f"verdict threshold {self.threshold:.4g} on P(fake) ({self.rule})"
        if self.image_threshold is not None:
            text += f"; single images at {self.image_threshold:.4g} ({self.image_rule})"
        if self.temperature is not None:
            text += f"; temperature {self.temperature:.4g} applied to the logits"
        if self.pixel_threshold is not None:
            text += f"; region outline at {self.pixel_threshold:.4g} ({self.pixel_rule})"
        if self.tta_flip:
            text += "; learned on flip-TTA scores"
        return text

    def threshold_for(self, kind: str | None) -> float:
        """The verdict threshold of a file of ``kind`` ("image", "video"; None: a video's)."""
        return self.image_threshold if kind == "image" and self.image_threshold is not None else self.threshold

    def rule_for(self, kind: str | None) -> str:
        return self.image_rule if kind == "image" and self.image_threshold is not None else self.rule


def read_calibration(payload: dict[str, Any], source: str | Path = "checkpoint") -> Calibration | None:
    """The checkpoint's calibration, or None when it stores none (older checkpoints)."""
    entry = payload.get(CALIBRATION_KEY)
    return None if entry is None else Calibration.from_dict(entry, source)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` with the format marker and the package version, atomically.

    A :class:`Calibration` under ``"calibration"`` is stored as its dict."""
    payload = {"format": FORMAT, "mfrn_version": __version__, **payload}
    if isinstance(payload.get(CALIBRATION_KEY), Calibration):
        payload[CALIBRATION_KEY] = payload[CALIBRATION_KEY].to_dict()
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickled module, not a torch file at all
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable mfrn checkpoint ({text}); is it truncated or from another tool?") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not an mfrn checkpoint (no '{FORMAT}' marker); plain weights for a backbone go to "
            "model.pretrained_file instead"
        )
    for key in ("model", "config"):
        if key not in payload:
            raise CheckpointError(f"{path}: checkpoint has no '{key}' entry")
    return payload


def set_calibration(path: Path, calibration: Calibration | None) -> None:
    """Store ``calibration`` in an existing checkpoint (None removes it), atomically."""
    payload = load_checkpoint(path)
    if calibration is None:
        payload.pop(CALIBRATION_KEY, None)
    else:
        payload[CALIBRATION_KEY] = calibration.to_dict()
    payload.pop("format", None)
    payload.pop("mfrn_version", None)
    save_checkpoint(path, payload)


def load_model_state(model: torch.nn.Module, state: dict, path: Path | str) -> None:
    """Strict load with a readable error: which keys are missing, unexpected or mis-shaped."""
    from mfrn.weights import load_strict

    try:
        load_strict(model, state, path, optional_suffixes=())
    except WeightsError as error:
        raise CheckpointError(f"{error} (is it a checkpoint of another model or config?)") from None
