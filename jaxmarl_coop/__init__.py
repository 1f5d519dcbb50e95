"""jaxmarl_coop: multi-agent reinforcement learning in JAX, one jitted program per run.

    from jaxmarl_coop import run, load_run, load_policy, RunConfig

``run(config)`` trains a team into a run folder, ``load_run(path)`` reads one back (no JAX),
``load_policy(path, which="final"|"best", seed=0)`` gives a trained team as
``(policy, env, env_params)``. Envs: ``jaxmarl_coop.envs.make``; learners:
``jaxmarl_coop.learners.registry.make_learner``.
"""

__version__ = "0.1.0"

__all__ = ["RunConfig", "load_policy", "load_run", "run"]


def __getattr__(name: str):  # lazily: importing the package must not start JAX
    if name in __all__:
        from jaxmarl_coop import runs

        return getattr(runs, name)
    raise AttributeError(f"module 'jaxmarl_coop' has no attribute {name!r}")
