"""The check: analytical against numerical gradients, the backward's contract,
soundness rules, diagnosis, and the report as data."""
