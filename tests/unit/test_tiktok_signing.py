"""TikTok Shop's request signature, against vectors published with two public SDKs' tests."""

from __future__ import annotations

import pytest

from rebound.connectors.tiktok import sign

QUERY = {"app_key": "68xu9ks5p4i8", "shop_cipher": "ROW_xkMbgAAAeVAQra0eZWebFQq5aIK", "timestamp": "1696909648"}


@pytest.mark.parametrize(
    ("secret", "path", "query", "body", "expected"),
    [
        (
            "e59af819cc",
            "/event/202309/webhooks",
            QUERY,
            b"",
            "ed58e1b5e59865c22a7b828c1cab65007441f43cc91a6cb2f2cdc638e0995a37",
        ),
        (
            "e59af819cc",
            "/event/202309/webhooks",
            QUERY,
            b'{"event_type":"PACKAGE_UPDATE","address":"https://partner.tiktokshop.com"}',
            "701dd6deb2389fe4c469b89bd37fc56f96a6da6afeb4d01c9077a65169752fa7",
        ),
        (
            "app_secret",
            "/test-api",
            {"foo": "bar"},
            b"",
            "d3cb7fe11ecae942802ceeca67e7cf10120cc12f1517d45fbc1c8cfe5413c80f",
        ),
    ],
)
def test_the_signature_matches_the_published_vectors(
    secret: str, path: str, query: dict, body: bytes, expected: str
) -> None:
    assert sign(secret, path, query, body) == expected


def test_sign_and_access_token_are_not_signed_and_the_order_of_parameters_does_not_matter() -> None:
    plain = sign("s", "/p", QUERY, b"{}")
    assert sign("s", "/p", {**QUERY, "sign": "x", "access_token": "t"}, b"{}") == plain
    assert sign("s", "/p", dict(reversed(QUERY.items())), b"{}") == plain
    assert sign("s", "/p", QUERY, b"{ }") != plain
