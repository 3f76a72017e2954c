"""The sampling decision for one hop."""

from __future__ import annotations


def decide(upstream_decision: bool | None, debug: bool, local_decision: bool) -> bool:
    """Debug forces sampling; else an upstream decision is obeyed; else the hop's own decision (by request id).

    As Envoy's tracers: the sampled flag of the context read wins over the connection manager's decision.
    """
    if debug:
        return True
    if upstream_decision is not None:
        return upstream_decision
    return local_decision
