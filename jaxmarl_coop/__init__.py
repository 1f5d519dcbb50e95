"""jaxmarl_coop: multi-agent reinforcement learning in JAX, one jitted program per run."""

__version__ = "0.1.0"
