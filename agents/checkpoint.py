"""The safe checkpoint format: a directory with a JSON manifest and one safetensors file.

SB3 ``.zip`` files hold cloudpickled objects, so opening an untrusted one can run code. A
takeover checkpoint holds only tensors (safetensors: no code, no pickle) and a manifest that
says how to rebuild the policies around them::

    novice/
        manifest.json                    spaces, architecture, algo, versions, sha256, ...
        weights.<sha256[:12]>.safetensors  members.<k>.<param>, risk.<param>, reference_obs

Loading reads the manifest, checks the weights file's size and sha256 *before* parsing it
(a truncated or tampered file is refused, naming the file), rebuilds the policies from the
manifest and loads the tensors strictly. Saving writes the new weights under a new name, then
atomically replaces the manifest (the commit point), then removes stale weights: a crash at
any moment leaves either the old or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from takeover.agents.policy import EnsembleAgent, PolicyAgent
from takeover.agents.risk import RiskCritic, RiskSpec
from takeover.atomic import atomic_write_bytes, atomic_write_text

FORMAT = "takeover-checkpoint"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class CheckpointError(ValueError):
    """A checkpoint cannot be loaded safely; the message names the file and the fix."""


# --- spaces ---------------------------------------------------------------------------------
def space_to_dict(space: spaces.Space) -> dict[str, Any]:
    """JSON form of a Box or Discrete space (uniform bounds stored as one number)."""
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.Box):

        def bound(a: np.ndarray) -> Any:
            flat = a.reshape(-1)
            return float(flat[0]) if np.all(flat == flat[0]) else a.tolist()

        return {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype),
                "low": bound(space.low), "high": bound(space.high)}
    raise CheckpointError(f"unsupported space {space}: only Box and Discrete can be saved")


def space_from_dict(d: dict[str, Any]) -> spaces.Space:
    if d.get("type") == "Discrete":
        return spaces.Discrete(int(d["n"]), start=int(d.get("start", 0)))
    if d.get("type") == "Box":
        shape = tuple(d["shape"])
        low = np.broadcast_to(np.asarray(d["low"], dtype=d["dtype"]), shape)
        high = np.broadcast_to(np.asarray(d["high"], dtype=d["dtype"]), shape)
        return spaces.Box(low.copy(), high.copy(), shape, dtype=np.dtype(d["dtype"]))
    raise CheckpointError(f"unknown space description {d!r}")


def check_spaces(agent: EnsembleAgent, env: Any) -> None:
    """Refuse an env whose observation or action space differs from the agent's, before any
    step, naming both spaces."""
    env_obs, env_act = env.observation_space, env.action_space
    problems = []
    if env_obs != agent.observation_space:
        problems.append(f"observation space: agent {agent.observation_space}, env {env_obs}")
    if env_act != agent.action_space:
        hint = ""
        if isinstance(agent.action_space, spaces.Discrete) and isinstance(env_act, spaces.Box):
            hint = " (make the env with action_type='discrete')"
        elif isinstance(agent.action_space, spaces.Box) and isinstance(env_act, spaces.Discrete):
            hint = " (make the env with action_type='continuous')"
        problems.append(f"action space: agent {agent.action_space}, env {env_act}{hint}")
    if problems:
        name = agent.metadata.get("name") or agent.metadata.get("path") or "agent"
        raise CheckpointError(f"{name} does not fit this env: " + "; ".join(problems))


# --- architecture -----------------------------------------------------------------------------
_ALGO_POLICY = {"PPO": "ActorCriticPolicy", "A2C": "ActorCriticPolicy", "SAC": "SACPolicy"}
_KWARGS = {
    "ActorCriticPolicy": ("net_arch", "activation_fn", "log_std_init", "ortho_init",
                          "share_features_extractor", "normalize_images"),
    "SACPolicy": ("net_arch", "activation_fn", "log_std_init", "use_expln", "clip_mean",
                  "n_critics", "share_features_extractor", "normalize_images"),
}


def _policy_class(name: str) -> type:
    if name == "ActorCriticPolicy":
        from stable_baselines3.common.policies import ActorCriticPolicy

        return ActorCriticPolicy
    if name == "SACPolicy":
        from stable_baselines3.sac.policies import SACPolicy

        return SACPolicy
    raise CheckpointError(f"unknown policy class {name!r}; supported: {sorted(_KWARGS)}")


def architecture(policy: nn.Module) -> dict[str, Any]:
    """The manifest's description of an SB3 policy: class name + JSON-safe kwargs."""
    from stable_baselines3.common.torch_layers import FlattenExtractor

    name = type(policy).__name__
    if name not in _KWARGS:
        raise CheckpointError(f"cannot save a {name}; supported policies: {sorted(_KWARGS)}")
    params = policy._get_constructor_parameters()
    if params.get("features_extractor_class", FlattenExtractor) is not FlattenExtractor:
        raise CheckpointError("only SB3's default FlattenExtractor can be saved")
    if params.get("use_sde"):
        raise CheckpointError("gSDE policies (use_sde=True) cannot be saved; train without it")
    kwargs = {k: params[k] for k in _KWARGS[name] if k in params}
    kwargs["activation_fn"] = kwargs["activation_fn"].__name__
    return {"policy_class": name, "policy_kwargs": kwargs}


