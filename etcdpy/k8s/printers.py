"""What ``etcdpy k8s get`` prints, as kubectl prints it: the tables of kubectl's printers
(kubernetes pkg/printers/internalversion/printers.go: the columns and cells of each kind, with
AGE as apimachinery's ``duration.HumanDuration``), laid out as cli-runtime's table printer lays
them out (Go's tabwriter: minimum width 6, padding 3, widths remembered across flushes while
watching), and ``-o json`` / ``-o yaml`` / ``-o name`` byte for byte as kubectl writes them
(Go's json.MarshalIndent with four spaces and escaped ``<>&``; sigs.k8s.io/yaml's key order and
quoting).

Objects are dicts of the object's JSON. Values the API server's defaulting would have filled in
(a Service's type and port protocol, a Secret's type, replicas) are printed with those defaults,
because the object layer stores objects without running the API server's defaulting.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

Cell = str | int | bool | None
Obj = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Column:
    """A table column; priority 0 is always shown, higher ones only with ``-o wide``."""

    name: str
    priority: int = 0


@dataclass(frozen=True, slots=True)
class Context:
    """What a row depends on besides the object: the time AGE is measured to."""

    now: datetime


RowFunc = Callable[[Obj, Context], list[Cell]]


@dataclass(frozen=True, slots=True)
class TableSpec:
    columns: tuple[Column, ...]
    row: RowFunc  # every column's cell, wide ones included


# --- time -------------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration: ~2-3 significant figures ("5m30s", "3d4h")."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        rest = whole % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp of the API (metav1.Time or MicroTime); None when unset or bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def since(value: Any, ctx: Context) -> str:
    """translateTimestampSince: "<unknown>" for an unset time."""
    when = parse_time(value)
    if when is None:
        return "<unknown>"
    return human_duration((ctx.now - when).total_seconds())


def created_at(obj: Obj) -> str:
    """The API server's default table's "Created At": RFC 3339 in UTC, seconds."""
    when = parse_time(_get(obj, "metadata", "creationTimestamp"))
    if when is None:
        return "<unknown>"
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- small readers ----------------------------------------------------------------------------


def _get(obj: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(part)
    return obj


def _list(obj: Any, *path: str) -> list[Any]:
    value = _get(obj, *path)
    return value if isinstance(value, list) else []


def _map(obj: Any, *path: str) -> dict[str, Any]:
    value = _get(obj, *path)
    return dict(value) if isinstance(value, Mapping) else {}


def _int(obj: Any, *path: str, default: int = 0) -> int:
    value = _get(obj, *path)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _str(obj: Any, *path: str) -> str:
    value = _get(obj, *path)
    return value if isinstance(value, str) else ""


def _name(obj: Obj) -> str:
    return _str(obj, "metadata", "name")


def _age(obj: Obj, ctx: Context) -> str:
    return since(_get(obj, "metadata", "creationTimestamp"), ctx)


def format_labels(labels: Mapping[str, Any]) -> str:
    """labels.FormatLabels: "k=v,..." sorted by key; "<none>" when empty."""
    text = ",".join(f"{key}={labels[key]}" for key in sorted(labels))
    return text or "<none>"


def selector_string(selector: Any) -> str:
    """metav1.LabelSelectorAsSelector(...).String(): requirements sorted by key."""
    if not isinstance(selector, Mapping):
        return ""
    requirements: list[tuple[str, str]] = []
    for key, value in _map(selector, "matchLabels").items():
        requirements.append((key, f"{key}={value}"))
    for expression in _list(selector, "matchExpressions"):
        key = _str(expression, "key")
        operator = _str(expression, "operator")
        values = ",".join(sorted(str(v) for v in _list(expression, "values")))
        text = {
            "In": f"{key} in ({values})",
            "NotIn": f"{key} notin ({values})",
            "Exists": key,
            "DoesNotExist": f"!{key}",
        }.get(operator, f"{key} {operator} ({values})")
        requirements.append((key, text))
    requirements.sort(key=lambda pair: pair[0])
    return ",".join(text for _, text in requirements)


def format_selector(selector: Any) -> str:
    """metav1.FormatLabelSelector: "<none>" for an empty or missing selector."""
    return selector_string(selector) or "<none>"


def _containers(spec: Any) -> tuple[str, str]:
    """layoutContainerCells: the names and the images, comma separated."""
    containers = _list(spec, "containers")
    return (
        ",".join(_str(c, "name") for c in containers),
        ",".join(_str(c, "image") for c in containers),
    )


def _template_spec(obj: Obj) -> Any:
    return _get(obj, "spec", "template", "spec")


# --- the rows of kubectl's printers -----------------------------------------------------------


def _pod_row(pod: Obj, ctx: Context) -> list[Cell]:
    spec = _map(pod, "spec")
    status = _map(pod, "status")
    phase = _str(status, "phase") or "Pending"  # what the API server sets on create
    reason = _str(status, "reason") or phase
    for condition in _list(status, "conditions"):
        if _str(condition, "type") == "PodScheduled" and (
            _str(condition, "reason") == "SchedulingGated"
        ):
            reason = "SchedulingGated"
    restartable = {
        _str(c, "name")
        for c in _list(spec, "initContainers")
        if _str(c, "restartPolicy") == "Always"
    }
    total = len(_list(spec, "containers")) + len(restartable)
    ready = restarts = restartable_restarts = 0
    last_restart: datetime | None = None
    last_restartable_restart: datetime | None = None

    def finished(container: Any) -> datetime | None:
        return parse_time(_get(container, "lastState", "terminated", "finishedAt"))

    initializing = False
    init_statuses = _list(status, "initContainerStatuses")
    for index, container in enumerate(init_statuses):
        restarts += _int(container, "restartCount")
        ended = finished(container)
        if ended and (last_restart is None or last_restart < ended):
            last_restart = ended
        is_restartable = _str(container, "name") in restartable
        if is_restartable:
            restartable_restarts += _int(container, "restartCount")
            if ended and (last_restartable_restart is None or last_restartable_restart < ended):
                last_restartable_restart = ended
        terminated = _get(container, "state", "terminated")
        waiting = _get(container, "state", "waiting")
        if isinstance(terminated, Mapping) and _int(terminated, "exitCode") == 0:
            continue
        if is_restartable and _get(container, "started") is True:
            if _get(container, "ready") is True:
                ready += 1
            continue
        if isinstance(terminated, Mapping):
            if _str(terminated, "reason"):
                reason = "Init:" + _str(terminated, "reason")
            elif _int(terminated, "signal"):
                reason = f"Init:Signal:{_int(terminated, 'signal')}"
            else:
                reason = f"Init:ExitCode:{_int(terminated, 'exitCode')}"
        elif (
            isinstance(waiting, Mapping)
            and _str(waiting, "reason")
            and _str(waiting, "reason") != "PodInitializing"
        ):
            reason = "Init:" + _str(waiting, "reason")
        else:
            reason = f"Init:{index}/{len(_list(spec, 'initContainers'))}"
        initializing = True
        break

    initialized = any(
        _str(c, "type") == "Initialized" and _str(c, "status") == "True"
        for c in _list(status, "conditions")
    )
    if not initializing or initialized:
        restarts = restartable_restarts
        last_restart = last_restartable_restart
        has_running = False
        for container in reversed(_list(status, "containerStatuses")):
            restarts += _int(container, "restartCount")
            ended = finished(container)
            if ended and (last_restart is None or last_restart < ended):
                last_restart = ended
            waiting = _get(container, "state", "waiting")
            terminated = _get(container, "state", "terminated")
            if isinstance(waiting, Mapping) and _str(waiting, "reason"):
                reason = _str(waiting, "reason")
            elif isinstance(terminated, Mapping) and _str(terminated, "reason"):
                reason = _str(terminated, "reason")
            elif isinstance(terminated, Mapping):
                signal = _int(terminated, "signal")
                exit_code = _int(terminated, "exitCode")
                reason = f"Signal:{signal}" if signal else f"ExitCode:{exit_code}"
            elif _get(container, "ready") is True and isinstance(
                _get(container, "state", "running"), Mapping
            ):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(
                _str(c, "type") == "Ready" and _str(c, "status") == "True"
                for c in _list(status, "conditions")
            )
            reason = "Running" if pod_ready else "NotReady"

    deleting = _get(pod, "metadata", "deletionTimestamp") is not None
    if deleting and _str(status, "reason") == "NodeLost":
        reason = "Unknown"
    elif deleting and phase not in ("Failed", "Succeeded"):
        reason = "Terminating"

    restarts_text = str(restarts)
    if restarts and last_restart is not None:
        ago = human_duration((ctx.now - last_restart).total_seconds())
        restarts_text = f"{restarts} ({ago} ago)"

    pod_ips = _list(status, "podIPs")
    pod_ip = _str(pod_ips[0], "ip") if pod_ips else ""
    gates = _list(spec, "readinessGates")
    gates_text = "<none>"
    if gates:
        conditions = {_str(c, "type"): _str(c, "status") for c in _list(status, "conditions")}
        true = sum(1 for g in gates if conditions.get(_str(g, "conditionType")) == "True")
        gates_text = f"{true}/{len(gates)}"
    return [
        _name(pod),
        f"{ready}/{total}",
        reason,
        restarts_text,
        _age(pod, ctx),
        pod_ip or "<none>",
        _str(spec, "nodeName") or "<none>",
        _str(status, "nominatedNodeName") or "<none>",
        gates_text,
    ]


def _node_row(node: Obj, ctx: Context) -> list[Cell]:
    conditions = {_str(c, "type"): _str(c, "status") for c in _list(node, "status", "conditions")}
    states: list[str] = []
    if "Ready" in conditions:
        states.append("Ready" if conditions["Ready"] == "True" else "NotReady")
    if not states:
        states.append("Unknown")
    if _get(node, "spec", "unschedulable") is True:
        states.append("SchedulingDisabled")
    roles: set[str] = set()
    for key, value in _map(node, "metadata", "labels").items():
        if key.startswith("node-role.kubernetes.io/") and key[len("node-role.kubernetes.io/") :]:
            roles.add(key[len("node-role.kubernetes.io/") :])
        elif key == "kubernetes.io/role" and value:
            roles.add(str(value))
    info = _map(node, "status", "nodeInfo")
    addresses = _list(node, "status", "addresses")

    def address(kind: str) -> str:
        found = [_str(a, "address") for a in addresses if _str(a, "type") == kind]
        return found[0] if found else "<none>"

    return [
        _name(node),
        ",".join(states),
        ",".join(sorted(roles)) or "<none>",
        _age(node, ctx),
        _str(info, "kubeletVersion"),
        address("InternalIP"),
        address("ExternalIP"),
        _str(info, "osImage") or "<unknown>",
        _str(info, "kernelVersion") or "<unknown>",
        _str(info, "containerRuntimeVersion") or "<unknown>",
    ]


def _service_external_ip(service: Obj) -> str:
    kind = _str(service, "spec", "type") or "ClusterIP"
    external = [str(ip) for ip in _list(service, "spec", "externalIPs")]
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) or "<none>"
    if kind == "LoadBalancer":
        ingress = _list(service, "status", "loadBalancer", "ingress")
        found = sorted({_str(i, "ip") or _str(i, "hostname") for i in ingress} - {""})
        balancers = ",".join(found)
        if len(balancers) > 16:  # loadBalancerWidth, clipped unless wide
            balancers = balancers[:13] + "..."
        if external:
            return ",".join([*(balancers.split(",") if balancers else []), *external])
        return balancers or "<pending>"
    if kind == "ExternalName":
        return _str(service, "spec", "externalName")
    return "<unknown>"


def _service_row(service: Obj, ctx: Context) -> list[Cell]:
    ports = []
    for port in _list(service, "spec", "ports"):
        protocol = _str(port, "protocol") or "TCP"
        node_port = _int(port, "nodePort")
        number = _int(port, "port")
        ports.append(f"{number}:{node_port}/{protocol}" if node_port else f"{number}/{protocol}")
    cluster_ips = _list(service, "spec", "clusterIPs")
    cluster_ip = str(cluster_ips[0]) if cluster_ips else _str(service, "spec", "clusterIP")
    return [
        _name(service),
        _str(service, "spec", "type") or "ClusterIP",
        cluster_ip or "<none>",
        _service_external_ip(service),
        ",".join(ports) or "<none>",
        _age(service, ctx),
        format_labels(_map(service, "spec", "selector")),
    ]


def _event_row(event: Obj, ctx: Context) -> list[Cell]:
    first = _get(event, "firstTimestamp")
    first_text = since(first, ctx) if parse_time(first) else since(_get(event, "eventTime"), ctx)
    last = _get(event, "lastTimestamp")
    last_text = since(last, ctx) if parse_time(last) else first_text
    count = _int(event, "count")
    series = _get(event, "series")
    if isinstance(series, Mapping):
        last_text = since(_get(series, "lastObservedTime"), ctx)
        count = _int(series, "count")
    elif count == 0:
        count = 1
    involved = _map(event, "involvedObject")
    kind = _str(involved, "kind").lower()
    target = f"{kind}/{_str(involved, 'name')}" if _str(involved, "name") else kind
    component = _str(event, "source", "component") or _str(event, "reportingComponent")
    instance = _str(event, "source", "host") or _str(event, "reportingInstance")
    source = f"{component}, {instance}" if instance else component
    return [
        last_text,
        _str(event, "type"),
        _str(event, "reason"),
        target,
        _str(involved, "fieldPath"),
        source,
        _str(event, "message").strip(),
        first_text,
        count,
        _name(event),
    ]


def _deployment_row(deployment: Obj, ctx: Context) -> list[Cell]:
    desired = _int(deployment, "spec", "replicas", default=1)
    ready = _int(deployment, "status", "readyReplicas")
    names, images = _containers(_template_spec(deployment))
    return [
        _name(deployment),
        f"{ready}/{desired}",
        _int(deployment, "status", "updatedReplicas"),
        _int(deployment, "status", "availableReplicas"),
        _age(deployment, ctx),
        names,
        images,
        selector_string(_get(deployment, "spec", "selector")),
    ]


def _replica_set_row(replica_set: Obj, ctx: Context) -> list[Cell]:
    names, images = _containers(_template_spec(replica_set))
    return [
        _name(replica_set),
        _int(replica_set, "spec", "replicas", default=1),
        _int(replica_set, "status", "replicas"),
        _int(replica_set, "status", "readyReplicas"),
        _age(replica_set, ctx),
        names,
        images,
        format_selector(_get(replica_set, "spec", "selector")),
    ]


def _replication_controller_row(controller: Obj, ctx: Context) -> list[Cell]:
    names, images = _containers(_template_spec(controller))
    return [
        _name(controller),
        _int(controller, "spec", "replicas", default=1),
        _int(controller, "status", "replicas"),
        _int(controller, "status", "readyReplicas"),
        _age(controller, ctx),
        names,
        images,
        format_labels(_map(controller, "spec", "selector")),
    ]


def _stateful_set_row(stateful_set: Obj, ctx: Context) -> list[Cell]:
    names, images = _containers(_template_spec(stateful_set))
    desired = _int(stateful_set, "spec", "replicas", default=1)
    ready = _int(stateful_set, "status", "readyReplicas")
    return [_name(stateful_set), f"{ready}/{desired}", _age(stateful_set, ctx), names, images]


def _daemon_set_row(daemon_set: Obj, ctx: Context) -> list[Cell]:
    names, images = _containers(_template_spec(daemon_set))
    status = _map(daemon_set, "status")
    return [
        _name(daemon_set),
        _int(status, "desiredNumberScheduled"),
        _int(status, "currentNumberScheduled"),
        _int(status, "numberReady"),
        _int(status, "updatedNumberScheduled"),
        _int(status, "numberAvailable"),
        format_labels(_map(daemon_set, "spec", "template", "spec", "nodeSelector")),
        _age(daemon_set, ctx),
        names,
        images,
        format_selector(_get(daemon_set, "spec", "selector")),
    ]


def _job_condition(job: Obj, kind: str) -> bool:
    for condition in _list(job, "status", "conditions"):
        if _str(condition, "type") == kind:
            return _str(condition, "status") == "True"
    return False


def _job_row(job: Obj, ctx: Context) -> list[Cell]:
    succeeded = _int(job, "status", "succeeded")
    completions = _get(job, "spec", "completions")
    if isinstance(completions, int):
        done = f"{succeeded}/{completions}"
    else:
        parallelism = _int(job, "spec", "parallelism")
        done = f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"
    started = parse_time(_get(job, "status", "startTime"))
    completed = parse_time(_get(job, "status", "completionTime"))
    duration = ""
    if started is not None:
        end = completed if completed is not None else ctx.now
        duration = human_duration((end - started).total_seconds())
    if _job_condition(job, "Complete"):
        state = "Complete"
    elif _job_condition(job, "Failed"):
        state = "Failed"
    elif _get(job, "metadata", "deletionTimestamp") is not None:
        state = "Terminating"
    elif _job_condition(job, "Suspended"):
        state = "Suspended"
    elif _job_condition(job, "FailureTarget"):
        state = "FailureTarget"
    else:
        state = "Running"
    names, images = _containers(_template_spec(job))
    return [
        _name(job),
        state,
        done,
        duration,
        _age(job, ctx),
        names,
        images,
        format_selector(_get(job, "spec", "selector")),
    ]


def _cron_job_row(cron_job: Obj, ctx: Context) -> list[Cell]:
    last = _get(cron_job, "status", "lastScheduleTime")
    suspend = _get(cron_job, "spec", "suspend")
    job_spec = _get(cron_job, "spec", "jobTemplate", "spec")
    names, images = _containers(_get(job_spec, "template", "spec"))
    return [
        _name(cron_job),
        _str(cron_job, "spec", "schedule"),
        _str(cron_job, "spec", "timeZone") or "<none>",
        ("True" if suspend else "False") if isinstance(suspend, bool) else "<unset>",
        len(_list(cron_job, "status", "active")),
        since(last, ctx) if last else "<none>",
        _age(cron_job, ctx),
        names,
        images,
        format_selector(_get(job_spec, "selector")),
    ]


def _endpoints_text(endpoints: Obj) -> str:
    """formatEndpoints: at most three "ip:port", then " + N more..."."""
    subsets = _list(endpoints, "subsets")
    if not subsets:
        return "<none>"
    shown: list[str] = []
    count = 0
    for subset in subsets:
        addresses = [_str(a, "ip") for a in _list(subset, "addresses")]
        ports = _list(subset, "ports")
        pairs: list[tuple[str, int | None]] = []
        if not ports:
            pairs.extend((ip, None) for ip in addresses)
        for port in ports:
            pairs.extend((ip, _int(port, "port")) for ip in addresses)
        count += len(pairs)
        for ip, port in pairs:
            if len(shown) < 3:
                host = f"[{ip}]" if ":" in ip else ip
                shown.append(ip if port is None else f"{host}:{port}")
    text = ",".join(shown)
    return f"{text} + {count - 3} more..." if count > 3 else text


def _subjects(binding: Obj) -> list[Cell]:
    users, groups, accounts = [], [], []
    for subject in _list(binding, "subjects"):
        kind, name = _str(subject, "kind"), _str(subject, "name")
        if kind == "User":
            users.append(name)
        elif kind == "Group":
            groups.append(name)
        elif kind == "ServiceAccount":
            accounts.append(f"{_str(subject, 'namespace')}/{name}")
    return [", ".join(users), ", ".join(groups), ", ".join(accounts)]


def _binding_row(binding: Obj, ctx: Context) -> list[Cell]:
    role = f"{_str(binding, 'roleRef', 'kind')}/{_str(binding, 'roleRef', 'name')}"
    return [_name(binding), role, _age(binding, ctx), *_subjects(binding)]


def _pvc_row(claim: Obj, ctx: Context) -> list[Cell]:
    phase = _str(claim, "status", "phase")
    if _get(claim, "metadata", "deletionTimestamp") is not None:
        phase = "Terminating"
    volume = _str(claim, "spec", "volumeName")
    capacity = access = ""
    if volume:
        capacity = str(_get(claim, "status", "capacity", "storage") or "")
        access = _access_modes(_list(claim, "status", "accessModes"))
    storage_class = _str(claim, "spec", "storageClassName") or _str(
        claim, "metadata", "annotations", "volume.beta.kubernetes.io/storage-class"
    )
    return [
        _name(claim),
        phase,
        volume,
        capacity,
        access,
        storage_class,
        _str(claim, "spec", "volumeAttributesClassName") or "<unset>",
        _age(claim, ctx),
        _str(claim, "spec", "volumeMode") or "<unset>",
    ]


def _access_modes(modes: Sequence[Any]) -> str:
    """helper.GetAccessModesAsString: RWO, ROX, RWX, RWOP in that order."""
    short = {
        "ReadWriteOnce": "RWO",
        "ReadOnlyMany": "ROX",
        "ReadWriteMany": "RWX",
        "ReadWriteOncePod": "RWOP",
    }
    return ",".join(short[m] for m in short if m in modes)


def _ingress_row(ingress: Obj, ctx: Context) -> list[Cell]:
    rules = _list(ingress, "spec", "rules")
    hosts = [_str(r, "host") for r in rules[:3] if _str(r, "host")]
    hosts_text = ",".join(hosts) or "*"
    if len(rules) > 3 and hosts:
        hosts_text = f"{hosts_text} + {len(rules) - 3} more..."
    found = sorted(
        {
            _str(i, "ip") or _str(i, "hostname")
            for i in _list(ingress, "status", "loadBalancer", "ingress")
        }
        - {""}
    )
    address = ",".join(found)
    if len(address) > 16:
        address = address[:13] + "..."
    return [
        _name(ingress),
        _str(ingress, "spec", "ingressClassName") or "<none>",
        hosts_text,
        address,
        "80, 443" if _list(ingress, "spec", "tls") else "80",
        _age(ingress, ctx),
    ]


def _storage_class_row(storage_class: Obj, ctx: Context) -> list[Cell]:
    annotations = _map(storage_class, "metadata", "annotations")
    default = any(
        annotations.get(key) == "true"
        for key in (
            "storageclass.kubernetes.io/is-default-class",
            "storageclass.beta.kubernetes.io/is-default-class",
        )
    )
    expansion = _get(storage_class, "allowVolumeExpansion")
    return [
        _name(storage_class) + (" (default)" if default else ""),
        _str(storage_class, "provisioner"),
        _str(storage_class, "reclaimPolicy") or "Delete",
        _str(storage_class, "volumeBindingMode") or "Immediate",
        "true" if expansion is True else "false",
        _age(storage_class, ctx),
    ]


def _pdb_row(budget: Obj, ctx: Context) -> list[Cell]:
    def bound(field: str) -> str:
        value = _get(budget, "spec", field)
        return "N/A" if value is None else str(value)

    return [
        _name(budget),
        bound("minAvailable"),
        bound("maxUnavailable"),
        _int(budget, "status", "disruptionsAllowed"),
        _age(budget, ctx),
    ]


def _priority_class_row(priority_class: Obj, ctx: Context) -> list[Cell]:
    return [
        _name(priority_class),
        _int(priority_class, "value"),
        "true" if _get(priority_class, "globalDefault") is True else "false",
        _age(priority_class, ctx),
        _str(priority_class, "preemptionPolicy"),
    ]


def _simple(*cells: Callable[[Obj], Cell]) -> RowFunc:
    """A row of NAME, the given cells, then AGE."""

    def row(obj: Obj, ctx: Context) -> list[Cell]:
        return [_name(obj), *(cell(obj) for cell in cells), _age(obj, ctx)]

    return row


def _columns(*names: str, wide: Iterable[str] = ()) -> tuple[Column, ...]:
    return (*(Column(n) for n in names), *(Column(n, 1) for n in wide))


_TEMPLATE_WIDE = ("Containers", "Images", "Selector")

# By kind; the column names are printers.go's, upper-cased when printed.
TABLES: dict[str, TableSpec] = {
    "Pod": TableSpec(
        _columns(
            "Name",
            "Ready",
            "Status",
            "Restarts",
            "Age",
            wide=("IP", "Node", "Nominated Node", "Readiness Gates"),
        ),
        _pod_row,
    ),
    "Node": TableSpec(
        _columns(
            "Name",
            "Status",
            "Roles",
            "Age",
            "Version",
            wide=("Internal-IP", "External-IP", "OS-Image", "Kernel-Version", "Container-Runtime"),
        ),
        _node_row,
    ),
    "Namespace": TableSpec(
        _columns("Name", "Status", "Age"),
        _simple(lambda o: _str(o, "status", "phase") or "Active"),
    ),
    "Service": TableSpec(
        _columns("Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", wide=("Selector",)),
        _service_row,
    ),
    "Secret": TableSpec(
        _columns("Name", "Type", "Data", "Age"),
        _simple(
            lambda o: _str(o, "type") or "Opaque",
            lambda o: len(_map(o, "data")) + len(_map(o, "stringData")),
        ),
    ),
    "ConfigMap": TableSpec(
        _columns("Name", "Data", "Age"),
        _simple(lambda o: len(_map(o, "data")) + len(_map(o, "binaryData"))),
    ),
    "ServiceAccount": TableSpec(
        _columns("Name", "Secrets", "Age"), _simple(lambda o: len(_list(o, "secrets")))
    ),
    "Endpoints": TableSpec(_columns("Name", "Endpoints", "Age"), _simple(_endpoints_text)),
    "Event": TableSpec(
        (
            Column("Last Seen"),
            Column("Type"),
            Column("Reason"),
            Column("Object"),
            Column("Subobject", 1),
            Column("Source", 1),
            Column("Message"),
            Column("First Seen", 1),
            Column("Count", 1),
            Column("Name", 1),
        ),
        _event_row,
    ),
    "Deployment": TableSpec(
        _columns("Name", "Ready", "Up-to-date", "Available", "Age", wide=_TEMPLATE_WIDE),
        _deployment_row,
    ),
    "ReplicaSet": TableSpec(
        _columns("Name", "Desired", "Current", "Ready", "Age", wide=_TEMPLATE_WIDE),
        _replica_set_row,
    ),
    "ReplicationController": TableSpec(
        _columns("Name", "Desired", "Current", "Ready", "Age", wide=_TEMPLATE_WIDE),
        _replication_controller_row,
    ),
    "StatefulSet": TableSpec(
        _columns("Name", "Ready", "Age", wide=("Containers", "Images")), _stateful_set_row
    ),
    "DaemonSet": TableSpec(
        _columns(
            "Name",
            "Desired",
            "Current",
            "Ready",
            "Up-to-date",
            "Available",
            "Node Selector",
            "Age",
            wide=_TEMPLATE_WIDE,
        ),
        _daemon_set_row,
    ),
    "Job": TableSpec(
        _columns("Name", "Status", "Completions", "Duration", "Age", wide=_TEMPLATE_WIDE),
        _job_row,
    ),
    "CronJob": TableSpec(
        _columns(
            "Name",
            "Schedule",
            "Timezone",
            "Suspend",
            "Active",
            "Last Schedule",
            "Age",
            wide=_TEMPLATE_WIDE,
        ),
        _cron_job_row,
    ),
    "Lease": TableSpec(
        _columns("Name", "Holder", "Age"), _simple(lambda o: _str(o, "spec", "holderIdentity"))
    ),
    "RoleBinding": TableSpec(
        _columns("Name", "Role", "Age", wide=("Users", "Groups", "ServiceAccounts")),
        _binding_row,
    ),
    "ClusterRoleBinding": TableSpec(
        _columns("Name", "Role", "Age", wide=("Users", "Groups", "ServiceAccounts")),
        _binding_row,
    ),
    "PersistentVolumeClaim": TableSpec(
        _columns(
            "Name",
            "Status",
            "Volume",
            "Capacity",
            "Access Modes",
            "StorageClass",
            "VolumeAttributesClass",
            "Age",
            wide=("VolumeMode",),
        ),
        _pvc_row,
    ),
    "Ingress": TableSpec(
        _columns("Name", "Class", "Hosts", "Address", "Ports", "Age"), _ingress_row
    ),
    "StorageClass": TableSpec(
        _columns(
            "Name",
            "Provisioner",
            "ReclaimPolicy",
            "VolumeBindingMode",
            "AllowVolumeExpansion",
            "Age",
        ),
        _storage_class_row,
    ),
    "PodDisruptionBudget": TableSpec(
        _columns("Name", "Min Available", "Max Unavailable", "Allowed Disruptions", "Age"),
        _pdb_row,
    ),
    "PriorityClass": TableSpec(
        _columns("Name", "Value", "Global-Default", "Age", wide=("PreemptionPolicy",)),
        _priority_class_row,
    ),
}

# Built-in kinds without a printer get the API server's default table (rest's
# defaultTableConvertor); custom resources without printer columns get the CRD default.
DEFAULT_TABLE = TableSpec(
    _columns("Name", "Created At"), lambda obj, ctx: [_name(obj), created_at(obj)]
)
CUSTOM_RESOURCE_TABLE = TableSpec(
    _columns("Name", "Age"), lambda obj, ctx: [_name(obj), _age(obj, ctx)]
)


def table_for(kind: str, *, builtin: bool = True) -> TableSpec:
    return TABLES.get(kind) or (DEFAULT_TABLE if builtin else CUSTOM_RESOURCE_TABLE)


# --- laying a table out -----------------------------------------------------------------------


def _cell_text(cell: Cell) -> str:
    if cell is None:
        return ""
    if isinstance(cell, bool):
        return "true" if cell else "false"
    text = str(cell)
    newline = text.find("\n")
    return text if newline < 0 else text[:newline] + "..."


class TableWriter:
    """Go's tabwriter as kubectl sets it up (minwidth 6, padding 3, RememberWidths): a column is
    as wide as its widest cell plus 3, at least 6; the last cell of a line is not padded. Widths
    only grow from one ``write`` to the next, so rows printed while watching stay aligned."""

    MIN_WIDTH = 6
    PADDING = 3

    def __init__(self) -> None:
        self._widths: list[int] = []

    def write(self, lines: Sequence[Sequence[str]]) -> str:
        for line in lines:
            for index, cell in enumerate(line[:-1]):
                width = max(self.MIN_WIDTH, len(cell) + self.PADDING)
                if index >= len(self._widths):
                    self._widths.append(width)
                elif width > self._widths[index]:
                    self._widths[index] = width
        out = []
        for line in lines:
            padded = [cell.ljust(self._widths[i]) for i, cell in enumerate(line[:-1])]
            out.append("".join([*padded, *line[-1:]]) + "\n")
        return "".join(out)


@dataclass
class TablePrinter:
    """Prints rows of one kind: the header once (before the first row), NAMESPACE first when
    listing all namespaces, LABELS last with ``--show-labels``."""

    spec: TableSpec
    wide: bool = False
    with_namespace: bool = False
    show_labels: bool = False
    no_headers: bool = False
    kind_prefix: str = ""  # "pod": NAME cells read "pod/web" (kubectl, several kinds at once)
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        self._writer = TableWriter()
        self._printed_header = False

    def _shown(self) -> list[int]:
        return [i for i, c in enumerate(self.spec.columns) if self.wide or c.priority == 0]

    def header(self) -> list[str]:
        names = [self.spec.columns[i].name.upper() for i in self._shown()]
        if self.with_namespace:
            names.insert(0, "NAMESPACE")
        if self.show_labels:
            names.append("LABELS")
        return names

    def row(self, obj: Obj) -> list[str]:
        cells = self.spec.row(obj, Context(self.now()))
        texts = [_cell_text(cells[i]) if i < len(cells) else "" for i in self._shown()]
        if self.kind_prefix:
            shown = [self.spec.columns[i].name for i in self._shown()]
            if "Name" in shown:
                at = shown.index("Name")
                texts[at] = f"{self.kind_prefix}/{texts[at]}"
        if self.with_namespace:
            texts.insert(0, _str(obj, "metadata", "namespace"))
        if self.show_labels:
            texts.append(format_labels(_map(obj, "metadata", "labels")))
        return texts

    def render(self, objects: Iterable[Obj]) -> str:
        """The lines for ``objects``, the header first if it has not been printed yet."""
        lines = [self.row(obj) for obj in objects]
        if lines and not self._printed_header and not self.no_headers:
            lines.insert(0, self.header())
        if lines:
            self._printed_header = True
        return self._writer.write(lines)


# --- -o json, -o yaml, -o name ----------------------------------------------------------------

_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028"}
_JSON_ESCAPES["\u2029"] = "\\u2029"


def to_json(obj: Any) -> str:
    """kubectl's ``-o json``: json.MarshalIndent(obj, "", "    ") (map keys sorted, ``<>&``
    escaped as Go escapes them) and a newline."""
    text = json.dumps(obj, indent=4, sort_keys=True, ensure_ascii=False)
    for raw, escaped in _JSON_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text + "\n"


def _go_yaml_less(a: str, b: str) -> bool:
    """go-yaml v2's keyList.Less for two string keys: letters compare as runes, a non-letter
    sorts before a letter, and runs of digits compare as numbers."""
    for i in range(min(len(a), len(b))):
        if a[i] == b[i]:
            continue
        a_letter, b_letter = a[i].isalpha(), b[i].isalpha()
        if a_letter and b_letter:
            return a[i] < b[i]
        if a_letter or b_letter:
            return b_letter
        a_number = b_number = 0
        if a[i] == "0" or b[i] == "0":
            j = i - 1
            while j >= 0 and a[j].isdigit():
                if a[j] != "0":
                    a_number = b_number = 1
                    break
                j -= 1
        a_end = i
        while a_end < len(a) and a[a_end].isdigit():
            a_number = a_number * 10 + int(a[a_end])
            a_end += 1
        b_end = i
        while b_end < len(b) and b[b_end].isdigit():
            b_number = b_number * 10 + int(b[b_end])
            b_end += 1
        if a_number != b_number:
            return a_number < b_number
        if a_end != b_end:
            return a_end < b_end
        return a[i] < b[i]
    return len(a) < len(b)


def _go_yaml_order(a: str, b: str) -> int:
    if _go_yaml_less(a, b):
        return -1
    return 1 if _go_yaml_less(b, a) else 0


# go-yaml v2 (YAML 1.1) also reads these as booleans; PyYAML does not, so quote them ourselves.
_GO_YAML_BOOLEANS = frozenset({"y", "Y", "n", "N"})


class _KubectlDumper(yaml.SafeDumper):
    """PyYAML set up to write what go-yaml v2 writes for kubectl: a string that would read back
    as another type is double-quoted, a multi-line string is a literal block, keys in go-yaml's
    order, sequences not indented under their key."""


_OTHER_TYPES = frozenset(
    "tag:yaml.org,2002:" + name for name in ("bool", "int", "float", "null", "timestamp", "merge")
)


def _go_number(value: str) -> bool:
    """Whether go-yaml would read ``value`` as a number (strconv's rules, "_" removed)."""
    if not value or value[0] not in "+-.0123456789":
        return False
    plain = value.replace("_", "")
    try:
        float(plain)
    except ValueError:
        try:
            int(plain, 0)
        except ValueError:
            return False
    return True


def _reads_as_other_type(dumper: yaml.SafeDumper, value: str) -> bool:
    resolved = dumper.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    return (
        resolved in _OTHER_TYPES or value in _GO_YAML_BOOLEANS or value == "" or _go_number(value)
    )


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    tag = "tag:yaml.org,2002:str"
    if "\n" in value:
        return dumper.represent_scalar(tag, value, style="|")
    if "\t" in value or _reads_as_other_type(dumper, value):
        return dumper.represent_scalar(tag, value, style='"')
    return dumper.represent_scalar(tag, value)


def _represent_dict(dumper: yaml.SafeDumper, value: Mapping[str, Any]) -> yaml.MappingNode:
    keys = sorted(value, key=functools.cmp_to_key(_go_yaml_order))
    return dumper.represent_mapping("tag:yaml.org,2002:map", [(k, value[k]) for k in keys])


# go-yaml has no "value" (=) or "yaml" (!, &, *) implicit types: those strings stay plain
# where the syntax allows it.
_KubectlDumper.yaml_implicit_resolvers = {
    first: [
        (tag, regexp)
        for tag, regexp in resolvers
        if tag not in ("tag:yaml.org,2002:value", "tag:yaml.org,2002:yaml")
    ]
    for first, resolvers in yaml.SafeDumper.yaml_implicit_resolvers.items()
}
_KubectlDumper.add_representer(str, _represent_str)
_KubectlDumper.add_representer(dict, _represent_dict)


def to_yaml(obj: Any) -> str:
    """kubectl's ``-o yaml`` (sigs.k8s.io/yaml over go-yaml v2: 80-column folding, two-space
    indent)."""
    text: str = yaml.dump(
        obj,
        Dumper=_KubectlDumper,
        default_flow_style=False,
        allow_unicode=True,
        sort_keys=False,
        width=80,
    )
    return text


def as_list(items: Sequence[Any]) -> dict[str, Any]:
    """What kubectl prints for several objects with -o json/yaml."""
    return {
        "apiVersion": "v1",
        "items": list(items),
        "kind": "List",
        "metadata": {"resourceVersion": ""},
    }


def kind_name(kind: str, group: str) -> str:
    """schema.GroupKind.String() lower-cased: "pod", "deployment.apps"."""
    return f"{kind}.{group}".lower() if group else kind.lower()


def name_line(kind: str, group: str, name: str, operation: str = "") -> str:
    """``-o name`` and apply's lines: "pod/web", "deployment.apps/web created"."""
    suffix = f" {operation}" if operation else ""
    return f"{kind_name(kind, group)}/{name}{suffix}\n"


def short_line(kind: str, group: str, name: str, operation: str) -> str:
    """delete's lines: 'pod "web" deleted'."""
    return f"{kind_name(kind, group)} {json.dumps(name)} {operation}\n"
