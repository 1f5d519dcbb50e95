"""Pure functional multi-agent environments with a leading agent axis."""

from jaxmarl_coop.envs.core import Env, TimeStep, checked, random_policy
from jaxmarl_coop.envs.grid_tracking import GridTracking, GridTrackingParams
from jaxmarl_coop.envs.matrix_games import (
    Climbing,
    ClimbingParams,
    MatrixGame,
    Penalty,
    PenaltyParams,
    PrisonersDilemma,
    PrisonersDilemmaParams,
)
from jaxmarl_coop.envs.registry import make, register, registered
from jaxmarl_coop.envs.spaces import Box, Discrete
from jaxmarl_coop.envs.spread import Spread, SpreadParams
from jaxmarl_coop.envs.tag import Tag, TagParams
from jaxmarl_coop.envs.tracking import Tracking, TrackingParams, greedy_chase_policy
from jaxmarl_coop.envs.wrappers import AgentID, AutoReset, EpisodeStats, VecEnv, wrap

register("spread-v3", Spread)
register("tag-v3", Tag)
register("tracking-v1", Tracking)
register("climbing-v1", Climbing)
register("penalty-v1", Penalty)
register("prisoners-dilemma-v1", PrisonersDilemma)
register("grid-tracking-v1", GridTracking)

__all__ = [
    "AgentID", "AutoReset", "Box", "Climbing", "ClimbingParams", "Discrete", "Env",
    "EpisodeStats", "GridTracking", "GridTrackingParams", "MatrixGame", "Penalty",
    "PenaltyParams", "PrisonersDilemma", "PrisonersDilemmaParams", "Spread", "SpreadParams",
    "Tag", "TagParams", "TimeStep", "Tracking", "TrackingParams", "VecEnv", "checked",
    "greedy_chase_policy", "make", "random_policy", "register", "registered", "wrap",
]
