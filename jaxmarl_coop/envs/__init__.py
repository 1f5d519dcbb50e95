"""Pure functional multi-agent environments with a leading agent axis."""

from jaxmarl_coop.envs.core import Env, TimeStep, checked, random_policy
from jaxmarl_coop.envs.cue import Cue, CueParams, cue_memory_policy, cue_memoryless_policy
from jaxmarl_coop.envs.grid_tracking import GridTracking, GridTrackingParams
from jaxmarl_coop.envs.intersection import (
    Intersection,
    IntersectionParams,
    always_go_policy,
    fixed_time_light_policy,
)
from jaxmarl_coop.envs.load_balancing import (
    LoadBalancing,
    LoadBalancingParams,
    coordinated_dispatch_policy,
    join_shortest_observed_queue_policy,
    join_shortest_queue_policy,
    round_robin_policy,
)
from jaxmarl_coop.envs.matrix_games import (
    Climbing,
    ClimbingParams,
    MatrixGame,
    Penalty,
    PenaltyParams,
    PrisonersDilemma,
    PrisonersDilemmaParams,
)
from jaxmarl_coop.envs.policy import Policy as Policy
from jaxmarl_coop.envs.policy import feed_forward as feed_forward
from jaxmarl_coop.envs.policy import reset_carry as reset_carry
from jaxmarl_coop.envs.registry import (
    make,
    reference_policies,
    register,
    register_reference_policy,
    registered,
)
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
register("load-balancing-v1", LoadBalancing)
register("intersection-v1", Intersection)
register("cue-v1", Cue)

register_reference_policy("tracking-v1", "greedy_chase", greedy_chase_policy)
register_reference_policy("load-balancing-v1", "round_robin", round_robin_policy)
register_reference_policy("load-balancing-v1", "join_shortest_observed_queue",
                          join_shortest_observed_queue_policy)
register_reference_policy("load-balancing-v1", "join_shortest_queue",
                          join_shortest_queue_policy)
register_reference_policy("load-balancing-v1", "coordinated_dispatch",
                          coordinated_dispatch_policy)
register_reference_policy("intersection-v1", "always_go", always_go_policy)
register_reference_policy("intersection-v1", "fixed_time_light", fixed_time_light_policy)
register_reference_policy("cue-v1", "memoryless", cue_memoryless_policy)
register_reference_policy("cue-v1", "memory", cue_memory_policy)

__all__ = [
    "AgentID",
    "AutoReset",
    "Box",
    "Climbing",
    "ClimbingParams",
    "Cue",
    "CueParams",
    "Discrete",
    "Env",
    "EpisodeStats",
    "GridTracking",
    "GridTrackingParams",
    "Intersection",
    "IntersectionParams",
    "LoadBalancing",
    "LoadBalancingParams",
    "MatrixGame",
    "Penalty",
    "PenaltyParams",
    "PrisonersDilemma",
    "PrisonersDilemmaParams",
    "Spread",
    "SpreadParams",
    "Tag",
    "TagParams",
    "TimeStep",
    "Tracking",
    "TrackingParams",
    "VecEnv",
    "always_go_policy",
    "checked",
    "coordinated_dispatch_policy",
    "cue_memory_policy",
    "cue_memoryless_policy",
    "fixed_time_light_policy",
    "greedy_chase_policy",
    "join_shortest_observed_queue_policy",
    "join_shortest_queue_policy",
    "make",
    "random_policy",
    "reference_policies",
    "register",
    "register_reference_policy",
    "registered",
    "round_robin_policy",
    "wrap",
]
