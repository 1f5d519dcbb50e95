"""Pure functional multi-agent environments with a leading agent axis."""

from jaxmarl_coop.envs.core import Env, TimeStep, checked, random_policy
from jaxmarl_coop.envs.registry import make, register, registered
from jaxmarl_coop.envs.spaces import Box, Discrete
from jaxmarl_coop.envs.spread import Spread, SpreadParams
from jaxmarl_coop.envs.tag import Tag, TagParams
from jaxmarl_coop.envs.tracking import Tracking, TrackingParams, greedy_chase_policy
from jaxmarl_coop.envs.wrappers import AgentID, AutoReset, EpisodeStats, VecEnv, wrap

register("spread-v3", Spread)
register("tag-v3", Tag)
register("tracking-v1", Tracking)

__all__ = [
    "AgentID", "AutoReset", "Box", "Discrete", "Env", "EpisodeStats", "Spread",
    "SpreadParams", "Tag", "TagParams", "TimeStep", "Tracking", "TrackingParams", "VecEnv",
    "checked", "greedy_chase_policy", "make", "random_policy", "register", "registered", "wrap",
]
