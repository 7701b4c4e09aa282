"""``takeover train``: train an SB3 agent on a ``takeover/*`` env into a safe checkpoint.

Settings come from ``TrainConfig`` defaults, then an optional YAML file (``-c``), then
``key=value`` overrides, e.g.::

    takeover train env_id=takeover/CutIn-v2 total_timesteps=100000 out=runs/cutin
    takeover train action_type=continuous seed=3 env.vehicles=30
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape


def train(
    overrides: list[str] = typer.Argument(None, help="key=value overrides of TrainConfig"),
    config: Path = typer.Option(None, "--config", "-c", help="YAML file with TrainConfig keys"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="SB3 progress bar"),
) -> None:
    """Train PPO (discrete) or SAC (continuous); writes config.yaml, checkpoint/, eval/, tb/."""
    from rich.console import Console

    from takeover.agents.train import TrainConfig
    from takeover.agents.train import train as run
    from takeover.config import ConfigError, apply_overrides, from_dict, load_yaml

    console = Console()
    err = Console(stderr=True, soft_wrap=True)  # one line per message, paths whole
    try:
        data = load_yaml(config) if config is not None else {}
        data = apply_overrides(data, list(overrides or []))
        data.setdefault("progress_bar", progress)
        cfg = from_dict(TrainConfig, data)
    except ConfigError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    from takeover.folders import FolderError, claimed

    try:
        with claimed(cfg.out, resumable=False):  # never overwrite an earlier run
            path = run(cfg)
    except FolderError as e:
        err.print(f"[red]error:[/red] {escape(str(e))} (set out=NEW_FOLDER)")
        raise typer.Exit(2) from None
    console.print(f"checkpoint: [bold]{escape(str(path))}[/bold]  (config: {escape(str(Path(cfg.out) / 'config.yaml'))})")
