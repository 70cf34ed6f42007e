"""Where the variant x target matrix runs: in this process (local, the default) or as Ray tasks (`--ray ADDRESS`).

An executor takes jobs (a module-level function, its argument, the resources it needs) and yields (index, result)
as each finishes. The driver alone touches the catalog: workers write an artifact into a staging folder the driver
made, or return measurements, and the driver commits them through the catalog's normal atomic commit (rename, then
one index transaction), so concurrent workers never write the index.

Artifacts move through a shared path, not Ray's object store: a variant is a folder of hundreds of MB that must end
up as files in the catalog anyway, the object store is node memory (a build's outputs would have to fit in RAM and
be copied twice), and the atomic rename needs the staging folder on the catalog's own filesystem. So the catalog
(and $SLIMSERVE_CACHE, for the base model) live on storage every node mounts at the same path; what travels through
the object store is small (recipes, manifests, bench records).

Resources use Ray's names: CPU and GPU become num_cpus/num_gpus, any other key (a `cuda` or `neuron` label) a custom
resource that nodes advertise with `ray start --resources='{"cuda": 1}'`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import DependencyError, UserError, flag

CONNECT_TIMEOUT_S = 3.0
# Ray reads this once, when it is imported: "0" makes a Ray instance started here take 127.0.0.1 as its node address
# instead of the first network interface's, so `--ray local` listens and talks on loopback only.
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@dataclass(frozen=True)
class Job:
    """One task: fn(arg), needing `resources` (Ray names: CPU, GPU, custom labels)."""

    fn: Callable[[Any], Any]
    arg: Any
    resources: dict[str, float] = field(default_factory=dict)
    label: str = ""


class LocalExecutor:
    """Runs each job in this process, in order, when the caller asks for its result (one at a time)."""

    name = "local"

    def run(self, jobs: list[Job]) -> Iterator[tuple[int, Any]]:
        for i, job in enumerate(jobs):
            yield i, job.fn(job.arg)


class RayExecutor:
    """Runs jobs as Ray tasks on a cluster; every job's resources are checked against the nodes before any starts."""

    name = "ray"

    def __init__(self, address: str):
        self.address = address
        self.ray = connect(address)

    def run(self, jobs: list[Job]) -> Iterator[tuple[int, Any]]:
        for job in jobs:
            self.check_feasible(job)
        ray = self.ray
        remote = {fn: ray.remote(fn) for fn in {job.fn for job in jobs}}
        refs = {}
        for i, job in enumerate(jobs):
            task = remote[job.fn].options(name=job.label or job.fn.__name__, max_retries=0, **_options(job))
            refs[task.remote(job.arg)] = i
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield refs[done[0]], _result(ray, done[0])
        finally:
            for ref in pending:  # an error or Ctrl-C on the driver: stop the rest
                ray.cancel(ref, force=True)

    def check_feasible(self, job: Job) -> None:
        """A UserError when no alive node has everything the job asks for (Ray would otherwise wait forever)."""
        need = {k: v for k, v in job.resources.items() if v}
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        if any(all(res.get(k, 0) >= v for k, v in need.items()) for res in nodes):
            return
        have = "; ".join(", ".join(f"{k} {v:g}" for k, v in sorted(r.items()) if not k.startswith(("node:", "obj",
                         "memory"))) for r in nodes) or "no alive node"  # fmt: skip
        asked = ", ".join(f"{k} {v:g}" for k, v in sorted(need.items()))
        raise UserError(
            f"no node of the Ray cluster at {self.address} has the resources {job.label or 'a task'} needs ({asked});"
            f" the nodes have: {have}",
            field=flag("--ray"),
            hint="start a node that has them, e.g. `ray start --address=HEAD:6379 --num-gpus=1 "
            "--resources='{\"cuda\": 1}'` for a CUDA target; nothing was run or written",
        )


def executor_for(ray_address: str | None) -> LocalExecutor | RayExecutor:
    return RayExecutor(ray_address) if ray_address else LocalExecutor()


def _options(job: Job) -> dict[str, Any]:
    res = dict(job.resources)
    opts: dict[str, Any] = {"num_cpus": res.pop("CPU", 1), "num_gpus": res.pop("GPU", 0)}
    if res:
        opts["resources"] = res
    return opts


def _result(ray: Any, ref: Any) -> Any:
    """The task's return value; its own exception (a UserError, say) when it raised one."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise


def connect(address: str) -> Any:
    """The ray module, connected to `address`: host:port of a head node, ray://host:port (Ray Client), auto (the
    cluster this machine belongs to) or local (a Ray instance started here). A head that does not answer is an
    error within CONNECT_TIMEOUT_S seconds, naming the address."""
    if address == "local":
        os.environ.setdefault(LOOPBACK_ENV, "0")
    try:
        import ray
    except ImportError:
        raise DependencyError("ray", "running the matrix on Ray (--ray)", "pip install 'slimserve[ray]'") from None
    if address not in ("auto", "local"):
        _reachable(address)
    if ray.is_initialized():
        current = ray.get_runtime_context().gcs_address
        if address in ("auto", "local", current) or address.removeprefix("ray://") == current:
            return ray
        raise UserError(
            f"this process is already connected to the Ray cluster at {current}, not {address}", field=flag("--ray")
        )
    os.environ.setdefault("RAY_SCHEDULER_EVENTS", "0")  # infeasible tasks are checked above, not left to the log
    try:
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=True)
        else:
            ray.init(address=address, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"could not connect to the Ray cluster at {address}: {exc}", field=flag("--ray")) from None
    return ray


def _reachable(address: str) -> None:
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(
            f"'{address}' is not a Ray address",
            field=flag("--ray"),
            allowed="HOST:PORT (the head's GCS port, 6379 by default), ray://HOST:PORT (Ray Client), auto, local",
        )
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise UserError(
            f"no Ray cluster answers at {address} ({why}, within {CONNECT_TIMEOUT_S:g} s)",
            field=flag("--ray"),
            hint="start the head with `ray start --head --port=6379` and pass its HOST:6379, or use --ray local",
        ) from None
