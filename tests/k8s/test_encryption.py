"""The value transformers of encryption at rest, checked against the API server's byte layout:
every value written here is opened again in the test with ``cryptography`` or PyNaCl directly,
from the documented layout, and a value recorded from kube-apiserver's AES-GCM opens here.
"""

from __future__ import annotations

import base64
from pathlib import Path

import nacl.bindings
import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from etcdpy.k8s import errors
from etcdpy.k8s.encryption import EncryptionConfig
from etcdpy.k8s.encryption_providers import TransformError

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))
KEY_16 = b"0123456789abcdef"
SECRET_KEY = b"/registry/secrets/default/db"
PLAIN = b'{"kind":"Secret","apiVersion":"v1","data":{"password":"aHVudGVyMg=="}}'


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def config(
    *providers: dict[str, object], resources: tuple[str, ...] = ("secrets",)
) -> EncryptionConfig:
    document = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{"resources": list(resources), "providers": list(providers)}],
    }
    return EncryptionConfig.from_document(document)


def keyed(kind: str, *keys: tuple[str, bytes]) -> dict[str, object]:
    return {kind: {"keys": [{"name": name, "secret": b64(secret)} for name, secret in keys]}}


IDENTITY: dict[str, object] = {"identity": {}}


def test_aescbc_layout_is_prefix_iv_and_pkcs7_cbc() -> None:
    t = config(keyed("aescbc", ("key1", KEY_A))).for_resource("secrets")
    assert t is not None
    stored = t.to_storage(PLAIN, SECRET_KEY)
    prefix = b"k8s:enc:aescbc:v1:key1:"
    assert stored.startswith(prefix) and PLAIN not in stored
    body = stored[len(prefix) :]
    iv, ciphertext = body[:16], body[16:]
    assert len(ciphertext) % 16 == 0 and len(ciphertext) == (len(PLAIN) // 16 + 1) * 16
    decryptor = Cipher(algorithms.AES(KEY_A), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(128).unpadder()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    assert unpadder.update(padded) + unpadder.finalize() == PLAIN
    assert t.from_storage(stored, SECRET_KEY) == (PLAIN, False)
    # CBC does not authenticate: the value opens under any key (as in the API server).
    assert t.from_storage(stored, b"/registry/secrets/other/x") == (PLAIN, False)


def test_aesgcm_layout_is_prefix_nonce_and_sealed_with_the_etcd_key_as_aad() -> None:
    t = config(keyed("aesgcm", ("k", KEY_16))).for_resource("secrets")
    assert t is not None
    stored = t.to_storage(PLAIN, SECRET_KEY)
    prefix = b"k8s:enc:aesgcm:v1:k:"
    assert stored.startswith(prefix) and PLAIN not in stored
    body = stored[len(prefix) :]
    assert len(body) == 12 + len(PLAIN) + 16
    assert AESGCM(KEY_16).decrypt(body[:12], body[12:], SECRET_KEY) == PLAIN
    assert t.from_storage(stored, SECRET_KEY) == (PLAIN, False)


def test_aesgcm_value_moved_to_another_key_does_not_open() -> None:
    t = config(keyed("aesgcm", ("k", KEY_A))).for_resource("secrets")
    assert t is not None
    stored = t.to_storage(PLAIN, SECRET_KEY)
    with pytest.raises(TransformError) as caught:
        t.from_storage(stored, b"/registry/secrets/attacker/copy")
    assert caught.value.reason == "cipher: message authentication failed"
    assert isinstance(caught.value, errors.InternalError)
    assert '"/registry/secrets/attacker/copy"' in caught.value.message


def test_aesgcm_known_answer_recorded_from_kube_apiserver() -> None:
    """aes_test.go's TestGCMLegacyDataCompatibility: key "snorlax_awesomes", authenticated data
    "bamboo", the API server's recorded nonce and sealed value (Go's string literal as bytes)."""
    recorded = (
        b"\x9f'\xc8\xfc\xea\x8aX\xc4g\xd8\xe47\xdb\xf2\xd8YU\xf9\xb4\xbd\x91/N\xf9g\xd7\x88"
        b"\xa0\xcb\x07y}\xac\n?\n\x08E`\\\xa8Z\xc8V+J\xe1"
    )
    t = config(keyed("aesgcm", ("legacy", b"snorlax_awesomes"))).for_resource("secrets")
    assert t is not None
    assert t.from_storage(b"k8s:enc:aesgcm:v1:legacy:" + recorded, b"bamboo") == (
        b"pandas are the best",
        False,
    )


def test_secretbox_layout_is_prefix_nonce_and_box() -> None:
    t = config(keyed("secretbox", ("sb", KEY_B))).for_resource("secrets")
    assert t is not None
    stored = t.to_storage(PLAIN, SECRET_KEY)
    prefix = b"k8s:enc:secretbox:v1:sb:"
    assert stored.startswith(prefix) and PLAIN not in stored
    body = stored[len(prefix) :]
    assert len(body) == 24 + 16 + len(PLAIN)
    # NaCl's crypto_secretbox_open (tag then ciphertext, as Go's secretbox.Seal writes it).
    assert nacl.bindings.crypto_secretbox_open(body[24:], body[:24], KEY_B) == PLAIN
    assert t.from_storage(stored, SECRET_KEY) == (PLAIN, False)


def test_writes_are_randomized() -> None:
    for kind, key in (("aescbc", KEY_A), ("aesgcm", KEY_A), ("secretbox", KEY_A)):
        t = config(keyed(kind, ("k", key))).for_resource("secrets")
        assert t is not None
        assert t.to_storage(PLAIN, SECRET_KEY) != t.to_storage(PLAIN, SECRET_KEY)


def test_rotation_old_key_still_reads_and_is_stale_new_writes_use_the_first_key() -> None:
    before = config(keyed("aescbc", ("key1", KEY_A)), IDENTITY).for_resource("secrets")
    after = config(keyed("aescbc", ("key2", KEY_B), ("key1", KEY_A)), IDENTITY).for_resource(
        "secrets"
    )
    assert before is not None and after is not None
    old = before.to_storage(PLAIN, SECRET_KEY)
    assert after.from_storage(old, SECRET_KEY) == (PLAIN, True)
    new = after.to_storage(PLAIN, SECRET_KEY)
    assert new.startswith(b"k8s:enc:aescbc:v1:key2:")
    assert after.from_storage(new, SECRET_KEY) == (PLAIN, False)
    # The old configuration cannot read the new key's value.
    with pytest.raises(TransformError) as caught:
        before.from_storage(new, SECRET_KEY)
    assert caught.value.reason == "no matching key was found for the provided AES transformer"


def test_provider_change_reads_the_old_provider_as_stale() -> None:
    cbc = config(keyed("aescbc", ("k", KEY_A))).for_resource("secrets")
    both = config(keyed("secretbox", ("s", KEY_B)), keyed("aescbc", ("k", KEY_A))).for_resource(
        "secrets"
    )
    assert cbc is not None and both is not None
    assert both.from_storage(cbc.to_storage(PLAIN, SECRET_KEY), SECRET_KEY) == (PLAIN, True)
    assert both.to_storage(PLAIN, SECRET_KEY).startswith(b"k8s:enc:secretbox:v1:s:")


def test_identity_first_writes_plaintext_and_still_reads_encrypted_values_as_stale() -> None:
    t = config(IDENTITY, keyed("aescbc", ("k", KEY_A))).for_resource("secrets")
    encrypting = config(keyed("aescbc", ("k", KEY_A))).for_resource("secrets")
    assert t is not None and encrypting is not None
    assert t.to_storage(PLAIN, SECRET_KEY) == PLAIN
    assert t.from_storage(PLAIN, SECRET_KEY) == (PLAIN, False)
    assert t.from_storage(encrypting.to_storage(PLAIN, SECRET_KEY), SECRET_KEY) == (PLAIN, True)


def test_identity_second_reads_plaintext_as_stale() -> None:
    t = config(keyed("aesgcm", ("k", KEY_A)), IDENTITY).for_resource("secrets")
    assert t is not None
    assert t.from_storage(PLAIN, SECRET_KEY) == (PLAIN, True)
    protobuf = b"k8s\x00\n\x0c\n\x02v1\x12\x06Secret"
    assert t.from_storage(protobuf, SECRET_KEY) == (protobuf, True)


def test_plaintext_without_identity_is_unreadable() -> None:
    t = config(keyed("aescbc", ("k", KEY_A))).for_resource("secrets")
    assert t is not None
    with pytest.raises(TransformError) as caught:
        t.from_storage(PLAIN, SECRET_KEY)
    assert caught.value.reason == "no matching prefix found"
    assert caught.value.message == (
        'unable to transform key "/registry/secrets/default/db": no matching prefix found'
    )


def test_identity_only_refuses_encrypted_values() -> None:
    t = config(IDENTITY).for_resource("secrets")
    encrypting = config(keyed("aescbc", ("k", KEY_A))).for_resource("secrets")
    assert t is not None and encrypting is not None
    with pytest.raises(TransformError) as caught:
        t.from_storage(encrypting.to_storage(PLAIN, SECRET_KEY), SECRET_KEY)
    assert caught.value.reason == "no matching prefix found"


def test_unknown_key_name_gives_the_api_servers_error() -> None:
    t = config(keyed("aescbc", ("key1", KEY_A)), IDENTITY).for_resource("secrets")
    other = config(keyed("aescbc", ("key9", KEY_B))).for_resource("secrets")
    sb = config(keyed("secretbox", ("s1", KEY_A))).for_resource("secrets")
    sb_other = config(keyed("secretbox", ("s2", KEY_A))).for_resource("secrets")
    assert t is not None and other is not None and sb is not None and sb_other is not None
    with pytest.raises(TransformError) as caught:
        t.from_storage(other.to_storage(PLAIN, SECRET_KEY), SECRET_KEY)
    assert caught.value.reason == "no matching key was found for the provided AES transformer"
    with pytest.raises(TransformError) as caught:
        sb.from_storage(sb_other.to_storage(PLAIN, SECRET_KEY), SECRET_KEY)
    assert caught.value.reason == (
        "no matching key was found for the provided Secretbox transformer"
    )


def test_same_key_name_with_a_different_secret_fails_to_open() -> None:
    writer = config(keyed("secretbox", ("k", KEY_A))).for_resource("secrets")
    reader = config(keyed("secretbox", ("k", KEY_B))).for_resource("secrets")
    gcm_writer = config(keyed("aesgcm", ("k", KEY_A))).for_resource("secrets")
    gcm_reader = config(keyed("aesgcm", ("k", KEY_B))).for_resource("secrets")
    assert writer and reader and gcm_writer and gcm_reader
    with pytest.raises(TransformError) as caught:
        reader.from_storage(writer.to_storage(PLAIN, SECRET_KEY), SECRET_KEY)
    assert caught.value.reason == "output array was not large enough for encryption"
    with pytest.raises(TransformError) as caught:
        gcm_reader.from_storage(gcm_writer.to_storage(PLAIN, SECRET_KEY), SECRET_KEY)
    assert caught.value.reason == "cipher: message authentication failed"


def test_two_failing_providers_with_the_same_prefix_aggregate_their_errors() -> None:
    """Two aescbc entries (rotating): a value neither opens gives both messages, bracketed."""
    t = config(keyed("aesgcm", ("a", KEY_A)), keyed("aesgcm", ("b", KEY_B))).for_resource("secrets")
    assert t is not None
    with pytest.raises(TransformError) as caught:
        t.from_storage(b"k8s:enc:aesgcm:v1:c:" + bytes(40), SECRET_KEY)
    assert caught.value.reason == "no matching key was found for the provided AES transformer"
    with pytest.raises(TransformError) as caught:
        t.from_storage(b"k8s:enc:aesgcm:v1:a:" + bytes(40), SECRET_KEY)
    assert caught.value.reason == (
        "[cipher: message authentication failed, "
        "no matching key was found for the provided AES transformer]"
    )


@pytest.mark.parametrize(
    ("kind", "body", "reason"),
    [
        ("aescbc", b"short", "the stored data was shorter than the required size"),
        ("aescbc", bytes(16 + 5), "the stored data is not a multiple of the block size"),
        ("aescbc", bytes(16), "invalid PKCS7 data (empty or not padded)"),
        ("aesgcm", b"tiny", "the stored data was shorter than the required size"),
        ("secretbox", bytes(39), "the stored data was shorter than the required size"),
    ],
)
def test_damaged_values_give_the_api_servers_errors(kind: str, body: bytes, reason: str) -> None:
    t = config(keyed(kind, ("k", KEY_A))).for_resource("secrets")
    assert t is not None
    with pytest.raises(TransformError) as caught:
        t.from_storage(f"k8s:enc:{kind}:v1:k:".encode() + body, SECRET_KEY)
    assert caught.value.reason == reason


def test_cbc_bad_padding_is_an_error_not_garbage() -> None:
    t = config(keyed("aescbc", ("k", KEY_A))).for_resource("secrets")
    assert t is not None
    stored = t.to_storage(b"x" * 16, SECRET_KEY)  # the last block is all padding: 16 x 0x10
    # Flipping a bit of the block before flips the same bit of the last plaintext byte.
    for flip, reason in (
        (0x01, "invalid padding on input"),  # 0x11: the other padding bytes do not match
        (0x10, "invalid PKCS7 data (empty or not padded)"),  # 0x00
    ):
        damaged = bytearray(stored)
        damaged[-17] ^= flip
        with pytest.raises(TransformError) as caught:
            t.from_storage(bytes(damaged), SECRET_KEY)
        assert caught.value.reason == reason


def test_empty_and_large_values_round_trip() -> None:
    for kind in ("aescbc", "aesgcm", "secretbox"):
        t = config(keyed(kind, ("k", KEY_A))).for_resource("secrets")
        assert t is not None
        for value in (b"", b"x" * 15, b"y" * 16, bytes(range(256)) * 4096):
            assert t.from_storage(t.to_storage(value, SECRET_KEY), SECRET_KEY) == (value, False)


def test_for_resource_matches_exact_then_group_wildcard_then_everything() -> None:
    document = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [
            {"resources": ["secrets"], "providers": [keyed("aescbc", ("s", KEY_A))]},
            {"resources": ["*.apps"], "providers": [keyed("aesgcm", ("a", KEY_A))]},
            {"resources": ["*."], "providers": [keyed("secretbox", ("core", KEY_A))]},
            {"resources": ["*.*"], "providers": [IDENTITY]},
        ],
    }
    cfg = EncryptionConfig.from_document(document)
    assert cfg.resources == ["secrets", "*.apps", "*.", "*.*"]

    def first_provider(group_resource: str) -> str:
        found = cfg.transformer(group_resource)
        assert found is not None
        return found.provider_names[0]

    assert first_provider("secrets") == "aescbc"
    assert first_provider("deployments.apps") == "aesgcm"
    assert first_provider("configmaps") == "secretbox"
    assert first_provider("roles.rbac.authorization.k8s.io") == "identity"
    narrow = config(keyed("aescbc", ("k", KEY_A)), resources=("secrets", "configmaps"))
    assert narrow.for_resource("pods") is None
    assert narrow.for_resource("configmaps") is not None


def test_a_resource_in_two_entries_reads_with_both_in_file_order() -> None:
    document = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [
            {"resources": ["secrets"], "providers": [keyed("aesgcm", ("new", KEY_B))]},
            {"resources": ["secrets"], "providers": [keyed("aescbc", ("old", KEY_A))]},
        ],
    }
    t = EncryptionConfig.from_document(document).transformer("secrets")
    old = config(keyed("aescbc", ("old", KEY_A))).for_resource("secrets")
    assert t is not None and old is not None
    assert t.provider_names == ("aesgcm", "aescbc")
    assert t.from_storage(old.to_storage(PLAIN, SECRET_KEY), SECRET_KEY) == (PLAIN, True)


def test_keys_stay_out_of_reprs_and_errors(tmp_path: Path) -> None:
    cfg = config(keyed("aescbc", ("k", KEY_A)), keyed("secretbox", ("s", KEY_B)))
    t = cfg.for_resource("secrets")
    assert t is not None
    for text in (repr(cfg), repr(t), str(vars(t))):
        assert b64(KEY_A) not in text and b64(KEY_B) not in text
        assert repr(KEY_A) not in text and KEY_A.hex() not in text
    with pytest.raises(TransformError) as caught:
        t.from_storage(b"k8s:enc:aescbc:v1:k:" + bytes(31), SECRET_KEY)
    assert b64(KEY_A) not in str(caught.value) and KEY_A.hex() not in str(caught.value)
