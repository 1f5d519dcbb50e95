"""Named and tuned settings, in one place: what ``experiments.train --preset``, ``sweep``, the
benchmarks and the tests start from.

Two kinds of settings live here:

- **Learner defaults** (:data:`LEARNER_DEFAULTS`): per registered learner name, the config
  fields and hyperparameters it starts from before the user's overrides (``mappo`` is the
  actor-critic family with a PPO loss and a centralised critic, ...). The learner registry
  (``jaxmarl_coop.learners.registry``) reads them.
- **Train presets** (:data:`TRAIN_PRESETS`): named runs for the tasks we ship, as the fields
  of a ``RunConfig`` (``jaxmarl_coop.runs.RunConfig``); the command line's options override
  them (``--preset spread-mappo --seeds 2``).

Values are plain Python (numbers, strings, tuples), so this module imports nothing of ours.
"""

from __future__ import annotations

from typing import Any

# --------------------------------------------------------------------------------------------
# learner defaults: config fields and hyperparameters before the user's overrides
# --------------------------------------------------------------------------------------------
#: the DQN family's replay and target settings (IQL, VDN, QMIX)
DQN_DEFAULT_CONFIG: dict[str, Any] = {"num_envs": 16, "rollout_length": 4, "buffer_size": 50_000,
                                      "batch_size": 128, "learning_starts": 5_000,
                                      "target_update_interval": 50}
DQN_DEFAULT_HP: dict[str, Any] = {"lr": 1e-3, "gamma": 0.95, "epsilon_decay_fraction": 0.3}

#: learner name -> (config fields, hyperparameters); hysteretic learning is a
#: hyperparameter of tabular_q, dqn, vdn and qmix (``hysteretic_beta=0.1``)
LEARNER_DEFAULTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "mappo": ({"algorithm": "ppo", "critic": "centralised"}, {"lr": 2e-3}),
    "ippo": ({"algorithm": "ppo", "critic": "local"}, {"lr": 2e-3}),
    "maa2c": ({"algorithm": "a2c", "critic": "centralised", "rollout_length": 16}, {"lr": 1e-3}),
    "ia2c": ({"algorithm": "a2c", "critic": "local", "rollout_length": 16}, {"lr": 1e-3}),
    "dqn": (DQN_DEFAULT_CONFIG, DQN_DEFAULT_HP),
    "vdn": ({**DQN_DEFAULT_CONFIG, "mixer": "vdn"}, DQN_DEFAULT_HP),
    "qmix": ({**DQN_DEFAULT_CONFIG, "mixer": "qmix"}, DQN_DEFAULT_HP),
    "tabular_q": ({}, {}),
}

# --------------------------------------------------------------------------------------------
# train presets: RunConfig fields of the named runs (``--preset NAME``)
# --------------------------------------------------------------------------------------------
#: small Q-learners for the stateless matrix games (gamma 0: every round is one game)
MATRIX_Q_RUN_CONFIG = ("num_envs=4", "rollout_length=1", "buffer_size=400", "batch_size=32",
                       "learning_starts=64", "target_update_interval=10", "hidden=16")
MATRIX_Q_RUN_HP = ("lr=0.003", "gamma=0", "epsilon_decay_fraction=0.5")

TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    "tracking-mappo": {},
    "tracking-ippo": {"learner": "ippo"},
    "tracking-dqn": {"learner": "dqn", "env_steps": 2_000_000},
    "spread-mappo": {"env": "spread-v3", "env_steps": 3_000_000, "seeds": 8,
                     "hp": ("lr=0.001", "ent_coef=0.06"),
                     "config": ("num_envs=16", "rollout_length=128", "hidden=64,64",
                                "activation=tanh")},
    "spread-dqn": {"learner": "dqn", "env": "spread-v3", "env_steps": 2_000_000, "seeds": 8},
    "tag-mappo": {"env": "tag-v3", "env_param": ("prey_policy=scripted",),
                  "env_steps": 2_000_000},
    "penalty-tabular": {"learner": "tabular_q", "env": "penalty-v1", "env_param": ("k=-25",),
                        "seeds": 16, "env_steps": 200_000, "gif": False},
    "climbing-tabular": {"learner": "tabular_q", "env": "climbing-v1", "seeds": 16,
                         "env_steps": 200_000, "gif": False},
    "climbing-hysteretic": {"learner": "tabular_q", "env": "climbing-v1", "seeds": 16,
                            "env_steps": 200_000, "hp": ("hysteretic_beta=0.1",),
                            "gif": False},
    "penalty-vdn": {"learner": "vdn", "env": "penalty-v1", "env_param": ("k=-25",),
                    "seeds": 16, "env_steps": 4_800, "chunks": 4,
                    "config": MATRIX_Q_RUN_CONFIG, "hp": MATRIX_Q_RUN_HP, "gif": False},
    "penalty-hysteretic-vdn": {"learner": "vdn", "env": "penalty-v1",
                               "env_param": ("k=-25",), "seeds": 16, "env_steps": 4_800,
                               "chunks": 4, "config": MATRIX_Q_RUN_CONFIG,
                               "hp": (*MATRIX_Q_RUN_HP, "hysteretic_beta=0.1"), "gif": False},
    "spread-vdn": {"learner": "vdn", "env": "spread-v3", "env_steps": 2_000_000, "seeds": 8},
    "spread-qmix": {"learner": "qmix", "env": "spread-v3", "env_steps": 2_000_000, "seeds": 8},
    "load-balancing-mappo": {"env": "load-balancing-v1", "env_steps": 1_000_000,
                             "config": ("rollout_length=100",)},
    "load-balancing-qmix": {"learner": "qmix", "env": "load-balancing-v1",
                            "env_steps": 1_000_000},
    "intersection-mappo": {"env": "intersection-v1", "env_steps": 1_000_000,
                           "config": ("rollout_length=100",)},
    "intersection-qmix": {"learner": "qmix", "env": "intersection-v1", "env_steps": 1_000_000},
    "grid-tracking-tabular": {"learner": "tabular_q", "env": "grid-tracking-v1",
                              "env_steps": 1_000_000},
}

