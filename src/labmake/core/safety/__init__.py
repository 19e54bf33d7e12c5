"""Safety: a policy as data and the deterministic layer that applies it to text.

Generic text analysis, shared by the taxonomy check (seed examples that trip a detector) and
by the SDG pipelines' safety blocks (``labmake.sdg.blocks.safety``); the teacher's safety judge
lives with the blocks, since it needs a teacher.
"""

from labmake.core.safety.policy import SAFE, Category, Policy, PolicyError, load
from labmake.core.safety.scan import Hit, first_category, masked, normalise, scan

__all__ = [
    "SAFE",
    "Category",
    "Hit",
    "Policy",
    "PolicyError",
    "first_category",
    "load",
    "masked",
    "normalise",
    "scan",
]
