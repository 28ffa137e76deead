"""From a pod template to what a local process needs: argv, env, mounts, user, probes.

Kubernetes' rules kept here: envFrom first, then env (later wins); ``$(VAR)`` in env values,
command and args expands against the variables defined so far (``$$`` escapes); the downward
API's metadata.name, metadata.namespace and status.podIP; ConfigMap and Secret volumes as files
(``items`` and ``defaultMode`` honoured; Secret data is base64); emptyDir per pod; a
volumeClaimTemplate or persistentVolumeClaim as a directory that outlives the pod; subPath.
Anything else the harness does not know is an error, never silently dropped.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.k8s_harness.manifests import Manifests, Obj

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    readonly: bool = False
    is_file: bool = False


@dataclass(frozen=True)
class HttpProbe:
    path: str
    port: int
    scheme: str = "HTTP"


@dataclass
class ContainerRun:
    """One start of one container, as pod_init.py runs it."""

    name: str
    hostname: str
    argv: list[str]
    env: dict[str, str]
    mounts: list[Mount]
    uid: int = 0
    gid: int = 0
    groups: list[int] = field(default_factory=list)
    workdir: str = "/"
    readiness: HttpProbe | None = None
    grace_seconds: float = 30.0
    readonly_root: bool = False  # securityContext.readOnlyRootFilesystem

    def init_spec(self) -> dict[str, Any]:
        return {
            "hostname": self.hostname,
            "argv": self.argv,
            "env": self.env,
            "mounts": [m.__dict__ for m in self.mounts],
            "uid": self.uid,
            "gid": self.gid,
            "groups": self.groups,
            "workdir": self.workdir,
            "reveal": hidden_interpreter_paths(self.uid) if self.uid else [],
            "readonly_root": self.readonly_root,
        }


def hidden_interpreter_paths(uid: int) -> list[str]:
    """Directories on the way to this interpreter that ``uid`` may not enter: for each, the
    child to keep reachable (pod_init puts a tmpfs over the parent and binds the child back)."""
    found: list[str] = []
    for path in {Path(os.path.realpath(sys.executable)), Path(sys.prefix).resolve()}:
        for parent in reversed(path.parents):
            if parent == Path("/"):
                continue
            st = parent.parent.stat()
            if parent.parent != Path("/") and not st.st_mode & 0o001 and st.st_uid != uid:
                child = str(parent)
                if child not in found:
                    found.append(child)
                break
    return found


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)``: a defined variable is replaced, an undefined one kept as is."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return VAR_REF.sub(one, text)


def decode_secret(secret: Obj) -> dict[str, bytes]:
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    data.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
    return data


def configmap_data(configmap: Obj) -> dict[str, bytes]:
    data = {k: str(v).encode() for k, v in (configmap.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (configmap.get("binaryData") or {}).items()})
    return data


@dataclass
class PodContext:
    """What a pod's containers are built from besides their template."""

    pod_name: str
    namespace: str
    pod_ip: str
    objects: Manifests  # the ConfigMaps and Secrets that exist now
    pod_dir: Path  # per pod: emptyDirs, materialized volumes
    pvc_dir: Callable[[str, int, int], Path]  # claim name, uid, fsGroup -> its directory
    claim_templates: list[str] = field(default_factory=list)
    subdomain: str = ""


def build_container(template: Obj, ctx: PodContext, container: str | None = None) -> ContainerRun:
    """The first container of ``template`` (or the one named), resolved for ``ctx``."""
    spec = template["spec"]
    containers = spec["containers"]
    chosen = containers[0] if container is None else _named(containers, container)
    pod_security = spec.get("securityContext") or {}
    security = {**pod_security, **(chosen.get("securityContext") or {})}
    uid = int(security.get("runAsUser", 0))
    gid = int(security.get("runAsGroup", uid if "runAsUser" in security else 0))
    fs_group = pod_security.get("fsGroup")
    groups = sorted({gid, *([int(fs_group)] if fs_group is not None else [])})
    env = _env(chosen, ctx)
    argv = [expand(a, env) for a in [*(chosen.get("command") or []), *(chosen.get("args") or [])]]
    if not argv:
        raise ValueError(f"container {chosen['name']} sets no command (the chart must)")
    volumes = _volumes(spec, ctx, uid, int(fs_group) if fs_group is not None else gid)
    mounts = [_mount(m, volumes) for m in chosen.get("volumeMounts") or []]
    return ContainerRun(
        name=chosen["name"],
        hostname=ctx.pod_name,
        argv=argv,
        env=env,
        mounts=mounts,
        uid=uid,
        gid=gid,
        groups=groups,
        workdir=chosen.get("workingDir") or "/",
        readiness=_probe(chosen),
        grace_seconds=float(spec.get("terminationGracePeriodSeconds", 30)),
        readonly_root=bool(security.get("readOnlyRootFilesystem", False)),
    )


def _named(items: list[Obj], name: str) -> Obj:
    for item in items:
        if item["name"] == name:
            return item
    raise KeyError(name)


