"""gpufleet.economics: an exact off-chain model of the Epoch 3 staking protocol.

The ledger (``ledger.Ledger``) reproduces the ``context-labs/inference-staking`` program's rules,
check order and integer rounding; ``merkle`` builds the per-epoch reward records it verifies;
``emissions`` and ``distribution`` decide how much each pool earns; ``points`` keeps off-chain
points. See docs/economics.md.
"""

from gpufleet.economics.errors import EconomicsError
from gpufleet.economics.ledger import Ledger
from gpufleet.economics.state import Settings

__all__ = ["EconomicsError", "Ledger", "Settings"]
