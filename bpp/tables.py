"""The BPP's tables: the catalogue (providers and their items) and the orders it confirmed.

Texts a merchant writes in several languages are kept as one JSON object per record, keyed by
language (`{"fr": {"name": ..., "short_desc": ...}, "en": {...}}`), so adding a language needs no
migration. `search_text` columns hold every name of the record in every language, folded
(no accents, lower case, words separated by single spaces): they are derived data, rebuilt
whenever a record is written (`bpp.catalogue.item_search_text`), and let search run in SQL.
Money is `Numeric(12, 2)` (euros and cents, exact) and travels as Beckn decimal strings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlmodel import Field

from beckn.store.tables import BigId, StoreModel, UTCDateTime

Money = Numeric(12, 2, asdecimal=True)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BppProvider(StoreModel, table=True):
    """A merchant (Beckn Provider) with its one shop location."""

    __tablename__ = "bpp_provider"

    id: str = Field(sa_column=Column(String(64), primary_key=True))
    descriptor: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))  # lang -> {name, short_desc...}
    location: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))  # id, gps, address, city, area_code
    city_code: str = Field(sa_column=Column(String(32), nullable=False, index=True))  # "insee:97213"
    categories: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    fulfillment_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # More shops or pickup points besides `location` (same shape); NULL is none.
    other_locations: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # The merchant's terms (bpp.terms); NULL is the network default.
    payment_types: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    cancellation_terms: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    return_terms: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    search_text: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))


class BppItem(StoreModel, table=True):
    """One thing a provider sells, its price and its stock. Item ids are scoped by provider."""

    __tablename__ = "bpp_item"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("price >= 0", name="price_not_negative"),
    )

    provider_id: str = Field(sa_column=Column(
        String(64), ForeignKey("bpp_provider.id", ondelete="CASCADE"), primary_key=True))
    id: str = Field(sa_column=Column(String(64), primary_key=True))
    descriptor: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    category_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    price: Decimal = Field(sa_column=Column(Money, nullable=False))
    currency: str = Field(default="EUR", sa_column=Column(String(3), nullable=False))
    unit: str = Field(sa_column=Column(String(32), nullable=False))  # "kilogram", "unit", "bottle"...
    unit_value: str = Field(default="1", sa_column=Column(String(16), nullable=False))  # Beckn decimal
    stock: int = Field(sa_column=Column(Integer, nullable=False))
    # Tag codes ("local", "organic": bpp.catalogue.ITEM_TAGS), shown as Beckn TagGroups; NULL is
    # none (a JSON server default cannot be compared on PostgreSQL, and NULL needs no backfill).
    tags: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    search_text: str = Field(sa_column=Column(Text, nullable=False))
    updated_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))


class BppOrder(StoreModel, table=True):
    """A confirmed order. One per (bap_id, transaction_id): a retried confirm finds it again.

    `billing` holds personal data (name, phone, e-mail): it is stored because the merchant needs
    it to hand the order over, and it is never logged nor shown by the operator API.
    """

    __tablename__ = "bpp_order"
    __table_args__ = (
        UniqueConstraint("bap_id", "transaction_id"),
        CheckConstraint("status IN ('ACTIVE', 'COMPLETE', 'CANCELLED')", name="status"),
    )

    id: str = Field(sa_column=Column(String(32), primary_key=True))
    transaction_id: str = Field(sa_column=Column(String, nullable=False))
    confirm_message_id: str = Field(sa_column=Column(String, nullable=False))
    bap_id: str = Field(sa_column=Column(String, nullable=False))
    bap_uri: str = Field(sa_column=Column(String, nullable=False))
    provider_id: str = Field(sa_column=Column(String(64), ForeignKey("bpp_provider.id"), nullable=False, index=True))
    status: str = Field(sa_column=Column(String(16), nullable=False))
    lang: str = Field(sa_column=Column(String(8), nullable=False))
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    total: Decimal = Field(sa_column=Column(Money, nullable=False))
    billing: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    fulfillment: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    payment: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    quote: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # The buyer's cancellation record and ratings (bpp.lifecycle); NULL until there is one.
    cancellation: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    ratings: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    # The merchant's cancellation and return terms as agreed at confirm (bpp.terms.agreed_terms):
    # a merchant changing its terms later does not change them for orders already placed.
    # NULL for orders confirmed before terms were recorded: they follow the provider's current terms.
    terms: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))


class BppOrderLine(StoreModel, table=True):
    """One item of an order, with the name and price it had when the order was confirmed."""

    __tablename__ = "bpp_order_line"
    __table_args__ = (
        ForeignKeyConstraint(["provider_id", "item_id"], ["bpp_item.provider_id", "bpp_item.id"],
                             name="fk_bpp_order_line_provider_id_bpp_item"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        Index("ix_bpp_order_line_provider_id_item_id", "provider_id", "item_id"),
    )

    order_id: str = Field(sa_column=Column(
        String(32), ForeignKey("bpp_order.id", ondelete="CASCADE"), primary_key=True))
    line_no: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    provider_id: str = Field(sa_column=Column(String(64), nullable=False))
    item_id: str = Field(sa_column=Column(String(64), nullable=False))
    name: str = Field(sa_column=Column(String, nullable=False))
    quantity: int = Field(sa_column=Column(Integer, nullable=False))
    unit_price: Decimal = Field(sa_column=Column(Money, nullable=False))
    line_total: Decimal = Field(sa_column=Column(Money, nullable=False))


class BppMerchant(StoreModel, table=True):
    """A merchant account: who may manage some providers through the merchant API.

    Created by the BPP operator. Providers seeded from a catalogue file have no owner and stay
    the operator's (no merchant can reach them through the API).
    """

    __tablename__ = "bpp_merchant"

    id: str = Field(sa_column=Column(String(32), primary_key=True))  # "mch_" + random
    name: str = Field(sa_column=Column(String(200), nullable=False))
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))


class BppMerchantKey(StoreModel, table=True):
    """One API key of a merchant. Only the SHA-256 of its secret is kept; `revoked_at` ends it."""

    __tablename__ = "bpp_merchant_key"

    id: str = Field(sa_column=Column(String(32), primary_key=True))  # the public part of the key
    merchant_id: str = Field(sa_column=Column(
        String(32), ForeignKey("bpp_merchant.id", ondelete="CASCADE"), nullable=False, index=True))
    secret_sha256: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class BppProviderProfile(StoreModel, table=True):
    """Who owns a provider, and the profile data that Beckn search does not show (SIRET, hours,
    contact). A provider without a profile row is operator-owned (seeded from a catalogue file)."""

    __tablename__ = "bpp_provider_profile"

    provider_id: str = Field(sa_column=Column(
        String(64), ForeignKey("bpp_provider.id", ondelete="CASCADE"), primary_key=True))
    merchant_id: str = Field(sa_column=Column(
        String(32), ForeignKey("bpp_merchant.id", ondelete="CASCADE"), nullable=False, index=True))
    siret: str = Field(sa_column=Column(String(14), nullable=False))
    opening_hours: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    contact: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))  # business phone / e-mail
    # The MartiniqueMerchantCredential (VC 2.0 JSON) uploaded by the merchant, or None (bpp.credentials).
    business_credential: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))


class BppMerchantWebhook(StoreModel, table=True):
    """A merchant's webhook endpoint (one per merchant; bpp.webhooks). The secret is kept as is:
    the BPP needs it to sign every event (HMAC), unlike an API key that it only has to check."""

    __tablename__ = "bpp_merchant_webhook"

    merchant_id: str = Field(sa_column=Column(
        String(32), ForeignKey("bpp_merchant.id", ondelete="CASCADE"), primary_key=True))
    url: str = Field(sa_column=Column(String(500), nullable=False))
    secret: str = Field(sa_column=Column(String(80), nullable=False))
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))


class BppWebhookDelivery(StoreModel, table=True):
    """One webhook event to deliver (bpp.webhooks): queued in the transaction that made the event,
    retried with backoff until delivered or out of attempts. The body names ids, never personal data."""

    __tablename__ = "bpp_webhook_delivery"
    __table_args__ = (Index("ix_bpp_webhook_delivery_status_next_attempt_at", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, sa_column=Column(BigId, primary_key=True, autoincrement=True))
    merchant_id: str = Field(sa_column=Column(
        String(32), ForeignKey("bpp_merchant.id", ondelete="CASCADE"), nullable=False, index=True))
    event_id: str = Field(sa_column=Column(String(40), nullable=False, unique=True))
    url: str = Field(sa_column=Column(String(500), nullable=False))
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))  # PENDING, DELIVERED, FAILED
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    next_attempt_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    last_error: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))


class BppPayment(StoreModel, table=True):
    """A prepayment asked of a buyer (bpp.payments): one payment link of a payment processor.

    Made at `init` when the buyer chooses PRE-ORDER; `confirm` goes through only once the processor
    says it is PAID, and a cancellation refunds it (less the merchant's cancellation fee). Holds
    no card or bank data: those stay with the processor."""

    __tablename__ = "bpp_payment"
    __table_args__ = (
        Index("ix_bpp_payment_bap_id_transaction_id", "bap_id", "transaction_id"),
        CheckConstraint("amount >= 0", name="amount_not_negative"),
        CheckConstraint("refunded >= 0", name="refunded_not_negative"),
    )

    id: str = Field(sa_column=Column(String(40), primary_key=True))  # "pay_" + random
    bap_id: str = Field(sa_column=Column(String, nullable=False))
    transaction_id: str = Field(sa_column=Column(String, nullable=False))
    provider_id: str = Field(sa_column=Column(String(64), ForeignKey("bpp_provider.id"), nullable=False, index=True))
    order_id: str | None = Field(default=None, sa_column=Column(String(32), nullable=True, index=True))
    processor: str = Field(sa_column=Column(String(32), nullable=False))  # "sandbox", ...
    processor_ref: str = Field(sa_column=Column(String(100), nullable=False))  # the processor's id for it
    url: str = Field(sa_column=Column(String(500), nullable=False))  # where the buyer pays
    amount: Decimal = Field(sa_column=Column(Money, nullable=False))
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    status: str = Field(sa_column=Column(String(24), nullable=False))  # PENDING, PAID, EXPIRED, REFUNDED...
    refunded: Decimal = Field(default=Decimal("0"), sa_column=Column(Money, nullable=False))
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    updated_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    paid_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class SandboxCharge(StoreModel, table=True):
    """The sandbox payment processor's own book (bpp.payments.sandbox): what a real processor would
    keep on its side. Kept apart from `bpp_payment` so the BPP talks to it only through the
    processor interface, as it would to a real one."""

    __tablename__ = "payment_sandbox_charge"

    id: str = Field(sa_column=Column(String(40), primary_key=True))  # "sbx_" + random
    amount: Decimal = Field(sa_column=Column(Money, nullable=False))
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    description: str = Field(sa_column=Column(String(200), nullable=False))
    status: str = Field(sa_column=Column(String(16), nullable=False))  # OPEN, PAID, EXPIRED
    refunded: Decimal = Field(default=Decimal("0"), sa_column=Column(Money, nullable=False))
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    paid_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


class BppMerchantLogin(StoreModel, table=True):
    """A Martinique Connect identity linked to a merchant account (bpp.merchant_login): who may log in
    as that merchant. `sub` is pairwise (this BPP's sector only). One identity belongs to at most one
    merchant; a merchant may link several (its staff)."""

    __tablename__ = "bpp_merchant_login"

    issuer: str = Field(sa_column=Column(String(255), primary_key=True))
    sub: str = Field(sa_column=Column(String(255), primary_key=True))
    merchant_id: str = Field(sa_column=Column(
        String(32), ForeignKey("bpp_merchant.id", ondelete="CASCADE"), nullable=False, index=True))
    linked_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))


class BppMerchantSession(StoreModel, table=True):
    """A merchant session opened by a Martinique Connect login: a bearer token accepted like an API
    key until `expires_at`. Only the SHA-256 of its secret is kept; logout or unlinking sets
    `revoked_at`. `issuer`/`sub` name the identity that logged in (unlinking it ends its sessions)."""

    __tablename__ = "bpp_merchant_session"

    id: str = Field(sa_column=Column(String(32), primary_key=True))  # the public part of the token
    merchant_id: str = Field(sa_column=Column(
        String(32), ForeignKey("bpp_merchant.id", ondelete="CASCADE"), nullable=False, index=True))
    secret_sha256: str = Field(sa_column=Column(String(64), nullable=False))
    issuer: str = Field(sa_column=Column(String(255), nullable=False))
    sub: str = Field(sa_column=Column(String(255), nullable=False))
    created_at: datetime = Field(default_factory=_utcnow, sa_column=Column(UTCDateTime, nullable=False))
    expires_at: datetime = Field(sa_column=Column(UTCDateTime, nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime, nullable=True))


__all__ = ["BppItem", "BppMerchant", "BppMerchantKey", "BppMerchantLogin", "BppMerchantSession", "BppMerchantWebhook",
           "BppOrder", "BppOrderLine", "BppPayment", "BppProvider", "BppProviderProfile", "BppWebhookDelivery",
           "SandboxCharge"]
