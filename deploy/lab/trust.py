"""The lab's keys, approved scopes and operator token, and how agents run.

``up`` plays every party of DESIGN.md's trust model: it makes the coordinator's
signing key, the segmentation owner's scope key, one key per agent and the
operator token, and signs one scope per source subnet.  The files mirror the
agent image's ``/etc/segscan`` (deploy/aws/README.md, step 4)::

    trust/private/coordinator.pem   coordinator's key  (SEGSCAN_SIGNING_KEY)
    trust/private/owner.pem         owner's scope key, used only here
    trust/keys/assignments.pem      its public half    (SEGSCAN_COORDINATOR_KEY)
    trust/keys/scopes.pem           owner's public key (SEGSCAN_SCOPE_KEY)
    trust/scope/<subnet>.yaml(.sig) approved scopes    (SEGSCAN_SCOPE)
    trust/agent-keys/<subnet>.pub   agents' keys       (SEGSCAN_AGENT_KEYS)
    agents/<subnet>/agent-key.pem   an agent's key     (SEGSCAN_AGENT_KEY)
    operator-token                  (SEGSCAN_OPERATOR_TOKEN_FILE)

The lab's owner approves, for each agent, every lab subnet on every TCP port
and on the UDP system ports (1-1023, RFC 6335 section 6), at most
``MAX_RATE_PPS``.  Agents run as their own unprivileged user with only
CAP_NET_RAW, when the Python interpreter is reachable by such a user;
otherwise as root reduced to that one capability, with ``--allow-root``.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import stat
import sys
from pathlib import Path

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from deploy.lab.topology import Topology
from protocol.envelope import Context, signing_input
from protocol.scope import signature_line, signature_path
from protocol.signing import generate_key, key_id, public_path

log = structlog.get_logger(__name__)

TRUST_DIR = "trust"
TOKEN_FILE = "operator-token"
AGENT_KEY_FILE = "agent-key.pem"
MAX_RATE_PPS = 1_000_000
SCOPE_TCP = "1-65535"
SCOPE_UDP = "1-1023"
# Each agent its own uid, so one agent cannot read another's key; far above
# login and system ranges, and unnamed: the lab adds no user to the machine.
AGENT_UID_BASE = 3_100_000

_REPO = Path(__file__).resolve().parents[2]


def trust_dir(state_dir: Path) -> Path:
    return state_dir / TRUST_DIR


def prepare(state_dir: Path, topology: Topology) -> None:
    """Make every key, scope and the token of a lab, and give agents their dirs."""
    trust = trust_dir(state_dir)
    for sub, mode in (("private", 0o700), ("keys", 0o755), ("scope", 0o755)):
        (trust / sub).mkdir(parents=True, exist_ok=True, mode=mode)
    (trust / "agent-keys").mkdir(exist_ok=True)
    _key_pair(trust / "private" / "coordinator.pem", trust / "keys" / "assignments.pem")
    owner = _key_pair(trust / "private" / "owner.pem", trust / "keys" / "scopes.pem")
    for index, node in enumerate(topology.agents):
        subnet = node.subnet.name
        directory = state_dir / "agents" / subnet
        _key_pair(directory / AGENT_KEY_FILE, trust / "agent-keys" / f"{subnet}.pub")
        _signed_scope(trust / "scope" / f"{subnet}.yaml", subnet, topology, owner)
        if unprivileged_agents():
            _give(directory, agent_uid(index))
    token = state_dir / TOKEN_FILE
    token.touch(mode=0o600)
    token.write_text(secrets.token_urlsafe(32) + "\n")
    log.info(
        "lab_trust_prepared",
        agents=len(topology.agents),
        unprivileged=unprivileged_agents(),
    )


def _key_pair(private: Path, public_copy: Path) -> Ed25519PrivateKey:
    """A new key at ``private``, its public half also copied to ``public_copy``."""
    key = generate_key(private)
    shutil.copyfile(public_path(private), public_copy)

    return key


def _signed_scope(
    path: Path, subnet: str, topology: Topology, owner: Ed25519PrivateKey
) -> None:
    path.write_text(scope_text(subnet, topology))
    signature = owner.sign(signing_input(Context.SCOPE, path.read_bytes()))
    signature_path(path).write_text(
        signature_line(key_id(owner.public_key()), signature)
    )


def scope_text(subnet: str, topology: Topology) -> str:
    """The approved scope of the agent of ``subnet``: every lab subnet."""
    lines = [
        f"# Approved scope of the lab agent of {subnet}, signed by the lab owner.",
        "version: 1",
        f"subnets: [{subnet}]",
        f"max_rate_pps: {MAX_RATE_PPS}",
        "destinations:",
    ]
    for node in topology.agents:
        cidr = node.subnet.cidr
        lines.append(f"  - {{cidr: {cidr}, tcp: {SCOPE_TCP}, udp: {SCOPE_UDP}}}")

    return "\n".join(lines) + "\n"


def coordinator_env(state_dir: Path) -> dict[str, str]:
    trust = trust_dir(state_dir)

    return {
        "SEGSCAN_SIGNING_KEY": str(trust / "private" / "coordinator.pem"),
        "SEGSCAN_AGENT_KEYS": str(trust / "agent-keys"),
        "SEGSCAN_OPERATOR_TOKEN_FILE": str(state_dir / TOKEN_FILE),
    }


def agent_env(state_dir: Path, subnet: str) -> dict[str, str]:
    trust = trust_dir(state_dir)
    env = {
        "SEGSCAN_COORDINATOR_KEY": str(trust / "keys" / "assignments.pem"),
        "SEGSCAN_SCOPE_KEY": str(trust / "keys" / "scopes.pem"),
        "SEGSCAN_SCOPE": str(trust / "scope"),
        "SEGSCAN_AGENT_KEY": str(state_dir / "agents" / subnet / AGENT_KEY_FILE),
    }
    if not unprivileged_agents():
        env["SEGSCAN_ALLOW_ROOT"] = "1"

    return env


def agent_command(argv: tuple[str, ...], index: int) -> tuple[str, ...]:
    """``argv`` run with CAP_NET_RAW only, as the agent's own user if possible."""
    caps = ("--bounding-set=-all,+net_raw", "--no-new-privs")
    if not unprivileged_agents():
        return ("setpriv", *caps, "--", *argv)
    uid = agent_uid(index)
    user = (f"--reuid={uid}", f"--regid={uid}", "--clear-groups")
    ambient = ("--inh-caps=-all,+net_raw", "--ambient-caps=-all,+net_raw")

    return ("setpriv", *user, *ambient, *caps, "--", *argv)


