"""Typed settings with one explicit source order: defaults < llmdock.yaml < LLMDOCK_* env < CLI flags.

``load_settings`` builds them; a bad config raises ``ConfigError`` naming file, line and field.
"""

from llmdock.config.batch_settings import BatchSettings
from llmdock.config.models import (
    ROUTING_FIELDS,
    BreakerConfig,
    DeploymentConfig,
    ModelConfig,
    Price,
    Timeouts,
    builtin_models,
)
from llmdock.config.sections import (
    DEFAULT_PHONE_REGIONS,
    DEFAULT_PII_ENTITIES,
    AuthSettings,
    CacheSettings,
    GuardMatch,
    GuardPolicyOverride,
    GuardSettings,
    PrivacySettings,
    PromptSettings,
    RagSettings,
    RetentionSettings,
    TraceSettings,
)
from llmdock.config.settings import DEFAULT_CONFIG_FILE, Settings, find_config_file, load_settings
from llmdock.config.yaml_source import config_error_from_pydantic, load_yaml_file

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_PHONE_REGIONS",
    "DEFAULT_PII_ENTITIES",
    "ROUTING_FIELDS",
    "AuthSettings",
    "BatchSettings",
    "BreakerConfig",
    "CacheSettings",
    "DeploymentConfig",
    "GuardMatch",
    "GuardPolicyOverride",
    "GuardSettings",
    "ModelConfig",
    "Price",
    "PrivacySettings",
    "PromptSettings",
    "RagSettings",
    "RetentionSettings",
    "Settings",
    "Timeouts",
    "TraceSettings",
    "builtin_models",
    "config_error_from_pydantic",
    "find_config_file",
    "load_settings",
    "load_yaml_file",
]