# --------------------------------------------------------------------------------------------
# benchmark settings (experiments/benchmarks/): the tuned settings of each study
# --------------------------------------------------------------------------------------------
# The studies' own tables (which variants, envs, budgets; JaxMARL's configs matched item by
# item) stay in their scripts; what is here is what they tune and share, and what a user
# would start a run from. The published results were measured with exactly these values.

#: hysteretic learners: negative TD errors learn at this fraction of the rate (``mechanisms``;
#: the ``*-hysteretic`` train presets use the same)
HYSTERETIC_BETA = 0.1

# --- actor-critic: learn_actor_critic (MAPPO, IPPO, MAA2C, IA2C), mechanisms' MAPPO ---------
#: PPO settings (MAPPO and IPPO, both tasks): the lead's single-seed tuning on spread.
PPO_CONFIG: dict[str, Any] = {"num_envs": 16, "rollout_length": 128, "num_epochs": 4,
                              "num_minibatches": 4, "hidden": (64, 64), "activation": "tanh",
                              "anneal_lr": True}
PPO_HP: dict[str, Any] = {"lr": 1e-3, "ent_coef": 0.01, "gamma": 0.99, "gae_lambda": 0.95,
                          "clip_eps": 0.2, "vf_coef": 0.5, "max_grad_norm": 0.5}
#: On spread, PPO (MAPPO and IPPO) explores more: entropy 0.06, from MAPPO runs of the
#: spread-mappo preset (8 seeds x 3 M steps, greedy team return over 1024 episodes):
#: ent_coef 0.005 -40.0, 0.01 -35.9, 0.02 -33.7, 0.04 -30.1, 0.06 -29.6, 0.10 -30.2.
PPO_HP_BY_ENV: dict[str, dict[str, Any]] = {"spread-v3": {"ent_coef": 0.06}}
#: A2C settings (one gradient step on each, smaller, rollout), from a small lr grid.
A2C_CONFIG: dict[str, Any] = {"num_envs": 16, "rollout_length": 16, "hidden": (64, 64),
                              "activation": "tanh", "anneal_lr": True}
A2C_HP: dict[str, Any] = {"ent_coef": 0.01, "gamma": 0.99, "gae_lambda": 0.95, "vf_coef": 0.5,
                          "max_grad_norm": 0.5}
#: A2C learning rates from a grid on spread (16 x 16, 3M steps, 1-3 seeds, greedy team
#: return): MAA2C 1e-3 -53.8, 2e-3 -50.7, 4e-3 -47.7 (3 seeds), 8e-3 -57; IA2C 1e-3 -51.5,
#: 2e-3 -49.8 (3 seeds), 4e-3 -52.3, 6e-3 -53.
MAA2C_HP: dict[str, Any] = {"lr": 4e-3, **A2C_HP}
IA2C_HP: dict[str, Any] = {"lr": 2e-3, **A2C_HP}

# --- tabular Q on the matrix games: learn_independent, mechanisms ---------------------------
#: Tabular Q hyperparameters shared by every setting (stateless repeated game: gamma = 0).
TABULAR_HP: dict[str, Any] = {"alpha": 0.1, "gamma": 0.0, "q_init": 0.0}
#: The exploration settings compared (epsilon falls linearly, then stays at its end value).
TABULAR_EXPLORATION: dict[str, dict[str, Any]] = {
    "eps 1->0.05 over 50%": {"epsilon_start": 1.0, "epsilon_end": 0.05,
                             "epsilon_decay_fraction": 0.5},
    "eps 1->0 over 10%": {"epsilon_start": 1.0, "epsilon_end": 0.0,
                          "epsilon_decay_fraction": 0.1},
}
#: mechanisms' tabular learners: TABULAR_HP's alpha and gamma (its q_init is the learner's
#: default) with the first exploration setting, epsilon falling over the first half
MATRIX_TABULAR_HP: dict[str, Any] = {"alpha": TABULAR_HP["alpha"], "gamma": TABULAR_HP["gamma"],
                                     **TABULAR_EXPLORATION["eps 1->0.05 over 50%"]}


