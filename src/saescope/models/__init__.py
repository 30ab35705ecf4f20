"""Loading causal LMs, hook sites per architecture family, capture and intervention hooks."""

from saescope.models.families import FAMILIES, Family, family_for, register_family
from saescope.models.hooks import capture_sites, edit_sites, run_with_cache
from saescope.models.loading import DEFAULT_MODEL, load_model
from saescope.models.model import LanguageModel
from saescope.models.sites import SITE_KINDS, Site

__all__ = [
    "DEFAULT_MODEL",
    "FAMILIES",
    "SITE_KINDS",
    "Family",
    "LanguageModel",
    "Site",
    "capture_sites",
    "edit_sites",
    "family_for",
    "load_model",
    "register_family",
    "run_with_cache",
]
