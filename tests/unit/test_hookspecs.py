"""Every hook llmdock calls is declared in hookspecs.py, so pluggy checks each implementation's signature
when it registers (a hook without a spec takes any signature and fails only when it is called)."""

from __future__ import annotations

import importlib

import pluggy
import pytest

from llmdock.datasets.steps.base import Step
from llmdock.default_plugins import DEFAULT_PLUGINS
from llmdock.hookspecs import LlmdockSpec, hookimpl
from llmdock.plugins import load_plugins


class WrongDatasetSteps:
    @hookimpl
    def llmdock_dataset_steps(self, settings: object) -> list[type[Step]]:  # no such argument in the spec
        return []


def test_a_dataset_steps_implementation_with_a_wrong_signature_is_refused_at_registration() -> None:
    with pytest.raises(pluggy.PluginValidationError, match="settings"):
        load_plugins(entry_points=False, extra=[WrongDatasetSteps()])


def test_every_hook_the_built_ins_implement_has_a_spec() -> None:
    pm = pluggy.PluginManager("llmdock")
    pm.add_hookspecs(LlmdockSpec)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    pm.check_pending()  # raises for an implementation of a hook that has no spec
    assert pm.hook.llmdock_dataset_steps.spec is not None
    assert load_plugins(entry_points=False).dataset_steps  # the built-in cleaning steps, through it
