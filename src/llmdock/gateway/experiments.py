"""Assigning a generation request to an A/B experiment's variant, before its prompt and model are resolved.

A request takes part when it matches a running experiment (its template, asked for without a pinned version
or with the experiment's label; or its model; or its route). The variant's template version and model then
replace what the request named; the trace records ``llmdock.experiment`` / ``llmdock.experiment_variant``
and the answer carries ``x-llmdock-experiment: NAME/VARIANT``. Sticky ids: the request's ``user`` (else the
key's user), the ``x-llmdock-session`` header, the key id.
"""

from __future__ import annotations

from starlette.requests import Request

from llmdock.auth.service import Principal
from llmdock.experiments.live import Assignment
from llmdock.gateway.schemas import ChatCompletionBody, CompletionBody
from llmdock.runtime import Runtime

SESSION_HEADER = "x-llmdock-session"  # a conversation: sticky experiments, the memory stage
EXPERIMENT_HEADER = "x-llmdock-experiment"


def assign_variant(
    runtime: Runtime,
    request: Request,
    body: ChatCompletionBody | CompletionBody,
    principal: Principal | None,
    fallback: str,
) -> Assignment | None:
    """The variant this request gets (its body rewritten to it), or None when no experiment takes it."""
    watch = runtime.experiments
    if watch is None or watch.table.empty or body.prompt_version is not None:
        return None
    ids = {
        "user": body.user or (principal.user_id if principal else ""),
        "session": request.headers.get(SESSION_HEADER, ""),
        "key": principal.key_id if principal else "",
    }
    found = watch.table.assign(body.prompt_id, body.model, request.url.path, ids, fallback)
    if found is None or (body.prompt_label not in (None, found.experiment.label)):
        return None
    v = found.variant
    if v.registry is not None and v.model not in runtime.backends:  # a challenger still loading (or failed)
        return None
    if v.model is not None and principal is not None and not principal.may_use(v.model):
        return None  # the key may not use the variant's model: it stays out rather than being refused
    if v.prompt is not None:
        body.prompt_id, body.prompt_version, body.prompt_label = v.prompt, v.prompt_version, None
    if v.model is not None:
        body.model = v.model
    return found
