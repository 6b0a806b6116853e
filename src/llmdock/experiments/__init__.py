"""A/B experiments on live traffic (issue 19).

``spec`` (variants, weights, matching, guard rails, parsed and checked), ``book`` (experiments in the store:
create, stop, conclude; audited), ``live`` (the in-memory table the gateway assigns from: sticky hashing, no
store read per request), ``watch`` (keeps a worker's table current, applies guard rails), ``guard_tally``
(the guard rails' per-variant counters, fed on the request path), ``results`` (per
variant facts from traces and feedback), ``sequential`` (the mSPRT test, beside z / Welch and power),
``report`` (``llmdock experiments status``, ``--auto``).
"""
