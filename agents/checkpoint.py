"""The safe checkpoint format: a directory with a JSON manifest and one safetensors file.

SB3 ``.zip`` files hold cloudpickled objects, so opening an untrusted one can run code. A
takeover checkpoint holds only tensors (safetensors: no code, no pickle) and a manifest that
says how to rebuild the policies around them::

    novice/
        manifest.json                    spaces, architecture, algo, versions, sha256, ...
        weights.<sha256[:12]>.safetensors  members.<k>.<param>, risk.<param>, reference_obs

One sha256 covers the manifest and the weights together (``manifest["sha256"]``: the hash of
the canonical JSON of every other manifest field, a NUL byte, then the weights file), so an
edited architecture, risk spec or space is refused like a flipped weight bit. Loading
checks the manifest field by field against its schema, then the weights file's size and the
sha256 *before* parsing it, rebuilds the policies from the manifest, loads the tensors
strictly and refuses non-finite weights: every malformed or tampered checkpoint is a
``CheckpointError`` naming the file and the field. Saving writes the new weights under a new name, then
atomically replaces the manifest (the commit point), then removes stale weights: a crash at
any moment leaves either the old or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from takeover.agents.policy import EnsembleAgent, PolicyAgent
from takeover.agents.risk import RiskCritic, RiskSpec
from takeover.atomic import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:
    from takeover.agents.intent import IntentAgent

FORMAT = "takeover-checkpoint"
FORMAT_VERSION = 2
"""2: one sha256 over manifest + weights (1 hashed the weights alone; ``upgrade`` converts)."""
MANIFEST = "manifest.json"
SHIPPED_DIR = Path(__file__).parent / "pretrained"
"""The checkpoints shipped in the package: a shipped name is a sub-folder holding a
manifest (``novice``, ``novice-ensemble``, ...). The table of what each one is, and the
recipe that builds them, live in ``takeover.agents.shipped`` and ``build_shipped``; this module only needs to
find them, so it imports neither."""
MAX_MANIFEST_BYTES = 1 << 20
MAX_MEMBERS = 64
ALGOS = ("PPO", "A2C", "SAC")
ACTIVATIONS = ("Tanh", "ReLU", "ELU", "LeakyReLU", "GELU", "SiLU", "Sigmoid")


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


def _sensor(rows: int) -> str:
    """The env options giving an observation of ``rows`` rows: the ego, the K nearest and,
    with ``observe_lanes``, three lane rows (``takeover.envs.lane_view``)."""
    plain = f"observe={rows - 1}"
    return plain if rows - 4 < 1 else f"{plain} (or observe={rows - 4}, observe_lanes=True)"


def check_spaces(agent: EnsembleAgent, env: Any) -> None:
    """Refuse an env whose observation or action space differs from the agent's, before any
    step, naming both spaces."""
    env_obs, env_act = env.observation_space, env.action_space
    problems = []
    if env_obs != agent.observation_space:
        hint = ""
        a_shape, e_shape = getattr(agent.observation_space, "shape", None), env_obs.shape
        if a_shape and e_shape and len(a_shape) == len(e_shape) == 2 and a_shape[0] != e_shape[0]:
            hint = (f" (the agent's observation has {a_shape[0]} rows, the env's "
                    f"{e_shape[0]}: make the env with {_sensor(a_shape[0])}, or use an agent "
                    f"trained with {_sensor(e_shape[0])})")
        problems.append(f"observation space: agent {agent.observation_space}, env "
                        f"{env_obs}{hint}")
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
    params: dict[str, Any] = policy._get_constructor_parameters()  # type: ignore[operator]
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


# --- manifest schema ------------------------------------------------------------------------
def _fail(file: Path, field: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{file}: field {field!r} {problem}; the checkpoint is malformed or "
                           "was edited -- restore or re-create it")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and not math.isnan(v)


def _int(file: Path, field: str, v: Any, lo: int, hi: int) -> int:
    if not _is_int(v) or not lo <= v <= hi:
        raise _fail(file, field, f"must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _check_space(file: Path, field: str, d: Any) -> None:
    if not isinstance(d, dict):
        raise _fail(file, field, f"must be a mapping, got {type(d).__name__}")
    kind = d.get("type")
    if kind == "Discrete":
        _keys(file, field, d, {"type", "n", "start"}, {"type", "n"})
        _int(file, f"{field}.n", d["n"], 1, 1_000_000)
        _int(file, f"{field}.start", d.get("start", 0), -1_000_000, 1_000_000)
    elif kind == "Box":
        _keys(file, field, d, {"type", "shape", "dtype", "low", "high"},
              {"type", "shape", "dtype", "low", "high"})
        shape = d["shape"]
        if (not isinstance(shape, list) or not 1 <= len(shape) <= 4
                or not all(_is_int(s) and 1 <= s <= 100_000 for s in shape)
                or math.prod(shape) > 10_000_000):
            raise _fail(file, f"{field}.shape", f"must list 1-4 positive sizes, got {shape!r}")
        if d["dtype"] not in ("float32", "float64"):
            raise _fail(file, f"{field}.dtype", f"must be float32 or float64, got {d['dtype']!r}")
        for b in ("low", "high"):
            v = d[b]
            ok = _is_num(v) or (isinstance(v, list) and _all_numbers(v)
                                and _shape(v) == tuple(shape))
            if not ok:
                raise _fail(file, f"{field}.{b}", "must be a number (not NaN) or a nested list "
                            f"of shape {shape}")
    else:
        raise _fail(file, f"{field}.type", f"must be 'Box' or 'Discrete', got {kind!r}")


def _shape(v: list[Any]) -> tuple[int, ...] | None:
    """``np.shape`` of a nested list, ``None`` when it is ragged (numpy raises)."""
    try:
        return tuple(np.shape(v))
    except ValueError:
        return None


def _all_numbers(v: Any) -> bool:
    if isinstance(v, list):
        return all(_all_numbers(x) for x in v)
    return _is_num(v)


def _keys(file: Path, field: str, d: dict, allowed: set[str], required: set[str]) -> None:
    from takeover.registry import closest

    for k in d:
        if k not in allowed:
            hint = closest(str(k), sorted(allowed)).strip()
            raise _fail(file, f"{field}.{k}" if field else k,
                        "is not part of the format" + (f" ({hint})" if hint else ""))
    for k in sorted(required - set(d)):
        raise _fail(file, f"{field}.{k}" if field else k, "is missing")


_MANIFEST_KEYS = {"format", "format_version", "kind", "members", "algo", "observation_space",
                  "action_space", "architecture", "risk", "reference_obs", "weights",
                  "versions", "info", "sha256"}


def validate_manifest(m: Any, file: Path) -> dict[str, Any]:
    """Check every field of a manifest against the format (types, ranges, allowed names);
    raise ``CheckpointError`` naming ``file`` and the first bad field."""
    if not isinstance(m, dict):
        raise CheckpointError(f"{file} is not a {FORMAT} manifest (a JSON object)")
    if m.get("format") != FORMAT:
        raise CheckpointError(f"{file} is not a {FORMAT} manifest (format={m.get('format')!r})")
    if m.get("format_version") != FORMAT_VERSION:
        hint = (" (version 1 did not cover the manifest by its sha256: if you trust it, run "
                "'python -m takeover.agents.checkpoint --upgrade DIR')"
                if m.get("format_version") == 1 else "")
        raise CheckpointError(f"{file} has format_version {m.get('format_version')!r}; this "
                              f"takeover reads version {FORMAT_VERSION}{hint}")
    _keys(file, "", m, _MANIFEST_KEYS, _MANIFEST_KEYS)
    sha = m["sha256"]
    if not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
        raise _fail(file, "sha256", "must be 64 lowercase hex digits")
    if m["kind"] not in ("policy", "ensemble"):
        raise _fail(file, "kind", f"must be 'policy' or 'ensemble', got {m['kind']!r}")
    _int(file, "members", m["members"], 1, MAX_MEMBERS)
    if m["kind"] == "policy" and m["members"] != 1:
        raise _fail(file, "members", f"must be 1 for kind 'policy', got {m['members']}")
    if m["algo"] not in ALGOS:
        raise _fail(file, "algo", f"must be one of {', '.join(ALGOS)}, got {m['algo']!r}")
    _check_space(file, "observation_space", m["observation_space"])
    _check_space(file, "action_space", m["action_space"])
    _check_architecture(file, m["architecture"], m["algo"])
    if m["risk"] is not None:
        if not isinstance(m["risk"], dict):
            raise _fail(file, "risk", "must be null or a risk-critic spec mapping")
        try:
            spec = RiskSpec.from_dict(m["risk"])
            bad = [k for k, v in spec.to_dict().items()
                   if not (_all_numbers(v) if isinstance(v, list) else _is_num(v))]
            if bad or not all(_is_int(h) and 1 <= h <= 4096 for h in spec.hidden):
                raise ValueError(f"non-numeric or out-of-range {bad or 'hidden'}")
        except (TypeError, ValueError) as e:
            raise _fail(file, "risk", f"is not a valid risk spec ({e})") from None
    ref = m["reference_obs"]
    if ref is not None and not (isinstance(ref, list) and 1 <= len(ref) <= 5
                                and all(_is_int(s) and s >= 0 for s in ref)):
        raise _fail(file, "reference_obs", f"must be null or a shape list, got {ref!r}")
    w = m["weights"]
    if not isinstance(w, dict):
        raise _fail(file, "weights", "must be a mapping {file, sha256, bytes}")
    _keys(file, "weights", w, {"file", "sha256", "bytes"}, {"file", "bytes"})
    if not (isinstance(w["file"], str) and re.fullmatch(r"weights\.[0-9a-f]{12}\.safetensors",
                                                        w["file"])):
        raise _fail(file, "weights.file", f"must be weights.<12 hex>.safetensors, got "
                    f"{w['file']!r}")
    _int(file, "weights.bytes", w["bytes"], 8, 1 << 34)
    if not (isinstance(m["versions"], dict)
            and all(isinstance(v, str) for v in m["versions"].values())):
        raise _fail(file, "versions", "must map package names to version strings")
    if not isinstance(m["info"], dict):
        raise _fail(file, "info", "must be a mapping")
    return m


def _check_architecture(file: Path, arch: Any, algo: str) -> None:
    if not isinstance(arch, dict):
        raise _fail(file, "architecture", "must be a mapping {policy_class, policy_kwargs}")
    _keys(file, "architecture", arch, {"policy_class", "policy_kwargs"},
          {"policy_class", "policy_kwargs"})
    cls = arch["policy_class"]
    if cls != _ALGO_POLICY[algo]:
        raise _fail(file, "architecture.policy_class",
                    f"must be {_ALGO_POLICY[algo]!r} for algo {algo!r}, got {cls!r}")
    kw = arch["policy_kwargs"]
    if not isinstance(kw, dict):
        raise _fail(file, "architecture.policy_kwargs", "must be a mapping")
    _keys(file, "architecture.policy_kwargs", kw, set(_KWARGS[cls]), {"net_arch",
                                                                        "activation_fn"})
    f = "architecture.policy_kwargs."
    if kw["activation_fn"] not in ACTIVATIONS:
        raise _fail(file, f + "activation_fn", f"must be one of {', '.join(ACTIVATIONS)}, got "
                    f"{kw['activation_fn']!r}")

    def sizes(v: Any) -> bool:
        return isinstance(v, list) and len(v) <= 16 and all(_is_int(s) and 1 <= s <= 4096
                                                            for s in v)

    net = kw["net_arch"]
    heads = {"pi", "vf"} if cls == "ActorCriticPolicy" else {"pi", "qf"}
    if not (sizes(net) or (isinstance(net, dict) and set(net) <= heads
                           and all(sizes(v) for v in net.values()))):
        raise _fail(file, f + "net_arch", f"must be a list of layer sizes or {{{', '.join(sorted(heads))}: "
                    f"[sizes]}}, got {net!r}")
    for k in ("ortho_init", "share_features_extractor", "normalize_images", "use_expln",
              "clip_mean"):
        if k in kw and not (isinstance(kw[k], bool) or (k == "clip_mean" and _is_num(kw[k])
                                                       and math.isfinite(kw[k]))):
            raise _fail(file, f + k, f"must be true/false, got {kw[k]!r}")
    if "log_std_init" in kw and not (_is_num(kw["log_std_init"])
                                     and -20 <= kw["log_std_init"] <= 2):
        raise _fail(file, f + "log_std_init", f"must be a number in [-20, 2], got "
                    f"{kw['log_std_init']!r}")
    if "n_critics" in kw:
        _int(file, f + "n_critics", kw["n_critics"], 1, 16)


def _plain(x: Any) -> Any:
    """JSON-safe metadata: non-finite floats become null (a manifest holds no NaN)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.generic,)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    return str(x)


