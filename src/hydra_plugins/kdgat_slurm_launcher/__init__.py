"""Hydra only instantiates launchers defined under the ``hydra_plugins`` package: this is the
``hydra/launcher=kdgat_slurm`` plugin class; the implementation is :mod:`kdgat.launch.launcher`."""

from kdgat.launch.launcher import KdgatSlurmLauncher as _Implementation


class KdgatSlurmLauncher(_Implementation):
    """One Slurm job array per ``-m`` sweep, configs frozen at submission (see kdgat.launch.launcher)."""
