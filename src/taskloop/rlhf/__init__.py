"""The learning loop: feedback, simulated ratings, the reward model, PPO (issue 7)."""
