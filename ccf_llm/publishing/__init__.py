"""Publishing a trained run as a Hub model repository: folder, model card, Endpoint handler, upload."""

from .card import find_measured_row, model_card
from .folder import publish, save_model_folder, write_model_folder
from .hub import HubAccessError, check_hub_access

__all__ = [
    "HubAccessError",
    "check_hub_access",
    "find_measured_row",
    "model_card",
    "publish",
    "save_model_folder",
    "write_model_folder",
]
