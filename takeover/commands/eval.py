"""``takeover eval``: success / collision / off-road rates and mean speed of an agent over N
seeds per scenario, with 95% bootstrap confidence intervals."""

from __future__ import annotations

import json
import shutil

import typer
from rich.markup import escape


def resolve_env_id(name: str, env_ids: dict[str, str]) -> str:
    """The registered id for what a user typed: a full id (``takeover/CutIn-v2``), a short
    one as ``drive`` takes it (``CutIn-v2``), the id without its version (``CutIn``) or the
    scenario name (``cut_in``). ``env_ids`` maps id -> scenario (``takeover.envs.ENV_IDS``).
    Raises ``ConfigError`` naming the closest short id."""
    from takeover.config import ConfigError
    from takeover.registry import closest

    short = {i.split("/", 1)[-1]: i for i in env_ids}
    unversioned = {s.rsplit("-v", 1)[0].lower(): i for s, i in short.items()}
    by_scenario = {sc: i for i, sc in env_ids.items()}
    for table, key in ((env_ids, name), (short, name), (unversioned, name.lower()),
                       (by_scenario, name)):
        if key in table:
            return table[key] if table is not env_ids else key
    raise ConfigError(f"unknown scenario {name!r}.{closest(name, list(short))} Valid: "
                      f"{', '.join(short)} (or the scenario names {', '.join(by_scenario)})")


def eval_agent(
    agent: str = typer.Argument("novice", help="shipped name, checkpoint directory or SB3 zip"),
    scenario: list[str] = typer.Option(None, "--scenario", "-s", metavar="SCENARIO",
                                       help="scenario as drive takes it: CutIn-v2, "
                                            "takeover/CutIn-v2 or cut_in (repeatable); "
                                            "default: plain, mixed and every hazard"),
    seeds: int = typer.Option(50, help="episodes (seeds seed0..seed0+N-1) per scenario"),
    seed0: int = typer.Option(0, help="first seed (0..9999 for development; numbers you "
                                      "report: 1000000 upward, takeover.config.HELD_OUT_SEED)"),
    trust_sb3_zip: bool = typer.Option(False, "--trust-sb3-zip",
                                       help="allow SB3 .zip files (they contain pickled code)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Evaluate an agent on the takeover scenarios."""
    from rich.console import Console

    from takeover.agents import CheckpointError, load_agent
    from takeover.agents.evaluate import evaluate, render_table
    from takeover.config import ConfigError
    from takeover.envs import ENV_IDS, HAZARD_IDS

    console = Console(width=max(110, shutil.get_terminal_size().columns))
    err = Console(stderr=True, soft_wrap=True)  # one line per message, paths whole
    plain, mixed = (next(i for i, s in ENV_IDS.items() if s == sc) for sc in ("none", "mixed"))
    try:
        env_ids = [resolve_env_id(s, ENV_IDS) for s in scenario] if scenario else [
            plain, mixed, *HAZARD_IDS]
    except ConfigError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    if seeds < 1:
        err.print("[red]error:[/red] --seeds must be at least 1")
        raise typer.Exit(2)
    if seed0 < 0:  # numpy refuses negative seeds deep in the first reset (a traceback)
        err.print(f"[red]error:[/red] --seed0={seed0}: seeds are >= 0")
        raise typer.Exit(2)
    try:
        a = load_agent(agent, trust_sb3_zip=trust_sb3_zip)
    except CheckpointError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}")
        raise typer.Exit(2) from None
    results = evaluate(a, env_ids, n_seeds=seeds, seed0=seed0)
    if as_json:
        print(json.dumps({e: {m: vars(v) for m, v in r.items()} for e, r in results.items()},
                         indent=2))
    else:
        console.print(render_table(results, title=f"{agent}: {seeds} seeds per scenario"))
