"""Weight loading for the reconstructors: see ``mfrn.weights`` (one implementation for all networks)."""

from mfrn.weights import WeightsError as CheckpointError
from mfrn.weights import conversion_hint, load_state_dict_file, load_strict

__all__ = ["CheckpointError", "conversion_hint", "load_state_dict_file", "load_strict"]
