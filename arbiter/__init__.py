"""The arbiter: the .arb policy language, the gate and the ledger."""
