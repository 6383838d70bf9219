"""``taskloop rlhf …``: the learning loop's commands (simulated ratings, the reward model,
PPO, direct preference training, the labelling queue). Each command is a thin call into
its module; this file only assembles them."""

from __future__ import annotations

import typer

from taskloop.cliutil import EPILOG
from taskloop.rlhf.active_cli import queue_command
from taskloop.rlhf.direct_cli import direct_command
from taskloop.rlhf.ppo_cli import ppo_command
from taskloop.rlhf.reward_cli import reward_command
from taskloop.rlhf.simulate_cli import simulate_command

app = typer.Typer(
    name="rlhf",
    help=(
        "Learn from feedback: rate stored answers with heuristic checks (simulate), train "
        "a reward model (reward), fine-tune a task model with PPO (ppo) or directly from "
        "preferences (dpo), and queue ambiguous inputs for people to label (queue). "
        "docs/learning-loop.md walks through the loop."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.command("simulate", epilog=EPILOG)(simulate_command)
app.command("reward", epilog=EPILOG)(reward_command)
app.command("ppo", epilog=EPILOG)(ppo_command)
app.command("dpo", epilog=EPILOG)(direct_command)
app.command("queue", epilog=EPILOG)(queue_command)
