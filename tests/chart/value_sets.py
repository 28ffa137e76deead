"""The value sets the chart tests lint, render and validate: the defaults and one set per
feature. Secrets named here need not exist: nothing is installed."""

from __future__ import annotations

from typing import Any

# Not a real key: the chart only stores it in a Secret.
JWT_KEY = "-----BEGIN PRIVATE KEY-----\nnot-a-real-key\n-----END PRIVATE KEY-----\n"

CLIENT_TLS = {"secureTransport": True, "existingSecret": "etcd-client-tls"}
PEER_MTLS = {"secureTransport": True, "enableAuthentication": True, "existingSecret": "etcd-peer"}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "replicas-1": {"replicaCount": 1},
    "replicas-3": {"replicaCount": 3},
    "replicas-5": {"replicaCount": 5},
    "client-tls": {"auth": {"client": CLIENT_TLS}},
    "client-mtls": {"auth": {"client": {**CLIENT_TLS, "enableAuthentication": True}}},
    "peer-tls": {"auth": {"peer": PEER_MTLS}},
    "auto-tls": {"auth": {"client": {"useAutoTLS": True}, "peer": {"useAutoTLS": True}}},
    "auth-simple": {
        "auth": {"rbac": {"create": True, "rootPassword": "s3cret"}, "token": {"type": "simple"}}
    },
    "auth-jwt": {
        "auth": {
            "rbac": {"create": True, "rootPassword": "s3cret"},
            "token": {"type": "jwt", "privateKey": {"key": JWT_KEY}, "ttl": "5m"},
        }
    },
    "auth-existing-secrets": {
        "auth": {
            "rbac": {
                "create": True,
                "existingSecret": "my-root",
                "existingSecretPasswordKey": "password",
            },
            "token": {"privateKey": {"existingSecret": "my-jwt", "filename": "key.pem"}},
        }
    },
    "persistence-off": {"persistence": {"enabled": False}},
    "networkpolicy-off": {"networkPolicy": {"enabled": False}},
    "networkpolicy-internal": {"networkPolicy": {"allowExternal": False}},
    "backups": {"disasterRecovery": {"enabled": True}, "defrag": {"enabled": True}},
    "backups-existing-claim": {
        "disasterRecovery": {
            "enabled": True,
            "pvc": {"existingClaim": "my-snapshots"},
            "cronjob": {"snapshotHistoryLimit": 7, "schedule": "0 * * * *"},
        }
    },
    "start-from-snapshot": {
        "startFromSnapshot": {
            "enabled": True,
            "existingClaim": "old-snapshots",
            "snapshotFilename": "db-20250101T000000Z",
        }
    },
    "pdb-max-unavailable": {"pdb": {"maxUnavailable": 1}},
    "extra-env": {
        "extraEnvVars": [{"name": "ETCD_HEARTBEAT_INTERVAL", "value": "200"}],
        "extraEnvVarsCM": "more-env",
        "extraEnvVarsSecret": "secret-env",
    },
    "scheduling": {
        "podAntiAffinityPreset": "hard",
        "nodeAffinityPreset": {"type": "soft", "key": "disk", "values": ["ssd"]},
        "tolerations": [{"key": "etcd", "operator": "Exists", "effect": "NoSchedule"}],
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "etcdpy"}},
            }
        ],
        "priorityClassName": "high",
        "persistentVolumeClaimRetentionPolicy": {"enabled": True, "whenScaled": "Delete"},
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}},
    },
    "everything": {
        "replicaCount": 5,
        "auth": {
            "rbac": {"create": True, "rootPassword": "s3cret"},
            "token": {"privateKey": {"key": JWT_KEY}},
            "client": {**CLIENT_TLS, "enableAuthentication": True},
            "peer": PEER_MTLS,
        },
        "networkPolicy": {"allowExternal": False},
        "disasterRecovery": {"enabled": True},
        "defrag": {"enabled": True},
        "frontendProcesses": 2,
        "autoCompactionMode": "periodic",
        "autoCompactionRetention": "1h",
        "quotaBackendBytes": 4294967296,
        "metrics": {"enabled": True},
        "image": {"registry": "registry.example", "tag": "9.9.9"},
    },
}
