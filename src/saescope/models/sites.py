"""Hook-site names, as the models layer exports them.

The grammar itself lives in the shared leaf ``saescope._sites`` because ``sae/`` reads site names
from SAE metadata too and must not import ``models/``.
"""

from saescope._sites import SITE_KINDS, Site

__all__ = ["SITE_KINDS", "Site"]
