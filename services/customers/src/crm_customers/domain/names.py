"""Customer names: the normalisation lives in :mod:`crm_platform.company_names`, shared with the
leads service, whose duplicate check compares a lead's company with customers' names by the same key."""

from __future__ import annotations

from crm_platform.company_names import display_name, normalise_name

__all__ = ["display_name", "normalise_name"]
