"""Named experiments, one per valid grid point, served to Hydra on demand.

``experiment=automotive_hcrl_sa_classifier_gat_student_standard_all_samples`` selects a config that
lists only what differs from the defaults: the five grid groups. There are hundreds of points;
keeping them in Hydra's ConfigStore made every help and listing call deep-copy all of them
(``--help`` took ~40 s), so this config source generates each one when Hydra asks for it. Hydra
finds it, and the search-path entry that points at it, through the ``hydra_plugins`` namespace
package (``src/hydra_plugins/kdgat_experiments``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource

from kdgat.grid import GridPoint, all_points

GROUP = "experiment"
GROUP_DIMENSIONS = ("dataset", "model", "size", "distillation", "mode")
SEARCH_PATH = "kdgat://experiments"


@lru_cache(maxsize=1)
def _points() -> dict[str, GridPoint]:
    return {point.name: point for point in all_points()}


def experiment_config(point: GridPoint) -> dict:
    """The experiment config of a grid point: overrides of the five grid groups."""
    return {"defaults": [{f"override /{dim}": getattr(point, dim)} for dim in GROUP_DIMENSIONS]}


class ExperimentSource(ConfigSource):
    """A Hydra config source holding the ``experiment`` group (scheme ``kdgat://``)."""

    @staticmethod
    def scheme() -> str:
        return "kdgat"

    def _name(self, config_path: str) -> Optional[str]:
        config_path = config_path[:-5] if config_path.endswith(".yaml") else config_path
        group, _, name = config_path.partition("/")
        return name if group == GROUP and name in _points() else None

    def load_config(self, config_path: str) -> ConfigResult:
        from omegaconf import OmegaConf

        name = self._name(config_path)
        if name is None:
            raise ConfigLoadError(f"no experiment {config_path!r}; `kdgat grid` lists the valid points")
        return ConfigResult(config=OmegaConf.create(experiment_config(_points()[name])),
                            path=f"{self.scheme()}://{self.path}", provider=self.provider,
                            header={"package": "_global_"})

    def available(self) -> bool:
        return True

    def is_group(self, config_path: str) -> bool:
        return config_path in ("", GROUP)

    def is_config(self, config_path: str) -> bool:
        return self._name(config_path) is not None

    def list(self, config_path: str, results_filter: Optional[ObjectType]) -> list[str]:
        if config_path == "" and results_filter in (None, ObjectType.GROUP):
            return [GROUP]
        if config_path == GROUP and results_filter in (None, ObjectType.CONFIG):
            return sorted(_points())
        return []
