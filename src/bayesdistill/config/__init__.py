"""Configs: a typed schema with defaults, YAML overrides, command-line overrides.

Only the CLI layer and the runners read configs; library code takes explicit arguments.
"""

from bayesdistill.config.loading import (
    apply_override,
    dump_config,
    format_validation_error,
    load_config,
    save_config,
)
from bayesdistill.config.schema import (
    NO_TEACHER,
    AugmentConfig,
    DataConfig,
    ExperimentConfig,
    LossConfig,
    LossTermConfig,
    ModelConfig,
    StudentConfig,
    SubsetConfig,
    TeacherKindConfig,
    TeacherNetworkConfig,
)

__all__ = [
    "NO_TEACHER",
    "AugmentConfig",
    "DataConfig",
    "ExperimentConfig",
    "LossConfig",
    "LossTermConfig",
    "ModelConfig",
    "StudentConfig",
    "SubsetConfig",
    "TeacherKindConfig",
    "TeacherNetworkConfig",
    "apply_override",
    "dump_config",
    "format_validation_error",
    "load_config",
    "save_config",
]