def manifest_digest(manifest: dict[str, Any], blob: bytes) -> str:
    """The checkpoint's sha256: canonical JSON of every manifest field but ``sha256``, a NUL
    byte, then the weights file's bytes."""
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)
    return hashlib.sha256(text.encode("ascii") + b"\0" + blob).hexdigest()


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
    bad = [n for n, t in tensors.items() if t.is_floating_point() and not bool(
        torch.isfinite(t).all())]
    if bad:
        raise CheckpointError(f"refusing to save {path}: tensor {bad[0]} holds NaN or inf "
                              "(a diverged training run?)")
    blob = save(tensors)
    weights = f"weights.{hashlib.sha256(blob).hexdigest()[:12]}.safetensors"
    info = {k: v for k, v in agent.metadata.items() if k not in ("path",)} | dict(extra or {})
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
        "weights": {"file": weights, "bytes": len(blob)},
        "versions": versions(),
        "info": _plain(info),
    }
    manifest["sha256"] = manifest_digest(manifest, blob)
    validate_manifest(manifest, path / MANIFEST)  # what we write, we can read back
    atomic_write_bytes(path / weights, blob)
    atomic_write_text(path / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    for name in (weights, MANIFEST):  # temp files are created 0600; checkpoints are shared
        os.chmod(path / name, 0o644)
    for stale in path.glob("weights.*.safetensors"):
        if stale.name != weights:
            stale.unlink(missing_ok=True)
    return path


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The validated manifest of checkpoint directory ``path`` (the sha256 is checked by
    ``load_checkpoint``, which reads the weights too)."""
    file = Path(path) / MANIFEST
    if not file.is_file():
        what = "is a directory, not a file" if file.is_dir() else "does not exist"
        raise CheckpointError(f"{file} {what}: {path} is not a takeover checkpoint "
                              "directory (expected manifest.json + weights.*.safetensors)")
    try:
        if file.stat().st_size > MAX_MANIFEST_BYTES:
            raise CheckpointError(f"{file} is larger than {MAX_MANIFEST_BYTES} bytes: not a "
                                  "takeover manifest")
        manifest = json.loads(file.read_bytes().decode("utf-8"),
                              parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{file} is not valid JSON (truncated or edited?): {e}") from None
    except OSError as e:
        raise CheckpointError(f"{file} cannot be read: {e}") from None
    return validate_manifest(manifest, file)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a checkpoint may hold")


def _read_weights(path: Path, manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    entry = manifest["weights"]
    file = path / entry["file"]
    if not file.is_file():
        raise CheckpointError(f"weights file {file} named by {path / MANIFEST} is missing")
    try:
        blob = file.read_bytes()
    except OSError as e:
        raise CheckpointError(f"{file} cannot be read: {e}") from None
    digest = manifest_digest(manifest, blob)
    if len(blob) != entry["bytes"] or digest != manifest["sha256"]:
        raise CheckpointError(
            f"{path}: sha256 mismatch over {MANIFEST} + {file.name} ({len(blob)} bytes, sha256 "
            f"{digest[:16]}..., manifest expects {entry['bytes']} bytes, sha256 "
            f"{manifest['sha256'][:16]}...): a file was truncated or modified -- restore or "
            "re-create the checkpoint"
        )
    try:
        tensors = load(blob)
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type
        raise CheckpointError(f"{file} is not a valid safetensors file: {e}") from None
    for name, t in tensors.items():
        if not t.is_floating_point():
            raise CheckpointError(f"{file}: tensor {name} has dtype {t.dtype}; expected floats")
        if not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{file}: tensor {name} holds NaN or inf; an agent with "
                                  "non-finite weights acts arbitrarily -- re-create it")
    return tensors


def load_checkpoint(path: str | Path, *, env: Any = None,
                    **agent_kwargs: Any) -> PolicyAgent | EnsembleAgent:
    """Load a checkpoint directory into a ``PolicyAgent`` (1 member) or ``EnsembleAgent``.

    ``env`` (optional): refuse the checkpoint if its spaces differ from the env's.
    ``agent_kwargs``: e.g. ``dropout_samples=10`` for MC-dropout outputs."""
    path = Path(path)
    manifest = read_manifest(path)
    tensors = _read_weights(path, manifest)
    try:
        obs_space = space_from_dict(manifest["observation_space"])
        act_space = space_from_dict(manifest["action_space"])
    except (ValueError, TypeError, AssertionError) as e:
        raise CheckpointError(f"{path / MANIFEST}: field 'observation_space'/'action_space' "
                              f"does not describe a valid space: {e}") from None
    expected = set()
    try:
        policies = []
        for k in range(manifest["members"]):
            policy = build_policy(manifest["architecture"], obs_space, act_space)
            prefix = f"members.{k}."
            state = {n[len(prefix):]: t for n, t in tensors.items() if n.startswith(prefix)}
            expected |= {prefix + n for n in state}
            policy.load_state_dict(state, strict=True)
            policies.append(policy)
        risk = None
        if manifest["risk"] is not None:
            risk = RiskCritic(RiskSpec.from_dict(manifest["risk"]))
            state = {n[5:]: t for n, t in tensors.items() if n.startswith("risk.")}
            expected |= {"risk." + n for n in state}
            risk.load_state_dict(state, strict=True)
        ref = None
        if manifest["reference_obs"] is not None:
            ref = tensors["reference_obs"].numpy()
            expected.add("reference_obs")
            if list(ref.shape) != manifest["reference_obs"]:
                raise ValueError(f"reference_obs has shape {list(ref.shape)}, manifest says "
                                 f"{manifest['reference_obs']}")
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: weights do not match the manifest's architecture: "
                              f"{e}") from None
    extra = sorted(set(tensors) - expected)
    if extra:
        raise CheckpointError(f"{path}: weights hold tensors the manifest does not describe: "
                              f"{', '.join(extra[:3])}")
    meta = {"path": str(path), "algo": manifest["algo"], **manifest["info"]}
    if manifest["kind"] == "policy":
        agent: PolicyAgent | EnsembleAgent = PolicyAgent(
            policies[0], risk=risk, reference_obs=ref, metadata=meta, **agent_kwargs)
    else:
        agent = EnsembleAgent(policies, risk=risk, reference_obs=ref, metadata=meta,
                              **agent_kwargs)
    if env is not None:
        check_spaces(agent, env)
    return agent


def upgrade(path: str | Path) -> Path:
    """Rewrite a format-1 checkpoint (sha256 over the weights only) as format 2, after
    checking its weights against the old hash. Only for checkpoints you trust: format 1
    could not detect an edited manifest."""
    path = Path(path)
    file = path / MANIFEST
    old = json.loads(file.read_text(encoding="utf-8"))
    if old.get("format_version") != 1:
        raise CheckpointError(f"{file} is not a format-1 checkpoint")
    w = old["weights"]
    blob = (path / Path(w["file"]).name).read_bytes()
    if hashlib.sha256(blob).hexdigest() != w["sha256"]:
        raise CheckpointError(f"{path / w['file']}: sha256 mismatch; not upgrading")
    new = {**old, "format_version": FORMAT_VERSION,
           "weights": {"file": Path(w["file"]).name, "bytes": w["bytes"]}}
    new.pop("sha256", None)
    new["sha256"] = manifest_digest(new, blob)
    validate_manifest(new, file)
    atomic_write_text(file, json.dumps(new, indent=2, sort_keys=True) + "\n")
    os.chmod(file, 0o644)
    return path


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
               **agent_kwargs: Any) -> PolicyAgent | EnsembleAgent | IntentAgent:
    """A shipped agent by name (``"novice"``, ``"novice-ensemble"``, ``"novice-intent"``), a
    checkpoint directory (an intent agent's too), or (only with ``trust_sb3_zip=True``) an
    SB3 ``.zip``."""
    key = str(name_or_path)
    folder = SHIPPED_DIR / key if key in shipped_names() else Path(name_or_path)
    from takeover.agents.intent import is_intent_checkpoint, load_intent_agent

    if is_intent_checkpoint(folder):  # its own safe format (manifest + safetensors)
        intent = load_intent_agent(folder)
        if env is not None:
            intent._check(np.zeros((1, *env.observation_space.shape), np.float32))
        intent.metadata.setdefault("name", key)
        return intent
    if key in shipped_names():
        agent = load_checkpoint(SHIPPED_DIR / key, env=env, **agent_kwargs)
        agent.metadata["name"] = key
        return agent
    path = Path(name_or_path)
    if path.suffix == ".zip":
        return load_sb3_zip(path, trust_sb3_zip=trust_sb3_zip, env=env, **agent_kwargs)
    if path.is_dir():
        return load_checkpoint(path, env=env, **agent_kwargs)
    from takeover.registry import closest

    names = shipped_names()
    raise CheckpointError(
        f"no agent {key!r}: not a shipped name ({', '.join(names)}), not a checkpoint "
        f"directory and not an SB3 .zip.{closest(key, names)}"
    )


def checkpoint_action_type(name_or_path: str | Path) -> str:
    """``"discrete"`` or ``"continuous"``: the action type of a shipped name or checkpoint
    directory, read from its manifest alone (no weights loaded), so a caller can build the
    matching env before loading the agent."""
    key = str(name_or_path)
    path = SHIPPED_DIR / key if key in shipped_names() else Path(name_or_path)
    if not path.is_dir():
        raise CheckpointError(
            f"cannot tell the action type of {key!r}: not a shipped name "
            f"({', '.join(shipped_names())}) or a checkpoint directory; pass the action type"
        )
    from takeover.agents.intent import is_intent_checkpoint

    if is_intent_checkpoint(path):
        return "discrete"  # an intent agent acts by meta-actions
    kind = read_manifest(path)["action_space"]["type"]
    return "discrete" if kind == "Discrete" else "continuous"


def shipped_names() -> list[str]:
    """Names of the shipped checkpoints (sub-folders of ``SHIPPED_DIR`` with a manifest)."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / MANIFEST).is_file())


def main(argv: list[str] | None = None) -> None:
    import argparse

    p = argparse.ArgumentParser(prog="python -m takeover.agents.checkpoint",
                                description="Check or upgrade takeover checkpoints.")
    p.add_argument("--upgrade", action="store_true",
                   help="rewrite format-1 checkpoints you trust as format 2")
    p.add_argument("dirs", nargs="+", type=Path)
    args = p.parse_args(argv)
    for d in args.dirs:
        if args.upgrade:
            upgrade(d)
        load_checkpoint(d)
        print(f"{d}: ok")


if __name__ == "__main__":
    main()
