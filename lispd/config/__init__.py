"""``lispd.conf``: TOML parsed into a validated, immutable :class:`Config`.

>>> config = load_config("/etc/lispd/lispd.conf")      # doctest: +SKIP
>>> config.has_role("itr"), config.tun.mtu, config.rloc_v4   # doctest: +SKIP

Every problem raises :class:`ConfigError`, whose ``str`` is ``FILE:LINE: KEY.PATH: message``.
``lispd.conf.example`` (an xTR) and ``lispd.conf.example.msmr`` (a Map-Server/Map-Resolver) at
the top of the repository document every key between them.

Modules: :mod:`~lispd.config.model` (the dataclasses), :mod:`~lispd.config.schema` (the
schema primitives), :mod:`~lispd.config.sections` (the schema of each section),
:mod:`~lispd.config.rules` (rules across sections), :mod:`~lispd.config.locate` (key -> line),
:mod:`~lispd.config.loader` (the entry points).
"""

from lispd.config.errors import ConfigError
from lispd.config.loader import load_config, parse_config
from lispd.config.model import (
    KEY_IDS,
    LOG_LEVELS,
    MAP_CACHE_ACTIONS,
    ROLES,
    Config,
    DaemonConfig,
    IPAddress,
    IPNetwork,
    LimitsConfig,
    Mapping,
    MappingSystemConfig,
    MapServerRef,
    MetricsConfig,
    NatTraversalConfig,
    ProbingConfig,
    RegistrationConfig,
    ResolverConfig,
    Rloc,
    RtrConfig,
    Site,
    SitePrefix,
    TunConfig,
    UnderlayConfig,
)
from lispd.config.schema import key_paths
from lispd.config.sections import ROOT

__all__ = [
    "KEY_IDS",
    "LOG_LEVELS",
    "MAP_CACHE_ACTIONS",
    "ROLES",
    "ROOT",
    "Config",
    "ConfigError",
    "DaemonConfig",
    "IPAddress",
    "IPNetwork",
    "LimitsConfig",
    "MapServerRef",
    "Mapping",
    "MappingSystemConfig",
    "MetricsConfig",
    "NatTraversalConfig",
    "ProbingConfig",
    "RegistrationConfig",
    "ResolverConfig",
    "Rloc",
    "RtrConfig",
    "Site",
    "SitePrefix",
    "TunConfig",
    "UnderlayConfig",
    "key_paths",
    "load_config",
    "parse_config",
]