def agent_uid(index: int) -> int:
    return AGENT_UID_BASE + index


@functools.cache
def unprivileged_agents() -> bool:
    """Whether a user with no groups can run this Python and read the code.

    With an interpreter under root's 0700 home (pyenv as root, say) it cannot;
    the lab then runs agents as root, and says so.
    """
    needed = [
        Path(sys.executable).resolve(),
        Path(sys.base_prefix),
        Path(sys.prefix),
        _REPO,
    ]
    reachable = all(_world_reachable(path) for path in needed)
    if not reachable:
        log.warning(
            "lab_agents_run_as_root",
            reason=f"{sys.executable} or {_REPO} is not reachable by other users",
        )

    return reachable


def _world_reachable(path: Path) -> bool:
    """Whether "other" may traverse every parent of ``path`` and read it."""
    for parent in [*reversed(path.parents), path]:
        try:
            mode = parent.stat().st_mode
        except OSError:
            return False
        needed = stat.S_IXOTH if stat.S_ISDIR(mode) else stat.S_IROTH
        if not mode & needed:
            return False

    return True


def _give(directory: Path, uid: int) -> None:
    """Hand an agent's directory and key to its user, readable by it alone."""
    for path in (directory, *directory.iterdir()):
        os.chown(path, uid, uid)
    directory.chmod(0o700)
