"""The registered search variants. A variant is one module here, whose class registers itself with
utils.search.variant.register_variant, plus its line below; plain DARTS is the base class itself."""
from utils.search.variant import VARIANTS
from utils.search.variants import complexity, dadarts  # noqa: F401  (registers them)

__all__ = ["VARIANTS"]
