"""Adapters that plug the judge into RL frameworks, one module per framework.

* :mod:`ray_judge.integrations.trl`: a reward function for TRL's ``GRPOTrainer``.
* :mod:`ray_judge.integrations.verl`: ``compute_score`` for verl's
  ``reward.custom_reward_function``.
* :mod:`ray_judge.integrations.openrlhf`: the reward server behind OpenRLHF's
  ``--reward.remote_url`` (``ray-judge serve-rm``).
* :mod:`ray_judge.integrations.slime`: ``rm`` / ``group_rm`` for slime's
  ``--custom-rm-path``.

Each imports its framework (if at all) only inside itself, so importing this package, or
``ray_judge``, never imports torch, transformers or any framework. All of them reach the
judge through :class:`ray_judge.JudgeClient` (one Ray call per batch the framework hands
over, resubmission when the judge restarts) and share :mod:`.reward`.
"""
