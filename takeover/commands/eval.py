"""``takeover eval``: success / collision / off-road rates and mean speed of an agent over N
seeds per scenario, with 95% bootstrap confidence intervals."""

from __future__ import annotations

import json
import shutil

import typer


def eval_agent(
    agent: str = typer.Argument("novice", help="shipped name, checkpoint directory or SB3 zip"),
    scenario: list[str] = typer.Option(None, "--scenario", "-s",
                                       help="env id (repeatable); default: plain, mixed "
                                            "and every hazard"),
    seeds: int = typer.Option(50, help="episodes (seeds 0..N-1) per scenario"),
    seed0: int = typer.Option(0, help="first seed"),
    trust_sb3_zip: bool = typer.Option(False, "--trust-sb3-zip",
                                       help="allow SB3 .zip files (they contain pickled code)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Evaluate an agent on the takeover scenarios."""
    from rich.console import Console

    from takeover.agents import CheckpointError, load_agent
    from takeover.agents.evaluate import evaluate, render_table
    from takeover.envs import ENV_IDS, HAZARD_IDS

    console = Console(width=max(110, shutil.get_terminal_size().columns))
    env_ids = list(scenario or ["takeover/Plain-v1", "takeover/Highway-v1", *HAZARD_IDS])
    bad = [e for e in env_ids if e not in ENV_IDS]
    if bad:
        console.print(f"[red]error:[/red] unknown scenario {bad[0]!r}; valid: "
                      f"{', '.join(ENV_IDS)}")
        raise typer.Exit(2)
    if seeds < 1:
        console.print("[red]error:[/red] --seeds must be at least 1")
        raise typer.Exit(2)
    try:
        a = load_agent(agent, trust_sb3_zip=trust_sb3_zip)
    except CheckpointError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    results = evaluate(a, env_ids, n_seeds=seeds, seed0=seed0)
    if as_json:
        print(json.dumps({e: {m: vars(v) for m, v in r.items()} for e, r in results.items()},
                         indent=2))
    else:
        console.print(render_table(results, title=f"{agent}: {seeds} seeds per scenario"))
