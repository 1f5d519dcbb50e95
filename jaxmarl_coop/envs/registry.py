"""Versioned environment ids: ``make("spread-v3", num_agents=3)`` -> ``(env, params)``.

Keyword arguments are split between the env's constructor (static: shapes, counts, action
type) and its params (traced: anything in ``default_params()``); an unknown keyword is a
``ValueError`` that lists both.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from typing import Any

from jaxmarl_coop.envs.core import Env

_ID = re.compile(r"^[A-Za-z0-9_.\-]+-v\d+$")
_REGISTRY: dict[str, Callable[..., Env]] = {}
#: env id -> {name: factory(env) -> policy(key, timestep) -> actions}
_REFERENCES: dict[str, dict[str, Callable[[Env], Callable[..., Any]]]] = {}


def register(env_id: str, factory: Callable[..., Env], *, overwrite: bool = False) -> None:
    """Register an env class (or any callable returning an ``Env``) under ``name-vN``."""
    if not _ID.match(env_id):
        raise ValueError(f"env id must look like 'name-vN' (e.g. 'spread-v3'), got {env_id!r}")
    if env_id in _REGISTRY and not overwrite:
        raise ValueError(f"env id {env_id!r} is already registered (pass overwrite=True)")
    _REGISTRY[env_id] = factory


def unregister(env_id: str) -> None:
    """Remove a registered id (e.g. a user env registered for one experiment)."""
    if env_id not in _REGISTRY:
        raise ValueError(f"unknown env id {env_id!r}; registered ids: {', '.join(registered())}")
    del _REGISTRY[env_id]
    _REFERENCES.pop(env_id, None)


def registered() -> list[str]:
    """Every registered id, sorted."""
    return sorted(_REGISTRY)


def _constructor_args(factory: Callable[..., Env]) -> list[str]:
    target = factory.__init__ if inspect.isclass(factory) else factory
    return [p.name for p in inspect.signature(target).parameters.values()
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def known(env_id: str) -> bool:
    """Whether ``make`` takes ``env_id``: a registered id, or ``jaxmarl:NAME`` (an adapted
    JaxMARL env, ``envs/jaxmarl.py``; ``make`` checks NAME)."""
    return env_id in _REGISTRY or (isinstance(env_id, str) and env_id.startswith("jaxmarl:"))


def make(env_id: str, **kwargs: Any) -> tuple[Env, Any]:
    """Build a registered env and its params; see the module docstring for ``kwargs``.
    ``jaxmarl:NAME`` builds JaxMARL's env NAME with ``kwargs``, adapted (``envs/jaxmarl.py``,
    the optional extra ``[jaxmarl]``)."""
    if isinstance(env_id, str) and env_id.startswith("jaxmarl:"):
        from jaxmarl_coop.envs.jaxmarl import make_jaxmarl

        return make_jaxmarl(env_id, **kwargs)
    if env_id not in _REGISTRY:
        raise ValueError(f"unknown env id {env_id!r}; registered ids: {', '.join(registered())}")
    factory = _REGISTRY[env_id]
    static = _constructor_args(factory)
    env = factory(**{k: v for k, v in kwargs.items() if k in static})
    env.name = env_id
    params = env.default_params()
    field_names = [f.name for f in dataclasses.fields(params)]
    unknown = sorted(set(kwargs) - set(static) - set(field_names))
    if unknown:
        raise ValueError(f"{env_id} has no option {', '.join(map(repr, unknown))}; "
                         f"constructor options: {', '.join(static)}; "
                         f"params: {', '.join(field_names)}")
    updates = {k: v for k, v in kwargs.items() if k in field_names and k not in static}
    params = params.replace(**updates) if updates else params
    check = getattr(env, "check_params", None)
    if check is not None:  # params valid alone may still not fit this env's shapes
        check(params)
    return env, params


def register_reference_policy(env_id: str, name: str, factory: Callable[..., Any]) -> None:
    """Register a scripted policy an env's learners are compared with.

    ``factory(env)`` or ``factory(env, params)`` returns a ``Policy`` (``envs.policy``)
    (the second form for policies that need the env's params, e.g. to read a clock).
    ``experiments.train`` evaluates and plots every registered one next to the learner.
    """
    if env_id not in _REGISTRY:
        raise ValueError(f"unknown env id {env_id!r}; registered ids: {', '.join(registered())}")
    if not callable(factory):
        raise ValueError(f"reference policy {name!r} of {env_id}: factory must be callable, "
                         f"got {factory!r}")
    _REFERENCES.setdefault(env_id, {})[name] = factory


def _takes_params(factory: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


def reference_policies(env: Env | str) -> dict[str, Callable[[Env, Any], Callable[..., Any]]]:
    """An env's (or env id's) registered reference policies by name, each as
    ``factory(env, params) -> Policy``. The uniformly random policy is not
    among them (it is ``envs.random_policy`` for every env)."""
    env_id = env if isinstance(env, str) else env.name
    out = {}
    for name, factory in _REFERENCES.get(env_id, {}).items():
        if _takes_params(factory):
            out[name] = factory
        else:
            out[name] = lambda env, params, factory=factory: factory(env)
    return out
