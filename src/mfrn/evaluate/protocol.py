"""The video protocol moved to the inference core (``mfrn.inference.protocol``): ``detect``, ``eval``
and the server all aggregate through it. This name stays so that older imports keep working."""

from mfrn.inference.protocol import (  # noqa: F401
    FACE_AGGREGATIONS,
    FRAME_AGGREGATIONS,
    ProtocolConfig,
    VideoScore,
    aggregate_faces,
    aggregate_frames,
    aggregate_video,
    keep_large_faces,
)
