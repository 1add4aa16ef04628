"""The temporal head's training ``Dataset``: each real clip of a prepared video and a fake clip made from it.

Items are ``pair_item``s with a time axis: images (2, T, 3, S, S), labels [0, 1], maps (2, T, S, S);
``collate_pairs`` stacks them into (2B, T, ...) batches. Randomness per item comes from
``default_rng((seed, epoch, index))`` as for frames, so a resumed run sees the same clips. A clip is
an RBI clip (every frame reconstructed, each with its own latent noise) with probability
``rbi.probability``, else an SBI clip; one frame without a reconstruction makes the whole clip an SBI.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mfrn.data.clips import ClipSample, clips_from_faces
from mfrn.data.manifest import Manifest
from mfrn.synth.clips import ClipBlender, ClipConfig
from mfrn.synth.dataset import PairDataset, select_faces
from mfrn.synth.rbi import RBIConfig


def select_clips(manifest: Manifest, split: str, clip_config: ClipConfig, val_fraction: float = 0.2,
                 faces_per_frame: str = "largest") -> list[ClipSample]:
    """Clips of real faces of one split (the faces ``select_faces`` allows, tracked into clips)."""
    faces = select_faces(manifest, (split,), val_fraction, 0, faces_per_frame).faces
    return clips_from_faces(faces, clip_config.length, clip_config.min_track_iou, clip_config.clips_per_video)


class ClipPairDataset(PairDataset):
    """(real clip, fake clip) pairs; a clip with a face SBI cannot blend is skipped up front, with the reason."""

    def __init__(
        self,
        clips: Sequence[ClipSample],
        sbi_config,
        clip_config: ClipConfig | None = None,
        rbi_config: RBIConfig | None = None,
        seed: int = 0,
        fixed_epoch: int | None = None,
        cache=None,
        reconstructor=None,
        augment: bool = True,
    ) -> None:
        if not clips:
            raise ValueError("no clips to train on: prepare videos with clips (mfrn prepare --clip-length T) "
                             "or consecutive frames")
        faces = [face for clip in clips for face in clip.faces]
        super().__init__(faces, sbi_config, rbi_config, seed, fixed_epoch, cache, reconstructor, augment)
        usable = {id(face) for face in self.faces}
        self.clips = [clip for clip in clips if all(id(face) in usable for face in clip.faces)]
        if not self.clips:
            raise ValueError(f"none of the {len(clips)} clips has every face usable by SBI "
                             f"(first skipped face: {self.skipped[0][0]}: {self.skipped[0][1]})")
        self.clip_blender = ClipBlender(sbi_config, clip_config)

    @classmethod
    def from_config(cls, clips, sbi_config, rbi_config: RBIConfig, prepared: Path, seed: int = 0,
                    fixed_epoch: int | None = None, device: str | None = None, augment: bool = True,
                    clip_config: ClipConfig | None = None) -> "ClipPairDataset":
        cache, reconstructor = cls.rbi_backends(rbi_config, prepared, device)
        return cls(clips, sbi_config, clip_config, rbi_config, seed, fixed_epoch, cache, reconstructor, augment)

    def __len__(self) -> int:
        return len(self.clips)

    def _unit(self, index: int):
        clip = self.clips[index]
        return clip.faces, clip.key, f"{clip.faces[0].root} clip {clip.key}"

    def _synthesize(self, images, landmarks, boxes, rng, sources):
        return self.clip_blender(images, landmarks, boxes, rng, sources=sources, augment=self.augment)
