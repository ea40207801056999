"""Every object of Beckn core 1.1 (`transaction.yaml#/components/schemas`) as a pydantic model.

Field names and JSON types follow the spec; every field is optional, as the spec makes them.
Spec enums that networks redefine (order status, payment type, rating category...) are plain
strings here: which values a network accepts is network policy, not wire syntax. Only the Ack
status keeps its enum, because every peer honours it and the ACK contract depends on it.
Inline objects the spec leaves unnamed get a name here (`QuantityAmount`, `PaymentParams`,
`QuotationBreakup`, `RefundTerm`, ...). Classes are ordered so that each refers only to earlier
ones: no forward references to resolve at run time.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from beckn.models.base import BecknModel, DecimalValue, Gps, Ttl

# Plain-string schemas of the spec, named for readability.
Address = str  # a postal address, one string since 1.0
Duration = str  # ISO-8601 duration, e.g. "PT30S"; parsed by beckn.policy where it matters
Timestamp = str  # RFC 3339 date-time, kept verbatim on the wire
Uri = str


class MediaFile(BecknModel):
    mimetype: str | None = None
    url: Uri | None = None
    signature: str | None = None
    dsa: str | None = None


class Image(BecknModel):
    url: Uri | None = None
    size_type: str | None = None  # spec: xs|sm|md|lg|xl|custom
    width: str | None = None
    height: str | None = None


class AdditionalDescriptor(BecknModel):
    """`Descriptor.additional_desc`."""

    url: str | None = None
    content_type: str | None = None  # spec: text/plain|text/html|application/json


class Descriptor(BecknModel):
    name: str | None = None
    code: str | None = None
    short_desc: str | None = None
    long_desc: str | None = None
    additional_desc: AdditionalDescriptor | None = None
    media: list[MediaFile] | None = None
    images: list[Image] | None = None


class Domain(BecknModel):
    name: str | None = None
    code: str | None = None
    additional_info: MediaFile | None = None


class City(BecknModel):
    name: str | None = None
    code: str | None = None


class Country(BecknModel):
    name: str | None = None
    code: str | None = None  # ISO 3166-1, e.g. "MTQ"


class State(BecknModel):
    name: str | None = None
    code: str | None = None


class Region(BecknModel):
    dimensions: str | None = None  # spec: "1"|"2"|"3"
    type: str | None = None
    name: str | None = None
    code: str | None = None
    boundary: str | None = None
    map_url: str | None = None


class ScalarRange(BecknModel):
    """`Scalar.range`."""

    min: DecimalValue | None = None
    max: DecimalValue | None = None


class Scalar(BecknModel):
    type: str | None = None  # spec: CONSTANT|VARIABLE
    value: DecimalValue | None = None
    estimated_value: DecimalValue | None = None
    computed_value: DecimalValue | None = None
    range: ScalarRange | None = None
    unit: str | None = None


class Circle(BecknModel):
    gps: Gps | None = None
    radius: Scalar | None = None


class Location(BecknModel):
    id: str | None = None
    descriptor: Descriptor | None = None
    map_url: Uri | None = None
    gps: Gps | None = None
    address: Address | None = None
    city: City | None = None
    district: str | None = None
    state: State | None = None
    country: Country | None = None
    area_code: str | None = None
    circle: Circle | None = None
    polygon: str | None = None
    space_3d: str | None = Field(default=None, alias="3dspace")
    rating: str | None = None


class Price(BecknModel):
    currency: str | None = None
    value: DecimalValue | None = None
    estimated_value: DecimalValue | None = None
    computed_value: DecimalValue | None = None
    listed_value: DecimalValue | None = None
    offered_value: DecimalValue | None = None
    minimum_value: DecimalValue | None = None
    maximum_value: DecimalValue | None = None


class Contact(BecknModel):
    phone: str | None = None
    email: str | None = None
    jcard: Any = None  # spec: "a jCard object"; jCard is really an array, so take any JSON


class Organization(BecknModel):
    descriptor: Descriptor | None = None
    address: Address | None = None
    state: State | None = None
    city: City | None = None
    contact: Contact | None = None


class Schedule(BecknModel):
    frequency: Duration | None = None
    holidays: list[Timestamp] | None = None
    times: list[Timestamp] | None = None


class TimeRange(BecknModel):
    """`Time.range`."""

    start: Timestamp | None = None
    end: Timestamp | None = None


class Time(BecknModel):
    label: str | None = None
    timestamp: Timestamp | None = None
    duration: Duration | None = None
    range: TimeRange | None = None
    days: str | None = None  # comma-separated days of the week
    schedule: Schedule | None = None


class Tag(BecknModel):
    descriptor: Descriptor | None = None
    value: str | None = None
    display: bool | None = None


class TagGroup(BecknModel):
    display: bool | None = None  # the spec's default is true
    descriptor: Descriptor | None = None
    # `list` would shadow the builtin inside the class body, hence the alias.
    list_: list[Tag] | None = Field(default=None, alias="list")


class Credential(BecknModel):
    id: str | None = None
    type: str | None = None  # the spec's default is "VerifiableCredential"
    url: Uri | None = None


class Language(BecknModel):
    """`Person.languages[]`."""

    code: str | None = None
    name: str | None = None


class Skill(BecknModel):
    """`Person.skills[]`."""

    code: str | None = None
    name: str | None = None


class Person(BecknModel):
    id: str | None = None
    url: Uri | None = None
    name: str | None = None
    image: Image | None = None
    age: Duration | None = None
    dob: str | None = None  # RFC 3339 full-date
    gender: str | None = None
    creds: list[Credential] | None = None
    languages: list[Language] | None = None
    skills: list[Skill] | None = None
    tags: list[TagGroup] | None = None


class Customer(BecknModel):
    person: Person | None = None
    contact: Contact | None = None


class Agent(BecknModel):
    person: Person | None = None
    contact: Contact | None = None
    organization: Organization | None = None
    rating: str | None = None


class Authorization(BecknModel):
    type: str | None = None
    token: str | None = None
    valid_from: Timestamp | None = None
    valid_to: Timestamp | None = None
    status: str | None = None


class Vehicle(BecknModel):
    category: str | None = None
    capacity: int | None = None
    make: str | None = None
    model: str | None = None
    size: str | None = None
    variant: str | None = None
    color: str | None = None
    energy_type: str | None = None
    registration: str | None = None
    wheels_count: str | None = None
    cargo_volumne: str | None = None  # sic: the spec's spelling
    wheelchair_access: str | None = None
    code: str | None = None
    emission_standard: str | None = None


class FulfillmentState(BecknModel):
    descriptor: Descriptor | None = None
    updated_at: Timestamp | None = None
    updated_by: str | None = None


class Stop(BecknModel):
    id: str | None = None
    parent_stop_id: str | None = None
    location: Location | None = None
    type: str | None = None  # network policy, e.g. "start" / "end"
    time: Time | None = None
    instructions: Descriptor | None = None
    contact: Contact | None = None
    person: Person | None = None
    authorization: Authorization | None = None


class Fulfillment(BecknModel):
    id: str | None = None
    type: str | None = None  # network policy, e.g. "Delivery" / "Self-Pickup"
    rateable: bool | None = None
    rating: str | None = None
    state: FulfillmentState | None = None
    tracking: bool | None = None  # the spec's default is false
    customer: Customer | None = None
    agent: Agent | None = None
    contact: Contact | None = None
    vehicle: Vehicle | None = None
    stops: list[Stop] | None = None
    path: str | None = None
    tags: list[TagGroup] | None = None


class PaymentParams(BecknModel):
    """`Payment.params`."""

    transaction_id: str | None = None
    amount: str | None = None
    currency: str | None = None
    bank_code: str | None = None
    bank_account_number: str | None = None
    virtual_payment_address: str | None = None
    source_bank_code: str | None = None
    source_bank_account_number: str | None = None
    source_virtual_payment_address: str | None = None


class Payment(BecknModel):
    id: str | None = None
    collected_by: str | None = None  # "BAP" / "BPP" by convention
    url: Uri | None = None
    params: PaymentParams | None = None
    type: str | None = None  # spec: PRE-ORDER|PRE-FULFILLMENT|ON-FULFILLMENT|POST-FULFILLMENT
    status: str | None = None  # spec: PAID|NOT-PAID
    time: Time | None = None
    tags: list[TagGroup] | None = None


class Category(BecknModel):
    id: str | None = None
    parent_category_id: str | None = None
    descriptor: Descriptor | None = None
    time: Time | None = None
    ttl: Any = None  # the spec gives it no type at all
    tags: list[TagGroup] | None = None


class Offer(BecknModel):
    id: str | None = None
    descriptor: Descriptor | None = None
    location_ids: list[str] | None = None
    category_ids: list[str] | None = None
    item_ids: list[str] | None = None
    time: Time | None = None
    tags: list[TagGroup] | None = None


class AddOn(BecknModel):
    id: str | None = None
    descriptor: Descriptor | None = None
    price: Price | None = None


class QuantityAmount(BecknModel):
    """One entry of `ItemQuantity` (`allocated`, `selected`...)."""

    # The spec's minimum is 0 for most entries (1 for `maximum`, exactly 1 for `unitized`);
    # only the sign is enforced here: a negative count is never meaningful, while a zero
    # maximum (sold out) is something peers do send.
    count: int | None = Field(default=None, ge=0)
    measure: Scalar | None = None


class ItemQuantity(BecknModel):
    allocated: QuantityAmount | None = None
    available: QuantityAmount | None = None
    maximum: QuantityAmount | None = None
    minimum: QuantityAmount | None = None
    selected: QuantityAmount | None = None
    unitized: QuantityAmount | None = None


class Fee(BecknModel):
    percentage: DecimalValue | None = None
    amount: Price | None = None


class Form(BecknModel):
    url: Uri | None = None
    data: dict[str, Any] | None = None  # spec: string values; any JSON is kept as sent
    mime_type: str | None = None  # spec: text/html|application/xml
    submission_id: str | None = None


class XInput(BecknModel):
    form: Form | None = None
    required: bool | None = None


class CancellationTerm(BecknModel):
    fulfillment_state: FulfillmentState | None = None
    reason_required: bool | None = None
    cancel_by: Time | None = None
    cancellation_fee: Fee | None = None
    xinput: XInput | None = None
    external_ref: MediaFile | None = None


class RefundTerm(BecknModel):
    """`Item.refund_terms[]` (inline in the spec)."""

    fulfillment_state: State | None = None
    refund_eligible: bool | None = None
    refund_within: Time | None = None
    refund_amount: Price | None = None


class ReplacementTerm(BecknModel):
    fulfillment_state: State | None = None
    replace_within: Time | None = None
    external_ref: MediaFile | None = None


class ReturnTerm(BecknModel):
    fulfillment_state: State | None = None
    return_eligible: bool | None = None
    return_time: Time | None = None
    return_location: Location | None = None
    fulfillment_managed_by: str | None = None  # spec: CONSUMER|PROVIDER


class Item(BecknModel):
    id: str | None = None
    parent_item_id: str | None = None
    parent_item_quantity: ItemQuantity | None = None
    descriptor: Descriptor | None = None
    creator: Organization | None = None
    price: Price | None = None
    quantity: ItemQuantity | None = None
    category_ids: list[str] | None = None
    fulfillment_ids: list[str] | None = None
    location_ids: list[str] | None = None
    payment_ids: list[str] | None = None
    add_ons: list[AddOn] | None = None
    cancellation_terms: list[CancellationTerm] | None = None
    refund_terms: list[RefundTerm] | None = None
    replacement_terms: list[ReplacementTerm] | None = None
    return_terms: list[ReturnTerm] | None = None
    xinput: XInput | None = None
    time: Time | None = None
    rateable: bool | None = None
    rating: str | None = None
    matched: bool | None = None
    related: bool | None = None
    recommended: bool | None = None
    ttl: Ttl | None = None
    tags: list[TagGroup] | None = None


class Provider(BecknModel):
    id: str | None = None
    descriptor: Descriptor | None = None
    category_id: str | None = None
    rating: str | None = None
    time: Time | None = None
    categories: list[Category] | None = None
    fulfillments: list[Fulfillment] | None = None
    payments: list[Payment] | None = None
    locations: list[Location] | None = None
    offers: list[Offer] | None = None
    items: list[Item] | None = None
    exp: Timestamp | None = None
    rateable: bool | None = None
    ttl: Ttl | None = None
    tags: list[TagGroup] | None = None


class Option(BecknModel):
    id: str | None = None
    descriptor: Descriptor | None = None


class Cancellation(BecknModel):
    time: Timestamp | None = None
    cancelled_by: str | None = None  # spec: CONSUMER|PROVIDER
    reason: Option | None = None
    additional_description: Descriptor | None = None


class Billing(BecknModel):
    name: str | None = None
    organization: Organization | None = None
    address: Address | None = None
    state: State | None = None
    city: City | None = None
    email: str | None = None
    phone: str | None = None
    time: Time | None = None
    tax_id: str | None = None


class QuotationBreakup(BecknModel):
    """`Quotation.breakup[]`."""

    item: Item | None = None
    title: str | None = None
    price: Price | None = None


class Quotation(BecknModel):
    id: str | None = None
    price: Price | None = None
    breakup: list[QuotationBreakup] | None = None
    ttl: Ttl | None = None


class Order(BecknModel):
    id: str | None = None
    ref_order_ids: list[str] | None = None
    status: str | None = None  # spec: ACTIVE|COMPLETE|CANCELLED, "defined by the network policy"
    type: str | None = None  # spec: DRAFT|DEFAULT (default DEFAULT)
    provider: Provider | None = None
    items: list[Item] | None = None
    add_ons: list[AddOn] | None = None
    offers: list[Offer] | None = None
    billing: Billing | None = None
    fulfillments: list[Fulfillment] | None = None
    cancellation: Cancellation | None = None
    cancellation_terms: list[CancellationTerm] | None = None
    refund_terms: list[RefundTerm] | None = None
    replacement_terms: list[ReplacementTerm] | None = None
    return_terms: list[ReturnTerm] | None = None
    quote: Quotation | None = None
    payments: list[Payment] | None = None
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None
    xinput: XInput | None = None
    tags: list[TagGroup] | None = None


class Catalog(BecknModel):
    descriptor: Descriptor | None = None
    fulfillments: list[Fulfillment] | None = None
    payments: list[Payment] | None = None
    offers: list[Offer] | None = None
    providers: list[Provider] | None = None
    exp: Timestamp | None = None
    ttl: Ttl | None = None


class Intent(BecknModel):
    descriptor: Descriptor | None = None
    provider: Provider | None = None
    fulfillment: Fulfillment | None = None
    payment: Payment | None = None
    category: Category | None = None
    offer: Offer | None = None
    item: Item | None = None
    tags: list[TagGroup] | None = None


class Rating(BecknModel):
    rating_category: str | None = None  # spec: Item|Order|Fulfillment|Provider|Agent|Support
    id: str | None = None
    value: str | None = None  # may hold an inequality such as "gte 4"


class Support(BecknModel):
    ref_id: str | None = None
    callback_phone: str | None = None
    phone: str | None = None
    email: str | None = None
    url: Uri | None = None


class Tracking(BecknModel):
    id: str | None = None
    url: Uri | None = None
    location: Location | None = None
    status: str | None = None  # spec: active|inactive


class Error(BecknModel):
    """The 1.1 `{code, paths, message}`, tolerating 0.9/ONDC's `type` and singular `path`."""

    code: str | None = None
    paths: str | None = None
    message: str | None = None
    type: str | None = None
    path: str | None = None
    details: list[Error] | None = None  # what our NACKs add for every further problem


class Ack(BecknModel):
    status: Literal["ACK", "NACK"] | None = None
    tags: list[TagGroup] | None = None


class Context(BecknModel):
    """The 1.1 context. The spec requires none of its fields; `beckn.policy` says which we need."""

    domain: str | None = None
    location: Location | None = None
    action: str | None = None
    version: str | None = None
    bap_id: str | None = None
    bap_uri: Uri | None = None
    bpp_id: str | None = None
    bpp_uri: Uri | None = None
    transaction_id: str | None = None
    message_id: str | None = None
    timestamp: Timestamp | None = None
    key: str | None = None
    ttl: Duration | None = None
