"""Hydra plugins of kdgat: the ``kdgat://`` config source of named experiments, and its search path."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from kdgat.config.experiments import SEARCH_PATH, ExperimentSource

__all__ = ["ExperimentSource", "KdgatSearchPathPlugin"]


class KdgatSearchPathPlugin(SearchPathPlugin):
    """Adds the experiments source to every Hydra app's search path (it only answers for
    ``experiment/...``, so other apps are unaffected)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="kdgat", path=SEARCH_PATH)
