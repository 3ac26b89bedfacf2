"""Ray: joining or starting a cluster, sizing the workers, starting them and waiting until they
have loaded the engines (or refused to, with the reason, on their own node)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import UserError, first_line

#: the fleet sends only small dicts through Ray, so a local cluster needs little shared memory
OBJECT_STORE_BYTES = 100 * 2**20
#: how long a worker may take to be placed and to load the engines
START_TIMEOUT_S = 300.0
POLL_S = 0.5


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("Ray is not installed; install the cluster extra: pip install -e '.[cluster]'") from None
    return ray


def connect(address: str | None) -> str:
    """Join the cluster at ``address`` (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``) or, without one,
    start a local cluster sized to this machine; returns a one-line description."""
    ray = import_ray()
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address is None:
            ray.init(address="local", include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES, **quiet)
        else:
            ray.init(address=address, **quiet)
    except Exception as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise UserError(f"cannot start or join {where} ({first_line(e)}); check --address, or start one with "
                        "`ray start --head`") from None
    res = ray.cluster_resources()
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return (f"{'local' if address is None else address} Ray {ray.__version__} cluster: {nodes} node(s), "
            f"{res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs")


@dataclass(frozen=True)
class WorkerShape:
    """How many workers, and the share of the cluster each one reserves."""

    count: int
    gpus: float
    cpus: float

    @property
    def threads(self) -> int:
        """CPU threads a worker's backend uses."""
        return max(1, int(self.cpus))


def size_workers(workers: int | None, gpus_per_worker: float | None, cpus_per_worker: float,
                 resources: dict[str, float]) -> WorkerShape:
    """One worker per ``gpus_per_worker`` GPUs (default 1 where the cluster has GPUs), else per
    ``cpus_per_worker`` cores; ``workers`` caps the count and must fit in the cluster."""
    total_gpus, total_cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
    gpus = gpus_per_worker if gpus_per_worker is not None else (1.0 if total_gpus >= 1 else 0.0)
    if gpus > total_gpus:
        raise UserError(f"--gpus-per-worker {gpus:g}: the cluster has {total_gpus:g} GPUs; pass --gpus-per-worker 0 "
                        "to segment on CPUs")
    fit = int(total_cpus // cpus_per_worker + 1e-9)
    if gpus > 0:
        fit = min(fit, int(total_gpus // gpus + 1e-9))
    count = workers or fit
    if count < 1 or count > fit:
        raise UserError(f"{count} worker(s) of {gpus:g} GPU and {cpus_per_worker:g} CPU each do not fit in the cluster "
                        f"({total_gpus:g} GPUs, {total_cpus:g} CPUs); pass --workers {max(fit, 1)} or less, a smaller "
                        "--cpus-per-worker, or add nodes")
    return WorkerShape(count, gpus, cpus_per_worker)


@dataclass
class WorkerSlot:
    """One worker actor as the driver sees it."""

    name: str  # w0, w1, ... (a replacement gets a new name)
    handle: Any
    info: dict = field(default_factory=dict)  # SegmentWorker.describe(): pid, host, node_ip, node_id, backend, ...
    state: str = "starting"  # starting | idle | busy | dead | refused
    since: float = field(default_factory=time.monotonic)
    reason: str | None = None  # why it is dead or refused

    def where(self) -> str:
        return f"{self.name} (pid {self.info.get('pid', '?')}) on {self.info.get('host', '?')} ({self.info.get('node_ip', '?')})"


class WorkerFactory:
    """Starts SegmentWorker actors with the job's engines, backend and resource share."""

    def __init__(self, shape: WorkerShape, engines: str, backend: str, out_dir: str) -> None:
        ray = import_ray()
        from .worker import SegmentWorker

        self.actor = ray.remote(SegmentWorker).options(num_cpus=shape.cpus, num_gpus=shape.gpus,
                                                       max_concurrency=3, max_restarts=0)
        self.args = (engines, backend, shape.threads, out_dir)
        self.started = 0

    def spawn(self) -> WorkerSlot:
        slot = WorkerSlot(f"w{self.started}", self.actor.remote(*self.args))
        self.started += 1
        return slot


def start_workers(factory: WorkerFactory, count: int, stop: threading.Event, log=print) -> list[WorkerSlot]:
    """Start ``count`` workers and wait until each has loaded the engines or refused; refusals are
    logged, and UserError is raised if none can work (or none started within START_TIMEOUT_S)."""
    ray = import_ray()
    slots = [factory.spawn() for _ in range(count)]
    waiting = {slot.handle.describe.remote(): slot for slot in slots}
    deadline = time.monotonic() + START_TIMEOUT_S
    while waiting and not stop.is_set() and time.monotonic() < deadline:
        ready, _ = ray.wait(list(waiting), num_returns=1, timeout=POLL_S)
        for ref in ready:
            take_description(waiting.pop(ref), ref, log)
    for slot in waiting.values():
        slot.state, slot.reason = "dead", f"not started within {START_TIMEOUT_S:.0f} s (no free resources for it?)"
        ray.kill(slot.handle)
    if not stop.is_set() and not any(s.state == "idle" for s in slots):
        reasons = "; ".join(f"{s.where()}: {s.reason}" for s in slots)
        raise UserError(f"no worker can segment: {reasons}")
    return slots


def take_description(slot: WorkerSlot, ref: Any, log=print) -> None:
    """Record a worker's describe() answer: idle when its engines are loaded, else refused or dead."""
    ray = import_ray()
    try:
        slot.info = ray.get(ref)
    except ray.exceptions.RayError as e:
        slot.state, slot.reason = "dead", f"died while starting ({first_line(e)})"
        log(f"worker {slot.where()} {slot.reason}")
        return
    slot.since = time.monotonic()
    if slot.info.get("refusal"):
        slot.state, slot.reason = "refused", slot.info["refusal"]
        log(f"worker {slot.where()} cannot segment: {slot.reason}")
        ray.kill(slot.handle)
    else:
        slot.state = "idle"
        log(f"worker {slot.where()}: {slot.info['backend']} ({slot.info['why']}); {slot.info['detail']}")