def build_policy(arch: dict[str, Any], obs_space: spaces.Space, act_space: spaces.Space):
    """Rebuild an (untrained) SB3 policy from a manifest's architecture."""
    cls = _policy_class(arch["policy_class"])
    kwargs = dict(arch["policy_kwargs"])
    act = getattr(nn, kwargs["activation_fn"], None)
    if not (isinstance(act, type) and issubclass(act, nn.Module)):
        raise CheckpointError(f"unknown activation {kwargs['activation_fn']!r}")
    kwargs["activation_fn"] = act
    policy = cls(obs_space, act_space, lr_schedule=lambda _: 0.0, **kwargs)
    policy.set_training_mode(False)
    return policy


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("takeover", "torch", "stable-baselines3", "gymnasium", "numpy", "safetensors"):
        try:
            out[pkg] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


# --- save / load --------------------------------------------------------------------------------
def save_agent(agent: EnsembleAgent, path: str | Path, *, algo: str = "PPO",
               extra: dict[str, Any] | None = None) -> Path:
    """Write ``agent`` (policies, risk critic, reference observations) as a safe checkpoint
    directory at ``path``; returns ``path``. Safe to call again after fine-tuning."""
    from safetensors.torch import save

    path = Path(path)
    algo = agent.metadata.get("algo", algo)
    tensors: dict[str, torch.Tensor] = {}
    for k, policy in enumerate(agent.policies):
        for name, t in policy.state_dict().items():
            tensors[f"members.{k}.{name}"] = t.detach().cpu().contiguous().clone()
    risk = None
    if agent.risk_critic is not None:
        risk = agent.risk_critic.spec.to_dict()
        for name, t in agent.risk_critic.state_dict().items():
            tensors[f"risk.{name}"] = t.detach().cpu().contiguous().clone()
    if agent.reference_obs is not None:
        tensors["reference_obs"] = torch.as_tensor(np.asarray(agent.reference_obs,
                                                              dtype=np.float32)).contiguous()
    blob = save(tensors)
    digest = hashlib.sha256(blob).hexdigest()
    weights = f"weights.{digest[:12]}.safetensors"
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": "policy" if isinstance(agent, PolicyAgent) else "ensemble",
        "members": len(agent.policies),
        "algo": algo,
        "observation_space": space_to_dict(agent.observation_space),
        "action_space": space_to_dict(agent.action_space),
        "architecture": architecture(agent.policies[0]),
        "risk": risk,
        "reference_obs": None if agent.reference_obs is None else list(
            np.shape(agent.reference_obs)),
        "weights": {"file": weights, "sha256": digest, "bytes": len(blob)},
        "versions": versions(),
        "info": {k: v for k, v in agent.metadata.items() if k not in ("path",)}
        | dict(extra or {}),
    }
    atomic_write_bytes(path / weights, blob)
    atomic_write_text(path / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for name in (weights, MANIFEST):  # temp files are created 0600; checkpoints are shared
        os.chmod(path / name, 0o644)
    for stale in path.glob("weights.*.safetensors"):
        if stale.name != weights:
            stale.unlink(missing_ok=True)
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    file = Path(path) / MANIFEST
    if not file.is_file():
        raise CheckpointError(f"{file} does not exist: {path} is not a takeover checkpoint "
                              "directory (expected manifest.json + weights.*.safetensors)")
    try:
        manifest = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file} is not valid JSON (truncated or edited?): {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{file} is not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{file} has format_version {manifest.get('format_version')}; "
                              f"this takeover reads version {FORMAT_VERSION}")
    return manifest


