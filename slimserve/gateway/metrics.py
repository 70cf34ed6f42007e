"""Prometheus metrics of `route serve`, named for what they count (own registry, so several gateways coexist).

Cost saved is an estimate: for every answered request, the price of its tokens at the most expensive priced tier
minus their price at the tier that answered (a cache hit costs nothing). Prices are $/1M input and output tokens from
the catalog's measurements (local tiers) or the config's list prices (external tiers); a request answered by a tier
without a price is counted in `slimserve_gateway_unpriced_requests` instead. A cascade's discarded answers (the
weak tiers' tokens before an escalation) are paid for: they count in the cost, and on their own in
`slimserve_gateway_cascade_discarded_tokens` / `_cost_usd`.
"""

from __future__ import annotations


class GatewayMetrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = r = CollectorRegistry()
        self.http = Counter("slimserve_gateway_http_requests", "HTTP requests answered", ["endpoint", "status"],
                            registry=r)  # fmt: skip
        self.routed = Counter("slimserve_gateway_routed_requests", "requests a router (or the model name) sent to a "
                              "tier", ["router", "tier"], registry=r)  # fmt: skip
        self.answered = Counter("slimserve_gateway_tier_requests", "requests answered by each tier", ["tier"],
                                registry=r)  # fmt: skip
        self.failures = Counter("slimserve_gateway_tier_failures", "tier attempts that failed (error, timeout, 429, "
                                "unreachable, missing key)", ["tier", "reason"], registry=r)  # fmt: skip
        self.fallbacks = Counter("slimserve_gateway_fallbacks", "requests passed on to the next tier",
                                 ["from_tier", "to_tier"], registry=r)  # fmt: skip
        self.cache = Counter("slimserve_gateway_cache_lookups", "semantic cache lookups", ["result"], registry=r)
        self.tokens = Counter("slimserve_gateway_tokens", "tokens of answered requests", ["tier", "kind"], registry=r)
        self.cost = Counter("slimserve_gateway_cost_usd", "estimated cost of the answers at the tier that gave them",
                            registry=r)  # fmt: skip
        self.baseline = Counter("slimserve_gateway_baseline_cost_usd", "estimated cost had the most expensive tier "
                                "answered every request", registry=r)  # fmt: skip
        self.saved = Counter("slimserve_gateway_cost_saved_usd", "baseline cost minus cost (cache hits included)",
                             registry=r)  # fmt: skip
        self.unpriced = Counter("slimserve_gateway_unpriced_requests", "answers whose tier (or the baseline) has no "
                                "price, left out of the cost counters", ["tier"], registry=r)  # fmt: skip
        self.escalations = Counter("slimserve_gateway_cascade_escalations", "cascade answers not confident enough, "
                                   "passed on to the next tier", ["router", "from_tier", "to_tier"], registry=r)  # fmt: skip
        self.discarded = Counter("slimserve_gateway_cascade_discarded_tokens", "tokens of cascade answers thrown away "
                                 "on escalation", ["tier", "kind"], registry=r)  # fmt: skip
        self.discarded_cost = Counter("slimserve_gateway_cascade_discarded_cost_usd", "estimated cost of the "
                                      "discarded cascade answers (part of the cost counter)", registry=r)  # fmt: skip
        self.in_flight = Gauge("slimserve_gateway_requests_in_flight", "requests being answered or waiting",
                               registry=r)  # fmt: skip

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
