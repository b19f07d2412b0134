"""Types every message of contract v1 shares: the envelope, money, identifiers."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer

# Unknown fields are ignored, not rejected: upstream systems add fields without asking,
# and a connector reading our outbound topics must survive our minor additions too.
FROZEN = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=True)

IDENTIFIER_MAX_LENGTH = 128
Identifier = Annotated[str, Field(min_length=1, max_length=IDENTIFIER_MAX_LENGTH, pattern=r"^[^\s:\x00]+$")]
"""An opaque id from upstream. No whitespace, no ':' (it is the key separator) and no U+0000."""

NO_NUL = r"^[^\x00]*$"
"""The pattern of every free-text string: no U+0000, which PostgreSQL's text cannot hold."""

Channel = Literal["tiktok", "shopify", "amazon", "ebay"]
Grade = Literal["A", "B", "C", "SCRAP"]
Condition = Literal["new", "open_box"]

ReasonCategory = Literal["SIZE_FIT", "CHANGED_MIND", "QUALITY", "DAMAGED", "NOT_AS_DESCRIBED", "WRONG_ITEM", "OTHER"]
Lane = Literal["FAST", "FULL_INSPECTION"]

MAX_DIGITS, DECIMAL_PLACES = 14, 4
MAX_AMOUNT = Decimal(10 ** (MAX_DIGITS - DECIMAL_PLACES)) - Decimal(1).scaleb(-DECIMAL_PLACES)
"""The largest amount a message can carry: 9999999999.9999."""

DecimalString = Annotated[
    Decimal,
    Field(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES),
    PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="json"),
]


class Money(BaseModel):
    """An amount of one currency. On the wire the amount is a decimal string: never a float."""

    model_config = FROZEN

    amount: DecimalString = Field(ge=0)
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


class Envelope(BaseModel):
    """Fields every message carries. A retry of the same event reuses its `event_id`."""

    model_config = FROZEN

    event_id: UUID
    occurred_at: AwareDatetime


class TenantEvent(Envelope):
    """A message that belongs to one seller (the tenant)."""

    seller_id: Identifier
