"""Test setup: safe XLA flags before any JAX computation (see ``jaxmarl_coop.runtime``)."""

from jaxmarl_coop.runtime import configure_xla

configure_xla()
