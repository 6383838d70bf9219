"""Errors of the learning loop (feedback data, reward model, PPO/DPO, active learning,
retraining), with stable codes."""

from __future__ import annotations

from taskloop.errors import ExitStatus, TaskloopError


class RLHFError(TaskloopError):
    """Base of the learning loop's errors."""

    code = "rlhf.error"
    exit_status = ExitStatus.USAGE


class FeedbackDataError(RLHFError):
    """Feedback rows (an export, a preference file, the store) are missing or malformed;
    the message names the file and line."""

    code = "rlhf.feedback_data"
    exit_status = ExitStatus.CORRUPT


class RewardModelError(RLHFError):
    """A reward model cannot be trained, loaded or used (no pairs, wrong head)."""

    code = "rlhf.reward_model"


class PolicyError(RLHFError):
    """A policy cannot be optimised (kind not seq2seq/causal, no prompts, bad settings)."""

    code = "rlhf.policy"


class ActiveLearningError(RLHFError):
    """Candidates for the labelling queue cannot be scored or queued."""

    code = "rlhf.active"


class RetrainError(RLHFError):
    """A trigger rule, a retraining job or the champion/challenger gate failed."""

    code = "rlhf.retrain"
