"""The encryption provider configuration file, read as kube-apiserver reads
``--encryption-provider-config``: the documented example loads; every problem its validation
finds is reported in its words, with the file named, and never with a key in the message.
"""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import pytest

from etcdpy.k8s.encryption import EncryptionConfig, EncryptionConfigError

KEY32 = base64.b64encode(bytes(range(32))).decode()
KEY16 = base64.b64encode(b"0123456789abcdef").decode()
KEY24 = base64.b64encode(bytes(range(24))).decode()


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "encryption.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def load_error(tmp_path: Path, body: str) -> EncryptionConfigError:
    path = write(tmp_path, body)
    with pytest.raises(EncryptionConfigError) as caught:
        EncryptionConfig.load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    for secret in (KEY32, KEY16, KEY24):
        assert secret not in message
    return caught.value


HEADER = """\
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
"""


def test_the_kubernetes_documentation_example_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        HEADER
        + f"""\
resources:
  - resources:
      - secrets
      - configmaps
      - pandas.awesome.bears.example
    providers:
      - identity: {{}}
      - aesgcm:
          keys:
            - name: key1
              secret: {KEY16}
            - name: key2
              secret: {KEY32}
      - aescbc:
          keys:
            - name: key1
              secret: {KEY32}
      - secretbox:
          keys:
            - name: key1
              secret: {KEY32}
  - resources:
      - events
    providers:
      - identity: {{}}
  - resources:
      - '*.apps'
    providers:
      - aescbc:
          keys:
          - name: key2
            secret: {KEY24}
  - resources:
      - '*.*'
    providers:
      - aescbc:
          keys:
          - name: key3
            secret: {KEY32}
""",
    )
    cfg = EncryptionConfig.load(path)
    assert cfg.resources == [
        "secrets",
        "configmaps",
        "pandas.awesome.bears.example",
        "events",
        "*.apps",
        "*.*",
    ]
    secrets = cfg.transformer("secrets")
    assert secrets is not None
    assert secrets.provider_names == ("identity", "aesgcm", "aescbc", "secretbox")
    assert not secrets.writes_encrypted
    custom = cfg.transformer("pandas.awesome.bears.example")
    assert custom is not None and custom.provider_names[0] == "identity"
    deployments = cfg.transformer("deployments.apps")
    assert deployments is not None and deployments.writes_encrypted
    roles = cfg.transformer("roles.rbac.authorization.k8s.io")
    assert roles is not None and roles.provider_names == ("aescbc",)
    assert str(path) in cfg.source


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "resources: []\n",
            "error while parsing file: resources: Required value: at least one resources is "
            "required",
        ),
        (
            "resources:\n  - providers:\n      - identity: {}\n",
            "error while parsing file: resources[0].resources: Required value: at least one "
            "resources[0].resources is required",
        ),
        (
            "resources:\n  - resources: [secrets]\n",
            "error while parsing file: resources[0].providers: Required value: at least one "
            "resources[0].providers is required",
        ),
        (
            "resources:\n  - resources: [secrets]\n    providers:\n      - identity:\n",
            "error while parsing file: resources[0].providers[0]: Invalid value: {}: provider "
            "does not contain any of the expected providers: KMS, AESGCM, AESCBC, Secretbox, "
            "Identity",
        ),
        (
            "resources:\n  - resources: [secrets]\n    providers:\n"
            "      - identity: {}\n        aescbc: {keys: [{name: k, secret: " + KEY32 + "}]}\n",
            "error while parsing file: resources[0].providers[0]: Invalid value: "
            '[]string{"aescbc", "identity"}: more than one provider specified in a single '
            "element, should split into different list elements",
        ),
        (
            "resources:\n  - resources: [secrets]\n    providers:\n      - aescbc: {keys: []}\n",
            "error while parsing file: resources[0].providers[0].aescbc.keys: Required value: "
            "at least one keys is required",
        ),
        (
            "resources:\n  - resources: [secrets]\n    providers:\n"
            "      - aesgcm: {keys: [{secret: " + KEY32 + "}]}\n",
            "error while parsing file: resources[0].providers[0].aesgcm.keys[0].name: Required "
            "value: name is a mandatory field for a key",
        ),
        (
            "resources:\n  - resources: [secrets]\n    providers:\n"
            "      - aesgcm: {keys: [{name: k}]}\n",
            "error while parsing file: resources[0].providers[0].aesgcm.keys[0].secret: "
            "Required value: secret is a mandatory field for a key",
        ),
        (
            "resources:\n  - resources: [secrets]\n    providers:\n"
            "      - aescbc: {keys: [{name: k, secret: 'not base64!'}]}\n",
            "error while parsing file: resources[0].providers[0].aescbc.keys[0].secret: Invalid "
            'value: "REDACTED": secrets must be base64 encoded',
        ),
        (
            "resources:\n  - resources: [secrets]\n    providers:\n"
            "      - aescbc: {keys: [{name: k, secret: c2hvcnQ=}]}\n",
            "error while parsing file: resources[0].providers[0].aescbc.keys[0].secret: Invalid "
            'value: "REDACTED": secret is not of the expected length, got 5, expected one of '
            "[16 24 32]",
        ),
        (
            "resources:\n  - resources: [secrets]\n    providers:\n"
            "      - secretbox: {keys: [{name: k, secret: " + KEY16 + "}]}\n",
            "error while parsing file: resources[0].providers[0].secretbox.keys[0].secret: "
            'Invalid value: "REDACTED": secret is not of the expected length, got 16, expected '
            "one of [32]",
        ),
        (
            "resources:\n  - resources: [secrets, secrets]\n    providers:\n      - identity: {}\n",
            "error while parsing file: resources[0].resources: Invalid value: "
            '[]string{"secrets", "secrets"}: the same resource cannot be specified multiple '
            "times",
        ),
        (
            "resources:\n  - resources: [secrets, '*.']\n    providers:\n      - identity: {}\n",
            "error while parsing file: resources[0].resources: Invalid value: "
            '[]string{"secrets", "*."}: using overlapping resources such as \'secrets\' and '
            "'*.' in the same resource list is not allowed as they will be masked",
        ),
        (
            "resources:\n  - resources: ['*']\n    providers:\n      - identity: {}\n",
            'error while parsing file: resources[0].resources[0]: Invalid value: "*": use '
            "'*.' to encrypt all the resources from core API group or *.* to encrypt all "
            "resources",
        ),
        (
            "resources:\n  - resources: [Secrets]\n    providers:\n      - identity: {}\n",
            'error while parsing file: resources[0].resources[0]: Invalid value: "Secrets": '
            "resource name should not contain capital letters",
        ),
        (
            "resources:\n  - resources: [serviceipallocations]\n    providers:\n"
            "      - identity: {}\n",
            "error while parsing file: resources[0].resources[0]: Invalid value: "
            '"serviceipallocations": resources which do not have REST API/s cannot be encrypted',
        ),
        (
            "resources:\n  - resources: [events.events.k8s.io]\n    providers:\n"
            "      - identity: {}\n",
            "error while parsing file: resources[0].resources[0]: Invalid value: "
            "\"events.events.k8s.io\": '*.events.k8s.io' objects are stored using the 'events' "
            "API group in etcd. Use 'events' instead in the config file",
        ),
        (
            "resources:\n  - resources: ['*.extensions']\n    providers:\n      - identity: {}\n",
            'error while parsing file: resources[0].resources[0]: Invalid value: "*.extensions": '
            "'extensions' group has been removed and cannot be used for encryption",
        ),
        (
            "resources:\n  - resources: ['secrets.*']\n    providers:\n      - identity: {}\n",
            'error while parsing file: resources[0].resources[0]: Invalid value: "secrets.*": '
            "encrypting the same resource across groups is not supported",
        ),
    ],
)
def test_validation_errors_are_the_api_servers(tmp_path: Path, body: str, expected: str) -> None:
    error = load_error(tmp_path, HEADER + body)
    assert str(error) == f"{tmp_path / 'encryption.yaml'}: {expected}"


