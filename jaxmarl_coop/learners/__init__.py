"""Learners and the pieces they share (evaluation, ...). They use only the ``Env`` contract."""