def _env(container: Obj, ctx: PodContext) -> dict[str, str]:
    env = {
        "PATH": f"{Path(sys.executable).parent}:{BASE_PATH}",
        "HOSTNAME": ctx.pod_name,
        "HOME": "/",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref = source["configMapRef"]
            obj = ctx.objects.find("ConfigMap", ref["name"])
            data = configmap_data(obj) if obj else _missing(ref, "ConfigMap")
        elif "secretRef" in source:
            ref = source["secretRef"]
            obj = ctx.objects.find("Secret", ref["name"])
            data = decode_secret(obj) if obj else _missing(ref, "Secret")
        else:
            raise ValueError(f"unknown envFrom source {source}")
        env.update({prefix + k: v.decode() for k, v in data.items()})
    for var in container.get("env") or []:
        value = _env_value(var, env, ctx)
        if value is not None:
            env[var["name"]] = value
    return env


def _missing(ref: Obj, kind: str) -> dict[str, bytes]:
    if ref.get("optional"):
        return {}
    raise KeyError(f"{kind} {ref['name']} does not exist (the pod would not start)")


def _env_value(var: Obj, env: Mapping[str, str], ctx: PodContext) -> str | None:
    if "valueFrom" not in var:
        return expand(str(var.get("value", "")), env)
    source = var["valueFrom"]
    if "fieldRef" in source:
        path = source["fieldRef"]["fieldPath"]
        fields = {
            "metadata.name": ctx.pod_name,
            "metadata.namespace": ctx.namespace,
            "status.podIP": ctx.pod_ip,
            "status.podIPs": ctx.pod_ip,
        }
        if path not in fields:
            raise ValueError(f"the harness has no downward API field {path}")
        return fields[path]
    for key, kind, reader in (
        ("configMapKeyRef", "ConfigMap", configmap_data),
        ("secretKeyRef", "Secret", decode_secret),
    ):
        if key in source:
            ref = source[key]
            obj = ctx.objects.find(kind, ref["name"])
            data = reader(obj) if obj else _missing(ref, kind)
            if ref["key"] not in data:
                if ref.get("optional"):
                    return None
                raise KeyError(f"{kind} {ref['name']} has no key {ref['key']}")
            return data[ref["key"]].decode()
    raise ValueError(f"the harness does not support env source {source}")


def _volumes(spec: Obj, ctx: PodContext, uid: int, fs_group: int) -> dict[str, tuple[Path, bool]]:
    """Volume name -> (directory on the host, read-only)."""
    found: dict[str, tuple[Path, bool]] = {}
    for claim in ctx.claim_templates:
        found[claim] = (ctx.pvc_dir(f"{claim}-{ctx.pod_name}", uid, fs_group), False)
    for volume in spec.get("volumes") or []:
        name = volume["name"]
        if "emptyDir" in volume:
            path = ctx.pod_dir / "empty" / name
            if not path.exists():
                path.mkdir(parents=True)
                path.chmod(0o1777)
            found[name] = (path, False)
        elif "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]
            found[name] = (
                ctx.pvc_dir(claim["claimName"], uid, fs_group),
                bool(claim.get("readOnly")),
            )
        elif "configMap" in volume or "secret" in volume:
            found[name] = (_files_volume(volume, ctx, fs_group), True)
        else:
            raise ValueError(f"the harness does not support volume {volume}")
    return found


def _files_volume(volume: Obj, ctx: PodContext, fs_group: int) -> Path:
    """Writes a ConfigMap or Secret volume's files afresh (as the kubelet refreshes them)."""
    reader: Callable[[Obj], dict[str, bytes]]
    if "configMap" in volume:
        source, kind, reader = volume["configMap"], "ConfigMap", configmap_data
        name = source["name"]
    else:
        source, kind, reader = volume["secret"], "Secret", decode_secret
        name = source["secretName"]
    obj = ctx.objects.find(kind, name)
    data = reader(obj) if obj else _missing({**source, "name": name}, kind)
    mode = int(source.get("defaultMode", 0o644))
    items = source.get("items")
    files = (
        {i["path"]: (data[i["key"]], int(i.get("mode", mode))) for i in items}
        if items
        else {k: (v, mode) for k, v in data.items()}
    )
    path = ctx.pod_dir / "volumes" / str(volume["name"])
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    path.chmod(0o755)
    for relative, (content, file_mode) in files.items():
        target = path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        os.chown(target, 0, fs_group)
        target.chmod(file_mode | (0o040 if fs_group else 0))
    return path


def _mount(mount: Obj, volumes: dict[str, tuple[Path, bool]]) -> Mount:
    if mount["name"] not in volumes:
        raise KeyError(f"volumeMount {mount['name']} names no volume")
    source, readonly = volumes[mount["name"]]
    sub_path = mount.get("subPath")
    if sub_path:
        source = source / sub_path
        if not source.exists():
            source.mkdir(parents=True)  # the kubelet makes a missing subPath a directory
    return Mount(
        source=str(source),
        target=mount["mountPath"],
        readonly=readonly or bool(mount.get("readOnly")),
        is_file=source.is_file(),
    )


def _probe(container: Obj) -> HttpProbe | None:
    probe = container.get("readinessProbe")
    if not probe:
        return None
    if "httpGet" not in probe:
        raise ValueError(f"the harness only runs httpGet readiness probes, not {probe}")
    get = probe["httpGet"]
    port = get["port"]
    if isinstance(port, str) and not port.isdigit():
        port = _named(container.get("ports") or [], port)["containerPort"]
    return HttpProbe(path=get.get("path", "/"), port=int(port), scheme=get.get("scheme", "HTTP"))
