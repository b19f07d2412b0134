"""The log search of the end-to-end and fault runs looks for every configured secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.accounting import assert_no_secret_in_logs, configured_secrets

URL = "postgresql://rebound:url-secret-1@127.0.0.1:15432/rebound"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "db").write_text("db-file-secret-2\n")
    (tmp_path / "kafka").write_text("kafka-file-secret-3")
    return {
        "DATABASE_URL": URL,
        "DATABASE_PASSWORD_FILE": str(tmp_path / "db"),
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_USERNAME": "rebound",
        "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "kafka"),
    }


def test_every_configured_secret_is_looked_for(env: dict[str, str]) -> None:
    assert configured_secrets(env) == {
        "the password in DATABASE_URL": "url-secret-1",
        "DATABASE_PASSWORD_FILE": "db-file-secret-2",
        "KAFKA_SASL_PASSWORD_FILE": "kafka-file-secret-3",
    }
    inline = {
        "DATABASE_URL": URL,
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_USERNAME": "rebound",
        "KAFKA_SASL_PASSWORD": "kafka-secret-4",
    }
    assert configured_secrets(inline)["KAFKA_SASL_PASSWORD"] == "kafka-secret-4"


@pytest.mark.parametrize("leaked", ["url-secret-1", "db-file-secret-2", "kafka-file-secret-3"])
def test_a_log_holding_any_of_them_fails(env: dict[str, str], tmp_path: Path, leaked: str) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "intake-0.log").write_text('{"event": "service_started"}\n')
    assert assert_no_secret_in_logs(logs, env) == 1
    (logs / "ledger-0.log").write_text(f'{{"event": "oops", "dsn": "{leaked}"}}\n')
    with pytest.raises(AssertionError, match="appears in"):
        assert_no_secret_in_logs(logs, env)


def test_a_password_in_the_database_urls_query_is_looked_for_too() -> None:
    env = {"DATABASE_URL": "postgresql://rebound@127.0.0.1:15432/rebound?sslpassword=key-secret-5&sslmode=require"}
    assert configured_secrets(env) == {"the sslpassword parameter of DATABASE_URL": "key-secret-5"}
