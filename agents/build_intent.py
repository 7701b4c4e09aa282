"""Build the shipped ``novice-intent``: the PPO novice distilled into an intent agent
(``takeover.agents.intent.distill_novice``)::

    python -m takeover.agents.build_intent --out agents/pretrained/novice-intent

(about 3 min on one core: 30 episodes of each of six envs, 53k labels, 200 epochs).
A module of its own because it loads the teacher through ``agents.checkpoint``, which
loads intent agents: ``agents.intent`` itself must not import it back."""

from __future__ import annotations

import json

import torch

from takeover.agents.checkpoint import load_agent
from takeover.agents.intent import distill_novice, save_intent_agent


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m takeover.agents.build_intent",
                                 description="Distil a shipped agent into an intent agent.")
    ap.add_argument("--out", required=True, help="checkpoint folder to write")
    ap.add_argument("--teacher", default="novice", help="shipped agent or checkpoint folder")
    ap.add_argument("--episodes", type=int, default=30, help="episodes per env")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--members", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    agent = distill_novice(load_agent(a.teacher), episodes=a.episodes, epochs=a.epochs,
                           members=a.members, seed=a.seed)
    save_intent_agent(agent, a.out)
    print(json.dumps(agent.metadata["distill"], indent=2))


if __name__ == "__main__":
    main()
