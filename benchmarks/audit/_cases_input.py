"""placeholder"""

from _cases import CASES  # noqa: F401