def test_several_problems_are_all_reported_in_brackets(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        HEADER + "resources:\n  - resources: [Secrets]\n    providers:\n"
        "      - aescbc: {keys: [{name: '', secret: c2hvcnQ=}]}\n",
    )
    assert error.problems == (
        'resources[0].resources[0]: Invalid value: "Secrets": resource name should not contain '
        "capital letters",
        "resources[0].providers[0].aescbc.keys[0].name: Required value: name is a mandatory "
        "field for a key",
        'resources[0].providers[0].aescbc.keys[0].secret: Invalid value: "REDACTED": secret is '
        "not of the expected length, got 5, expected one of [16 24 32]",
    )
    assert str(error).endswith("error while parsing file: [" + ", ".join(error.problems) + "]")


def test_kms_is_refused_as_not_supported(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        HEADER + "resources:\n  - resources: [secrets]\n    providers:\n"
        "      - kms:\n          apiVersion: v2\n          name: vault\n"
        "          endpoint: unix:///tmp/kms.sock\n          timeout: 3s\n"
        "      - identity: {}\n",
    )
    assert error.problems == (
        "resources[0].providers[0].kms: Forbidden: KMS providers are not supported by etcdpy "
        "(it has no KMS plugin client); use aescbc, aesgcm or secretbox",
    )