# --- Q-learners on the matrix games: mechanisms ---------------------------------------------
def _from_pairs(pairs: tuple[str, ...], cast: Any = int, **casts: Any) -> dict[str, Any]:
    """``("num_envs=4", "hidden=16")`` -> ``{"num_envs": 4, "hidden": ...}``: each value
    through ``casts[name]``, else ``cast``."""
    out = {}
    for pair in pairs:
        name, value = pair.split("=", 1)
        out[name] = casts.get(name, cast)(value)
    return out


def _ints(value: str) -> tuple[int, ...]:
    return tuple(int(v) for v in value.split(","))


#: small IQL / VDN / QMIX on the stateless matrix games (gamma 0): the numbers of the train
#: presets' MATRIX_Q_RUN_CONFIG and MATRIX_Q_RUN_HP (penalty-vdn), with the fields those
#: leave to the DQN config's defaults written out, so the benchmark does not drift with them
MATRIX_Q_CONFIG: dict[str, Any] = {**_from_pairs(MATRIX_Q_RUN_CONFIG, hidden=_ints),
                                   "num_epochs": 1, "n_step": 1, "double_dqn": True,
                                   "share_params": True, "anneal_lr": False}
MATRIX_Q_HP: dict[str, Any] = {**_from_pairs(MATRIX_Q_RUN_HP, cast=float),
                               "epsilon_start": 1.0, "epsilon_end": 0.05, "tau": 1.0,
                               "max_grad_norm": 10.0}
MATRIX_QMIX_MIXER: dict[str, Any] = {"mixer_embed": 8, "hypernet_hidden": 16}
#: MAPPO on the matrix games: 8 envs x 25 rounds per update, gamma 0
MATRIX_PPO_CONFIG: dict[str, Any] = {"num_envs": 8, "rollout_length": 25, "num_epochs": 4,
                                     "num_minibatches": 2, "hidden": (32,), "activation": "tanh",
                                     "anneal_lr": True}
MATRIX_PPO_HP: dict[str, Any] = {"lr": 3e-3, "gamma": 0.0, "gae_lambda": 0.95, "ent_coef": 0.01}

# --- Q-learners on the particle tasks and applications: mechanisms, learn_independent ------
#: one Q-learning config for IQL, VDN and QMIX: JaxMARL's Q-learning defaults on MPE
#: (``ql_rnn_mpe.yaml``: 8 envs x 26 steps per update, a buffer of 5000 and batches of 32
#: trajectories of 26 steps), feed-forward networks
Q_CONFIG: dict[str, Any] = {"num_envs": 8, "rollout_length": 26, "buffer_size": 5000 * 26,
                            "batch_size": 32 * 26, "learning_starts": 10_000, "num_epochs": 1,
                            "target_update_interval": 200, "n_step": 1, "double_dqn": True,
                            "share_params": True, "hidden": (64, 64), "anneal_lr": True}
Q_HP: dict[str, Any] = {"lr": 0.005, "gamma": 0.9, "epsilon_start": 1.0, "epsilon_end": 0.05,
                        "epsilon_decay_fraction": 0.1, "tau": 1.0, "max_grad_norm": 25.0}
QMIX_MIXER: dict[str, Any] = {"mixer_embed": 32, "hypernet_hidden": 128}  # as ql_rnn_mpe.yaml
#: ``--quick``: a small buffer, learning after the first two updates (416 env steps)
Q_QUICK: dict[str, Any] = {"buffer_size": 2080, "batch_size": 64, "learning_starts": 416,
                           "target_update_interval": 4}
#: learn_independent's DQN, matched item by item to JaxMARL IQL's defaults: the same settings
DQN_MATCHED: dict[str, Any] = dict(Q_CONFIG)
DQN_HP: dict[str, Any] = dict(Q_HP)
DQN_QUICK: dict[str, Any] = dict(Q_QUICK)
#: recurrent IQL matched to JaxMARL's GRU Q-network (Dense 64 -> GRU 64 -> Dense): whole
#: 26-step sequences from the stored hidden state without burn-in, 32 of them (832
#: transitions) per gradient step as its 32 trajectories; ours keeps a 64-wide hidden layer in
#: the head (a head needs one), theirs is linear
DQN_RNN_MATCHED: dict[str, Any] = {**Q_CONFIG, "recurrent": True, "rnn_hidden": 64,
                                   "hidden": (64,), "sequence_length": 26, "burn_in": 0,
                                   "batch_size": 32}
