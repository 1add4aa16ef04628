"""Weight loading for the detector backends: see ``mfrn.weights`` (one implementation for all networks)."""

from mfrn.weights import WeightsError, default_device, load_state_dict_file, load_strict

__all__ = ["WeightsError", "default_device", "load_state_dict_file", "load_strict"]