def test_a_rule_masked_by_an_earlier_wildcard_is_refused(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        HEADER + "resources:\n"
        "  - resources: ['*.apps']\n    providers: [{identity: {}}]\n"
        "  - resources: [deployments.apps]\n    providers: [{identity: {}}]\n",
    )
    assert str(error).endswith(
        'error while building transformers: resource "deployments.apps" is masked by earlier '
        'rule "*.apps"'
    )
    error = load_error(
        tmp_path,
        HEADER + "resources:\n"
        "  - resources: ['*.*']\n    providers: [{identity: {}}]\n"
        "  - resources: [secrets]\n    providers: [{identity: {}}]\n",
    )
    assert str(error).endswith('resource "secrets" is masked by earlier rule "*.*"')


def test_unknown_fields_are_strict_decoding_errors(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        HEADER + "resources:\n  - resources: [secrets]\n    provider: []\n"
        "    providers:\n      - aescbc: {keys: [{name: k, secret: " + KEY32 + ", seed: 1}]}\n",
    )
    assert str(error).endswith(
        "error while parsing file: strict decoding error: "
        'unknown field "resources[0].provider", '
        'unknown field "resources[0].providers[0].aescbc.keys[0].seed"'
    )


def test_wrong_types_are_reported_not_crashed_on(tmp_path: Path) -> None:
    error = load_error(tmp_path, HEADER + "resources: secrets\n")
    assert "resources: expected a list" in str(error)
    error = load_error(
        tmp_path, HEADER + "resources:\n  - resources: [secrets]\n    providers: [aescbc]\n"
    )
    assert "resources[0].providers[0]: expected an object" in str(error)
    error = load_error(
        tmp_path,
        HEADER + "resources:\n  - resources: [secrets]\n    providers:\n"
        "      - aescbc: {keys: [{name: k, secret: 12345}]}\n",
    )
    assert "resources[0].providers[0].aescbc.keys[0].secret: expected a string" in str(error)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("resources: []\n", "Object 'Kind' is missing"),
        ("[1, 2]\n", "Object 'Kind' is missing"),
        (
            "apiVersion: apiserver.config.k8s.io/v2\nkind: EncryptionConfiguration\n",
            'no kind "EncryptionConfiguration" is registered for version '
            '"apiserver.config.k8s.io/v2"',
        ),
        (
            "apiVersion: v1\nkind: EncryptionConfig\n",
            'no kind "EncryptionConfig" is registered for version "v1"',
        ),
    ],
)
def test_wrong_documents_are_decoding_errors(tmp_path: Path, body: str, expected: str) -> None:
    error = load_error(tmp_path, body)
    path = tmp_path / "encryption.yaml"
    assert str(error).startswith(
        f"{path}: error while parsing file: error decoding encryption provider configuration "
        f'file "{path}": {expected}'
    )


def test_broken_yaml_does_not_quote_the_file(tmp_path: Path) -> None:
    error = load_error(
        tmp_path,
        HEADER + "resources:\n  - resources: [secrets]\n    providers:\n"
        "      - aescbc: {keys: [{name: k, secret: " + KEY32 + "}]\n",
    )
    assert "error decoding encryption provider configuration file" in str(error)
    assert "(line " in str(error)


def test_missing_and_empty_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(EncryptionConfigError) as caught:
        EncryptionConfig.load(missing)
    assert str(caught.value) == (
        f"{missing}: error while parsing file: error while loading file: error reading "
        f'encryption provider configuration file "{missing}": No such file or directory'
    )
    empty = tmp_path / "empty.yaml"
    empty.write_bytes(b"")
    with pytest.raises(EncryptionConfigError) as caught:
        EncryptionConfig.load(empty)
    assert str(caught.value).endswith(f'encryption provider configuration file "{empty}" is empty')
    assert isinstance(caught.value, ValueError)


def test_base64_with_line_breaks_is_accepted_as_go_does(tmp_path: Path) -> None:
    folded = KEY32[:20] + "\n" + KEY32[20:]
    cfg = EncryptionConfig.from_document(
        {
            "apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "EncryptionConfiguration",
            "resources": [
                {
                    "resources": ["secrets"],
                    "providers": [{"secretbox": {"keys": [{"name": "k", "secret": folded}]}}],
                }
            ],
        }
    )
    assert cfg.transformer("secrets") is not None
