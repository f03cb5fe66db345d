"""The registered search variants. A variant is one module here, whose class registers itself with
utils.search.variant.register_variant, plus its import line below; plain DARTS is the base class itself."""
from utils.search.variant import VARIANTS
# One line per variant module (each registers its class when imported):
from utils.search.variants import complexity  # noqa: F401
from utils.search.variants import dadarts  # noqa: F401
from utils.search.variants import pcdarts  # noqa: F401
from utils.search.variants import beta_darts  # noqa: F401
from utils.search.variants import darts_minus  # noqa: F401
from utils.search.variants import sdarts  # noqa: F401
from utils.search.variants import fairdarts  # noqa: F401

__all__ = ["VARIANTS"]
