"""Only kdgat, torch, torch_geometric and lightning ``_target_``s are instantiated from saved configs.

A config.yaml is data: one edited to call ``os.system`` (or any other callable) must not run it.
Nor may it reach one *through* an allowed package: ``torch.os.system`` starts with ``torch.`` but
Hydra resolves it attribute by attribute to ``os.system`` (``torch`` imports ``os``), so a name
that passes the prefix test is also resolved and refused if it leads outside the allowed packages.
"""

from __future__ import annotations

import functools
import importlib
import inspect

ALLOWED_PREFIXES = ("kdgat.", "torch.", "torch_geometric.", "lightning.")
ALLOWED_PACKAGES = tuple(p.rstrip(".") for p in ALLOWED_PREFIXES)


class DisallowedTarget(ValueError):
    """A ``_target_`` outside the allow-list."""


def _allowed_module(name) -> bool:
    return isinstance(name, str) and (name in ALLOWED_PACKAGES or name.startswith(ALLOWED_PREFIXES))


@functools.lru_cache(maxsize=None)
def _escape(target: str) -> str | None:
    """Where resolving ``target`` as Hydra does (import, then attribute by attribute) leaves the
    allowed packages, e.g. ``'os.system'`` for ``torch.os.system``; ``None`` if it stays inside
    (or cannot be resolved, which instantiation then reports by itself)."""
    parts = target.split(".")
    try:
        obj = importlib.import_module(parts[0])
    except Exception:
        return None
    for index, part in enumerate(parts[1:], start=1):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            try:
                obj = importlib.import_module(".".join(parts[: index + 1]))
            except Exception:
                return None
        if inspect.ismodule(obj):
            owner, name = obj.__name__, obj.__name__
        elif inspect.isclass(obj) or inspect.isroutine(obj):
            owner = getattr(obj, "__module__", None)
            name = f"{owner}.{getattr(obj, '__qualname__', part)}"
        else:
            continue
        if owner is not None and not _allowed_module(owner):
            return ".".join([name, *parts[index + 1:]])
    return None


def check_targets(node, where: str = "config", resolve: bool = True) -> None:
    """Raise :class:`DisallowedTarget` for any ``_target_`` not under ``ALLOWED_PREFIXES``, or one
    that resolves to an object defined outside them.

    Args:
        node: a config (DictConfig, dict or list), walked recursively without resolving it.
        where: the file or name to mention in the message.
        resolve: also resolve the names that pass the prefix test (imports their modules);
            ``False`` checks the prefixes only.
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=False)
    allowed = ", ".join(ALLOWED_PACKAGES)
    targets = []
    stack = [("", node)]
    while stack:
        key, value = stack.pop()
        if isinstance(value, dict):
            target = value.get("_target_")
            if target is not None:
                if not (isinstance(target, str) and target.startswith(ALLOWED_PREFIXES)):
                    raise DisallowedTarget(
                        f"{where}: refusing to instantiate _target_ {target!r} at {key or '<root>'}: "
                        f"only targets under {allowed} are allowed")
                targets.append((key, target))
            stack.extend((f"{key}.{k}" if key else str(k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{key}[{i}]", v) for i, v in enumerate(value))
    # Only names that pass the prefix test are resolved (which imports their modules).
    for key, target in targets if resolve else ():
        escape = _escape(target)
        if escape is not None:
            raise DisallowedTarget(
                f"{where}: refusing to instantiate _target_ {target!r} at {key or '<root>'}: "
                f"it resolves to {escape}, outside {allowed}")
