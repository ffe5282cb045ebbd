"""What a config may instantiate: exactly the callables that kdgat's own store generates.

A config.yaml is data. One edited (or planted in a shared runs root) to name ``os.system``, a
kdgat helper that runs commands or writes files, or ``torch.load`` must not run it. So the rule is
not "anything under these packages" but an allow-list of exact names, derived from the hydra-zen
store (:func:`allowed_targets`): a new model, dataset or settings class registered there extends it
with no second list to keep.

- Every ``_target_`` must be a plain string in that set (or named explicitly by the user, see
  below); anything else is refused, whether or not it would resolve.
- An interpolation or resolver inside ``_target_`` (``kdgat.${evil}``) is refused as written,
  never resolved.
- The config is checked as written *and* after resolution, so an interpolation elsewhere
  (``${oc.create:...}``) cannot produce a ``_target_`` that the first check never saw.

A user who truly wants an outside callable names it: ``allow_targets=[my.pkg.Callback]`` on
``kdgat-train``, ``kdgat reproduce RUN --allow-target my.pkg.Callback``. Such a name must resolve
(it is imported to check), and a saved config's own ``allow_targets`` is never trusted by
``reproduce`` or by teacher loading.
"""

from __future__ import annotations

import functools
from typing import Iterable


class DisallowedTarget(ValueError):
    """A ``_target_`` outside the allow-list."""


@functools.lru_cache(maxsize=1)
def allowed_targets() -> frozenset[str]:
    """Every ``_target_`` named by the configs of kdgat's store (Hydra's own groups excluded)."""
    from omegaconf import OmegaConf

    from kdgat.config.store import store

    names: set[str] = set()
    for entry in store:
        if (entry["group"] or "").split("/")[0] == "hydra":
            continue  # launcher and callback configs are Hydra's, never instantiated from a run
        node = OmegaConf.to_container(OmegaConf.create(entry["node"]), resolve=False)
        names.update(target for _, target in _targets(node))
    return frozenset(names)


def _targets(node, key: str = ""):
    """``(where, _target_)`` for every ``_target_`` in a plain container, depth first."""
    stack = [(key, node)]
    while stack:
        key, value = stack.pop()
        if isinstance(value, dict):
            if "_target_" in value:
                yield key or "<root>", value["_target_"]
            stack.extend((f"{key}.{k}" if key else str(k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{key}[{i}]", v) for i, v in enumerate(value))


def check_extra_targets(names: Iterable[str], where: str = "allow_targets") -> frozenset[str]:
    """Validate user-named outside targets: plain dotted names that resolve to a callable."""
    from hydra.utils import get_object

    extra = set()
    for name in names or ():
        if not isinstance(name, str) or "${" in name or not all(p.isidentifier() for p in name.split(".")):
            raise DisallowedTarget(f"{where}: {name!r} is not a dotted name like my_package.module.Callable")
        try:
            obj = get_object(name)
        except Exception as err:
            raise DisallowedTarget(f"{where}: {name!r} cannot be resolved ({type(err).__name__}: {err}); "
                                   "only importable callables can be allowed") from None
        if not callable(obj):
            raise DisallowedTarget(f"{where}: {name!r} resolves to a {type(obj).__name__}, not a callable")
        extra.add(name)
    return frozenset(extra)


def check_targets(node, where: str = "config", allow: Iterable[str] = ()) -> None:
    """Raise :class:`DisallowedTarget` unless every ``_target_`` in ``node`` is allowed.

    Args:
        node: a config (DictConfig, dict or list). Checked as written, then resolved and checked
            again (resolving runs OmegaConf's resolvers only, never a ``_target_``).
        where: the file or name to mention in the message.
        allow: outside targets the user named explicitly (validated by :func:`check_extra_targets`).
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf

    allowed = allowed_targets() | check_extra_targets(allow)
    written = node
    if isinstance(node, (DictConfig, ListConfig)):
        written = OmegaConf.to_container(node, resolve=False)
    _check(written, where, allowed)
    if isinstance(node, (DictConfig, ListConfig)):
        try:
            resolved = OmegaConf.to_container(node, resolve=True)
        except Exception as err:
            raise DisallowedTarget(f"{where}: cannot be resolved to check its _target_s "
                                   f"({type(err).__name__}: {err})") from None
        _check(resolved, f"{where} (resolved)", allowed)


def _check(node, where: str, allowed: frozenset[str]) -> None:
    for key, target in _targets(node):
        if isinstance(target, str) and "${" in target:
            reason = "an interpolation or resolver in a _target_ is never resolved"
        elif isinstance(target, str) and target in allowed:
            continue
        elif not isinstance(target, str):
            reason = "a _target_ must be a string"
        else:
            reason = "it is not one of the callables kdgat's configs instantiate"
        raise DisallowedTarget(
            f"{where}: refusing to instantiate _target_ {target!r} at {key}: {reason}. "
            f"To run an outside callable on purpose, name it: allow_targets=[NAME] on kdgat-train, "
            f"or kdgat reproduce RUN_DIR --allow-target NAME")
