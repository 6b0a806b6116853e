"""The web dashboard (issue 23), mounted by the gateway at ``/ui`` in the same process.

Server-rendered pages (Jinja templates in ``templates/``, autoescaped) with htmx and uPlot served from
``static/`` (vendored from npm; see ``static/NOTICE.md``): no CDN, no Node at run time. It reads from the
runtime's store and services (traces, feedback, the prompt registry, auth) and changes things only through
them (prompt labels, audited by the registry). ``session``: signing in with an API key, the session cookie,
CSRF; ``trace_query``: filters and keyset pages; ``trace_pages``, ``prompt_pages``, ``monitor_pages``: the
views; ``app``: the routes and the checks every page passes.

Below the gateway (which mounts it) and above the runtime; it knows Starlette but not FastAPI, and nothing
but the gateway imports it.
"""

from llmdock.ui.app import create_ui

__all__ = ["create_ui"]
