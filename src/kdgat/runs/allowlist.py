"""Only kdgat, torch, torch_geometric and lightning ``_target_``s are instantiated from saved configs.

A config.yaml is data: one edited to call ``os.system`` (or any other callable) must not run it.
"""

from __future__ import annotations

ALLOWED_PREFIXES = ("kdgat.", "torch.", "torch_geometric.", "lightning.")


class DisallowedTarget(ValueError):
    """A ``_target_`` outside the allow-list."""


def check_targets(node, where: str = "config") -> None:
    """Raise :class:`DisallowedTarget` for any ``_target_`` not under ``ALLOWED_PREFIXES``.

    Args:
        node: a config (DictConfig, dict or list), walked recursively without resolving it.
        where: the file or name to mention in the message.
    """
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=False)
    stack = [("", node)]
    while stack:
        key, value = stack.pop()
        if isinstance(value, dict):
            target = value.get("_target_")
            if target is not None and not (isinstance(target, str) and target.startswith(ALLOWED_PREFIXES)):
                raise DisallowedTarget(
                    f"{where}: refusing to instantiate _target_ {target!r} at {key or '<root>'}: "
                    f"only targets under {', '.join(p.rstrip('.') for p in ALLOWED_PREFIXES)} are allowed")
            stack.extend((f"{key}.{k}" if key else str(k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{key}[{i}]", v) for i, v in enumerate(value))
