"""Project Wycheproof vectors against the AEAD and MAC wrappers in ``vault._crypto``.

The vector files in tests/vectors/wycheproof/ are unmodified copies from C2SP/wycheproof
(see the README there). Every vector produces one test case, with ids such as
``aes_gcm-tc91`` and ``hmac_sha256-tc28``, so a failure names the exact vector.

Our AEAD supports exactly one parameter set: AES-256-GCM with a 96-bit nonce and a
128-bit tag. Vectors with those parameters must behave exactly as Wycheproof says.
Vectors with other key or nonce sizes must be *refused*. We do not check that they
decrypt, because the wrapper is meant to refuse them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from vault import _crypto as C

WYCHEPROOF = Path(__file__).resolve().parent / "vectors" / "wycheproof"

# SHA-256 of the copied files, as recorded in tests/vectors/wycheproof/README.md. A
# mismatch means someone edited a third-party vector file; re-copy it from upstream.
PINNED_SHA256 = {
    "aes_gcm_test.json": "b2a7ffc46f945519d4f0ef3d461004a2ef0e4530b0fb4ab261f8d1902ffbbd69",
    "hmac_sha256_test.json": "1a86eeafc894491322137f4352608e4422670c906e18722e2892dde6ecaba688",
    "LICENSE": "878b8cfc6b8e03ff8361375a98fd7a36d975abcf3aade7e45f0e13c9041aa1fd",
}

SUPPORTED_AEAD = (256, 96, 128)  # keySize, ivSize, tagSize in bits

# Cases with the supported parameters in aes_gcm_test.json at the pinned commit.
# Checking the exact numbers proves that a real number of vectors ran.
EXPECTED_SUPPORTED_COUNTS = {"valid": 39, "invalid": 27, "acceptable": 0}


def _load(name: str) -> dict[str, Any]:
    return json.loads((WYCHEPROOF / name).read_text("utf-8"))


def _cases(data: dict[str, Any], prefix: str) -> list[Any]:
    return [
        pytest.param(group, test, id=f"{prefix}-tc{test['tcId']}")
        for group in data["testGroups"]
        for test in group["tests"]
    ]


AES_GCM = _load("aes_gcm_test.json")
HMAC_SHA256 = _load("hmac_sha256_test.json")


def b(x: str) -> bytes:
    return bytes.fromhex(x)


def _params(group: dict[str, Any]) -> tuple[int, int, int]:
    return group["keySize"], group["ivSize"], group["tagSize"]


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("name", sorted(PINNED_SHA256))
def test_vector_files_unmodified(name: str) -> None:
    assert hashlib.sha256((WYCHEPROOF / name).read_bytes()).hexdigest() == PINNED_SHA256[name]


@pytest.mark.parametrize("data", [AES_GCM, HMAC_SHA256], ids=["aes_gcm", "hmac_sha256"])
def test_vector_file_shape(data: dict[str, Any]) -> None:
    tests = [t for g in data["testGroups"] for t in g["tests"]]
    assert data["numberOfTests"] == len(tests)
    ids = [t["tcId"] for t in tests]
    assert len(set(ids)) == len(ids)


def test_aes_gcm_supported_case_counts() -> None:
    counts = {"valid": 0, "invalid": 0, "acceptable": 0}
    for group in AES_GCM["testGroups"]:
        if _params(group) == SUPPORTED_AEAD:
            for test in group["tests"]:
                counts[test["result"]] += 1
    assert counts == EXPECTED_SUPPORTED_COUNTS
    assert counts["valid"] > 20 and counts["invalid"] > 20


# --------------------------------------------------------------------------- AES-GCM


@pytest.mark.parametrize(("group", "test"), _cases(AES_GCM, "aes_gcm"))
def test_aes_gcm(group: dict[str, Any], test: dict[str, Any]) -> None:
    key, iv, aad, msg, ct, tag = (b(test[k]) for k in ("key", "iv", "aad", "msg", "ct", "tag"))
    key_bits, iv_bits, tag_bits = _params(group)
    assert (len(key) * 8, len(iv) * 8, len(tag) * 8) == (key_bits, iv_bits, tag_bits)
    result = test["result"]

    if (key_bits, iv_bits, tag_bits) == SUPPORTED_AEAD:
        if result == "valid":
            assert C.aead_seal(key, iv, msg, aad) == ct + tag
            assert C.aead_open(key, iv, ct + tag, aad) == msg
        elif result == "invalid":
            with pytest.raises(C.AuthFailure):
                C.aead_open(key, iv, ct + tag, aad)
        else:  # "acceptable": either behaviour is allowed, but it must be a clean one
            try:
                out = C.aead_open(key, iv, ct + tag, aad)
            except C.AuthFailure:
                return
            assert out == msg
        return

    # Parameters the wrapper does not support: it must refuse them, whatever the vector's
    # result. This covers every "invalid" vector in this group too.
    if key_bits != 256 or iv_bits != 96:
        with pytest.raises(ValueError):
            C.aead_seal(key, iv, msg, aad)
    with pytest.raises((ValueError, C.AuthFailure)):
        C.aead_open(key, iv, ct + tag, aad)


def test_aead_refuses_other_key_and_nonce_sizes() -> None:
    """Direct checks of the refusals the Wycheproof groups above rely on."""
    nonce, key = bytes(12), bytes(32)
    ct = C.aead_seal(key, nonce, b"m", b"a")
    for bad_key in (bytes(16), bytes(24), bytes(31), bytes(33)):
        with pytest.raises(ValueError):
            C.aead_seal(bad_key, nonce, b"m", b"a")
        with pytest.raises(ValueError):
            C.aead_open(bad_key, nonce, ct, b"a")
    for bad_nonce in (b"", bytes(8), bytes(11), bytes(13), bytes(16)):
        with pytest.raises(ValueError):
            C.aead_seal(key, bad_nonce, b"m", b"a")
        with pytest.raises(C.AuthFailure):
            C.aead_open(key, bad_nonce, ct, b"a")


# --------------------------------------------------------------------------- HMAC-SHA256


@pytest.mark.parametrize(("group", "test"), _cases(HMAC_SHA256, "hmac_sha256"))
def test_hmac_sha256(group: dict[str, Any], test: dict[str, Any]) -> None:
    key, msg, tag = b(test["key"]), b(test["msg"]), b(test["tag"])
    tag_bits = group["tagSize"]
    assert len(key) * 8 == group["keySize"] and len(tag) * 8 == tag_bits
    result = test["result"]

    if result == "valid":
        assert C.hmac_sha256(key, msg)[: tag_bits // 8] == tag
        if tag_bits >= 128:
            C.verify_hmac_sha256(key, msg, tag)  # must not raise
    elif result == "invalid":
        with pytest.raises(C.AuthFailure):
            C.verify_hmac_sha256(key, msg, tag)
    else:  # "acceptable"
        try:
            C.verify_hmac_sha256(key, msg, tag)
        except C.AuthFailure:
            return
        assert C.hmac_sha256(key, msg)[: len(tag)] == tag
