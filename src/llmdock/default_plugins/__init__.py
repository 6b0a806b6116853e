"""llmdock's own built-ins, each module a plugin registered through the same hooks as a third-party package.

One module per concern; ``DEFAULT_PLUGINS`` lists them once, and ``llmdock.plugins.load_plugins`` registers
them before any ``llmdock.plugins`` entry point. A new built-in stage, backend, detector or metric
is a class in its own package plus one line in one of these modules.
"""

DEFAULT_PLUGINS = (
    "llmdock.default_plugins.backends",
    "llmdock.default_plugins.core_stages",
    "llmdock.default_plugins.cache",
    "llmdock.default_plugins.guards",
    "llmdock.default_plugins.structured",
    "llmdock.default_plugins.metrics",
    "llmdock.default_plugins.rag",
    "llmdock.default_plugins.job_steps",
    "llmdock.default_plugins.datasets",
)

__all__ = ["DEFAULT_PLUGINS"]