def _read_weights(path: Path, manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    entry = manifest["weights"]
    file = path / Path(entry["file"]).name
    if not file.is_file():
        raise CheckpointError(f"weights file {file} named by {path / MANIFEST} is missing")
    blob = file.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    if len(blob) != entry["bytes"] or digest != entry["sha256"]:
        raise CheckpointError(
            f"{file} is corrupt: sha256 mismatch ({len(blob)} bytes, sha256 {digest[:16]}..., "
            f"manifest expects {entry['bytes']} bytes, sha256 {entry['sha256'][:16]}...); "
            "the file was truncated or modified -- restore or re-create the checkpoint"
        )
    return load(blob)


def load_checkpoint(path: str | Path, *, env: Any = None, **agent_kwargs: Any) -> EnsembleAgent:
    """Load a checkpoint directory into a ``PolicyAgent`` (1 member) or ``EnsembleAgent``.

    ``env`` (optional): refuse the checkpoint if its spaces differ from the env's.
    ``agent_kwargs``: e.g. ``dropout_samples=10`` for MC-dropout outputs."""
    path = Path(path)
    manifest = read_manifest(path)
    obs_space = space_from_dict(manifest["observation_space"])
    act_space = space_from_dict(manifest["action_space"])
    tensors = _read_weights(path, manifest)
    try:
        policies = []
        for k in range(manifest["members"]):
            policy = build_policy(manifest["architecture"], obs_space, act_space)
            prefix = f"members.{k}."
            state = {n[len(prefix):]: t for n, t in tensors.items() if n.startswith(prefix)}
            policy.load_state_dict(state, strict=True)
            policies.append(policy)
        risk = None
        if manifest.get("risk"):
            risk = RiskCritic(RiskSpec.from_dict(manifest["risk"]))
            state = {n[5:]: t for n, t in tensors.items() if n.startswith("risk.")}
            risk.load_state_dict(state, strict=True)
        ref = tensors["reference_obs"].numpy() if "reference_obs" in tensors else None
    except (RuntimeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: weights do not match the manifest's architecture: "
                              f"{e}") from None
    meta = {"path": str(path), "algo": manifest["algo"], **manifest.get("info", {})}
    if manifest["kind"] == "policy":
        agent: EnsembleAgent = PolicyAgent(policies[0], risk=risk, reference_obs=ref,
                                           metadata=meta, **agent_kwargs)
    else:
        agent = EnsembleAgent(policies, risk=risk, reference_obs=ref, metadata=meta,
                              **agent_kwargs)
    if env is not None:
        check_spaces(agent, env)
    return agent


def load_sb3_zip(path: str | Path, *, trust_sb3_zip: bool = False, env: Any = None,
                 **agent_kwargs: Any) -> PolicyAgent:
    """Load an SB3 ``.zip`` (PPO, A2C or SAC). It contains pickled Python objects that run
    code when loaded, so this needs ``trust_sb3_zip=True``; convert it once with
    ``save_agent`` and share the safe checkpoint instead."""
    path = Path(path)
    if not trust_sb3_zip:
        raise CheckpointError(
            f"refusing to load {path}: SB3 .zip files contain pickled objects that can run "
            "code when opened. If you trust its source pass trust_sb3_zip=True "
            "(CLI: --trust-sb3-zip), then save_agent() it as a safe checkpoint."
        )
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    from stable_baselines3 import A2C, PPO, SAC

    errors = []
    for cls in (PPO, SAC, A2C):
        try:
            model = cls.load(path, device="cpu")
            break
        except Exception as e:  # the zip names its class only inside the pickle
            errors.append(f"{cls.__name__}: {e}")
    else:
        raise CheckpointError(f"{path} is not a loadable PPO/SAC/A2C zip: {'; '.join(errors)}")
    agent = PolicyAgent(model.policy, metadata={"path": str(path),
                                                "algo": type(model).__name__}, **agent_kwargs)
    if env is not None:
        check_spaces(agent, env)
    return agent


def load_agent(name_or_path: str | Path, *, env: Any = None, trust_sb3_zip: bool = False,
               **agent_kwargs: Any) -> EnsembleAgent:
    """A shipped agent by name (``"novice"``, ``"novice-ensemble"``), a checkpoint directory,
    or (only with ``trust_sb3_zip=True``) an SB3 ``.zip``."""
    from takeover.agents.pretrained import PRETRAINED, pretrained_path

    key = str(name_or_path)
    if key in PRETRAINED:
        agent = load_checkpoint(pretrained_path(key), env=env, **agent_kwargs)
        agent.metadata["name"] = key
        return agent
    path = Path(name_or_path)
    if path.suffix == ".zip":
        return load_sb3_zip(path, trust_sb3_zip=trust_sb3_zip, env=env, **agent_kwargs)
    if path.is_dir():
        return load_checkpoint(path, env=env, **agent_kwargs)
    from takeover.registry import closest

    raise CheckpointError(
        f"no agent {key!r}: not a shipped name ({', '.join(PRETRAINED)}), not a checkpoint "
        f"directory and not an SB3 .zip.{closest(key, list(PRETRAINED))}"
    )


def checkpoint_action_type(name_or_path: str | Path) -> str:
    """``"discrete"`` or ``"continuous"``: the action type of a shipped name or checkpoint
    directory, read from its manifest alone (no weights loaded), so a caller can build the
    matching env before loading the agent."""
    from takeover.agents.pretrained import PRETRAINED, pretrained_path

    key = str(name_or_path)
    path = pretrained_path(key) if key in PRETRAINED else Path(name_or_path)
    if not path.is_dir():
        raise CheckpointError(
            f"cannot tell the action type of {key!r}: not a shipped name "
            f"({', '.join(PRETRAINED)}) or a checkpoint directory; pass the action type"
        )
    kind = read_manifest(path)["action_space"]["type"]
    return "discrete" if kind == "Discrete" else "continuous"
