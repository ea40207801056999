"""Realistic Beckn 1.1 messages for tests, built with `beckn.models` (Martinique retail flavour).

A buyer app orders pineapples and christophines from a farm in Le Lamentin (INSEE 97213),
delivered to Fort-de-France, paid in EUR on delivery. Each builder returns fresh ids, and its
times (context timestamp, delivery window, catalogue expiry...) are relative to `now` (default:
the current time), so the messages also pass `beckn.policy.NetworkPolicy` at that moment.

    example_request("select")        -> wire dict of a /select body
    example_callback("on_select")    -> wire dict of an /on_select body ("select" works too)
    example_envelope(action)         -> the same as a model
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from beckn.models import (
    ENVELOPES,
    Agent,
    Billing,
    BecknModel,
    Cancellation,
    CancellationTerm,
    CancelMessage,
    Catalog,
    Category,
    City,
    ConfirmMessage,
    Contact,
    Context,
    Country,
    Customer,
    Descriptor,
    Fee,
    Form,
    Fulfillment,
    FulfillmentState,
    Image,
    InitMessage,
    Intent,
    Item,
    ItemQuantity,
    Location,
    OnCancelMessage,
    OnConfirmMessage,
    OnInitMessage,
    OnRatingMessage,
    OnSearchMessage,
    OnSelectMessage,
    OnStatusMessage,
    OnSupportMessage,
    OnTrackMessage,
    OnUpdateMessage,
    Option,
    Order,
    Payment,
    PaymentParams,
    Person,
    Price,
    Provider,
    QuantityAmount,
    Quotation,
    QuotationBreakup,
    Rating,
    RatingMessage,
    Scalar,
    SearchMessage,
    SelectMessage,
    State,
    StatusMessage,
    Stop,
    Support,
    SupportMessage,
    Tag,
    TagGroup,
    Time,
    TimeRange,
    TrackMessage,
    Tracking,
    UpdateMessage,
    XInput,
    is_callback,
)

BAP_ID = "bap.lakou.test"
BAP_URI = "https://bap.lakou.test/beckn"
BPP_ID = "bpp.lakou.test"
BPP_URI = "https://bpp.lakou.test/beckn"

PROVIDER_ID = "ferme-bellevue-lamentin"
ORDER_ID = "CMD-2025-000417"
LAMENTIN = City(code="97213", name="Le Lamentin")
FORT_DE_FRANCE = City(code="97209", name="Fort-de-France")
MARTINIQUE = Country(code="MTQ", name="Martinique")


def wire_time(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, as most Beckn peers write it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def example_context(
    action: str,
    *,
    now: datetime | None = None,
    transaction_id: str | None = None,
    message_id: str | None = None,
    ttl: str = "PT30S",
) -> Context:
    moment = now or datetime.now(UTC)
    context = Context(
        domain="retail",
        location=Location(city=LAMENTIN, country=MARTINIQUE),
        action=action,
        version="1.1.0",
        bap_id=BAP_ID,
        bap_uri=BAP_URI,
        transaction_id=transaction_id or str(uuid.uuid4()),
        message_id=message_id or str(uuid.uuid4()),
        timestamp=wire_time(moment),
        ttl=ttl,
    )
    if action != "search":
        context.bpp_id = BPP_ID
        context.bpp_uri = BPP_URI
    return context


def example_envelope(action: str, *, now: datetime | None = None, **context_overrides: str) -> BecknModel:
    """The whole body of endpoint `action` as a model."""
    model = ENVELOPES[action]
    moment = now or datetime.now(UTC)
    context = example_context(action, now=moment, **context_overrides)
    return model(context=context, message=_MESSAGES[action](moment))


def example_request(action: str, *, now: datetime | None = None, **context_overrides: str) -> dict:
    if is_callback(action):
        raise ValueError(f"{action!r} is a callback: use example_callback")
    return example_envelope(action, now=now, **context_overrides).to_wire()


def example_callback(action: str, *, now: datetime | None = None, **context_overrides: str) -> dict:
    name = action if action.startswith("on_") else f"on_{action}"
    return example_envelope(name, now=now, **context_overrides).to_wire()


# --- the catalogue ---------------------------------------------------------------------------


def _at(t: datetime, **delta: float) -> str:
    return wire_time(t + timedelta(**delta))


def _eur(value: str) -> Price:
    return Price(currency="EUR", value=value)


def _farm_location() -> Location:
    return Location(
        id="boutique-lamentin",
        descriptor=Descriptor(name="Boutique de la ferme"),
        gps="14.6097, -60.9967",
        address="Quartier Bois-Carré, 97232 Le Lamentin",
        city=LAMENTIN,
        state=State(code="972", name="Martinique"),
        country=MARTINIQUE,
        area_code="97232",
    )


def _pineapple(count: int | None = None) -> Item:
    item = Item(
        id="ananas-victoria",
        descriptor=Descriptor(
            name="Ananas Victoria",
            short_desc="Ananas péi, cueilli à maturité",
            images=[Image(url="https://bpp.lakou.test/media/ananas.jpg", size_type="md")],
        ),
        price=_eur("4.50"),
        category_ids=["fruits"],
        fulfillment_ids=["livraison"],
        location_ids=["boutique-lamentin"],
    )
    if count is not None:
        item.quantity = ItemQuantity(selected=QuantityAmount(count=count))
    else:
        item.quantity = ItemQuantity(
            available=QuantityAmount(count=40),
            unitized=QuantityAmount(count=1, measure=Scalar(unit="kilogram", value="1.2")),
        )
        item.tags = [TagGroup(
            descriptor=Descriptor(code="origine", name="Origine"),
            list=[Tag(descriptor=Descriptor(code="commune", name="Commune"), value="Le Lamentin")],
        )]
    return item


def _christophine(count: int | None = None) -> Item:
    item = Item(
        id="christophine",
        descriptor=Descriptor(name="Christophine", short_desc="Christophine verte, au kilo"),
        price=_eur("2.80"),
        category_ids=["legumes"],
        fulfillment_ids=["livraison"],
    )
    if count is not None:
        item.quantity = ItemQuantity(selected=QuantityAmount(count=count))
    return item


def _provider(*, full: bool) -> Provider:
    provider = Provider(id=PROVIDER_ID)
    if full:
        provider.descriptor = Descriptor(name="Ferme Bellevue", short_desc="Fruits et légumes du Lamentin")
        provider.categories = [
            Category(id="fruits", descriptor=Descriptor(name="Fruits")),
            Category(id="legumes", descriptor=Descriptor(name="Légumes")),
        ]
        provider.locations = [_farm_location()]
        provider.fulfillments = [Fulfillment(id="livraison", type="Delivery")]
        provider.payments = [Payment(id="paiement-livraison", type="ON-FULFILLMENT", collected_by="BPP")]
        provider.items = [_pineapple(), _christophine()]
        provider.rateable = True
        provider.ttl = 3600
    return provider


def _delivery(t: datetime, *, state: str | None = None) -> Fulfillment:
    fulfillment = Fulfillment(
        id="livraison",
        type="Delivery",
        tracking=True,
        customer=Customer(
            person=Person(name="Léa Marie-Sainte"),
            contact=Contact(phone="+596696123456", email="lea.marie-sainte@example.mq"),
        ),
        stops=[Stop(
            type="end",
            location=Location(
                gps="14.6037, -61.0742",
                address="12 rue Victor Hugo, 97200 Fort-de-France",
                city=FORT_DE_FRANCE,
                country=MARTINIQUE,
                area_code="97200",
            ),
            time=Time(range=TimeRange(start=_at(t, hours=3), end=_at(t, hours=7))),
            instructions=Descriptor(short_desc="Sonner chez Marie-Sainte, 2e étage"),
        )],
    )
    if state is not None:
        fulfillment.state = FulfillmentState(
            descriptor=Descriptor(code=state, name=_STATE_NAMES[state]),
            updated_at=_at(t, minutes=-5),
        )
        fulfillment.agent = Agent(person=Person(name="Joël Rosier"), contact=Contact(phone="+596696654321"))
    return fulfillment


_STATE_NAMES = {"PACKED": "Colis préparé", "OUT_FOR_DELIVERY": "En cours de livraison", "CANCELLED": "Annulée"}


def _quote() -> Quotation:
    return Quotation(
        id="6d0f7c2e-8f5b-4b7a-9d51-3c2e1a0b9f84",
        price=_eur("19.10"),
        breakup=[
            QuotationBreakup(item=Item(id="ananas-victoria"), title="Ananas Victoria × 3", price=_eur("13.50")),
            QuotationBreakup(item=Item(id="christophine"), title="Christophine × 2", price=_eur("5.60")),
        ],
        ttl="PT15M",
    )


def _billing() -> Billing:
    return Billing(
        name="Léa Marie-Sainte",
        address="12 rue Victor Hugo, 97200 Fort-de-France",
        city=FORT_DE_FRANCE,
        state=State(code="972", name="Martinique"),
        email="lea.marie-sainte@example.mq",
        phone="+596696123456",
    )


def _payment(status: str) -> Payment:
    return Payment(
        id="paiement-livraison",
        type="ON-FULFILLMENT",
        collected_by="BPP",
        status=status,
        params=PaymentParams(amount="19.10", currency="EUR"),
    )


def _order(t: datetime, *, stage: str) -> Order:
    """The order as it stands at `stage` of the transaction."""
    order = Order(provider=_provider(full=False), items=[_pineapple(3), _christophine(2)])
    if stage == "select":
        return order
    order.fulfillments = [_delivery(t)]
    order.quote = _quote()
    if stage == "on_select":
        return order
    order.billing = _billing()
    order.payments = [_payment("NOT-PAID")]
    order.cancellation_terms = [CancellationTerm(
        fulfillment_state=FulfillmentState(descriptor=Descriptor(code="PACKED")),
        reason_required=True,
        cancellation_fee=Fee(amount=_eur("2.00")),
    )]
    if stage in ("init", "on_init", "confirm"):
        return order
    order.id = ORDER_ID
    order.status = "ACTIVE"
    order.created_at = _at(t, hours=-1)
    order.updated_at = _at(t, minutes=-5)
    order.fulfillments = [_delivery(t, state="PACKED" if stage != "on_status" else "OUT_FOR_DELIVERY")]
    if stage == "on_cancel":
        order.status = "CANCELLED"
        order.fulfillments = [_delivery(t, state="CANCELLED")]
        order.cancellation = Cancellation(
            time=_at(t, minutes=-1),
            cancelled_by="CONSUMER",
            reason=Option(id="001", descriptor=Descriptor(name="Commande passée par erreur")),
        )
    return order


def _catalog(t: datetime) -> Catalog:
    return Catalog(
        descriptor=Descriptor(name="Lakou — marché péi", short_desc="Produits frais de Martinique"),
        providers=[_provider(full=True)],
        exp=_at(t, hours=24),
    )


def _updated_order(t: datetime) -> Order:
    order = Order(id=ORDER_ID, fulfillments=[_delivery(t)])
    stop = order.fulfillments[0].stops[0]  # type: ignore[index]
    stop.time = Time(range=TimeRange(start=_at(t, hours=7), end=_at(t, hours=10)))
    return order


def _support_desk() -> Support:
    return Support(
        ref_id=ORDER_ID,
        phone="+596596000000",
        email="assistance@bpp.lakou.test",
        url="https://bpp.lakou.test/assistance",
    )

_MESSAGES: dict[str, Callable[[datetime], BecknModel]] = {
    "search": lambda t: SearchMessage(intent=Intent(
        descriptor=Descriptor(name="ananas"),
        fulfillment=Fulfillment(type="Delivery", stops=[Stop(type="end", location=Location(
            gps="14.6037, -61.0742", city=FORT_DE_FRANCE, country=MARTINIQUE, area_code="97200"))]),
        payment=Payment(type="ON-FULFILLMENT"),
    )),
    "select": lambda t: SelectMessage(order=_order(t, stage="select")),
    "init": lambda t: InitMessage(order=_order(t, stage="init")),
    "confirm": lambda t: ConfirmMessage(order=_order(t, stage="confirm")),
    "status": lambda t: StatusMessage(order_id=ORDER_ID),
    "track": lambda t: TrackMessage(order_id=ORDER_ID, callback_url=f"{BAP_URI}/suivi/{ORDER_ID}"),
    "cancel": lambda t: CancelMessage(
        order_id=ORDER_ID, cancellation_reason_id="001",
        descriptor=Descriptor(name="Commande passée par erreur")),
    "update": lambda t: UpdateMessage(update_target="fulfillment", order=_updated_order(t)),
    "rating": lambda t: RatingMessage(ratings=[
        Rating(rating_category="Provider", id=PROVIDER_ID, value="5"),
        Rating(rating_category="Fulfillment", id="livraison", value="4"),
    ]),
    "support": lambda t: SupportMessage(support=Support(ref_id=ORDER_ID, callback_phone="+596696123456")),
    "on_search": lambda t: OnSearchMessage(catalog=_catalog(t)),
    "on_select": lambda t: OnSelectMessage(order=_order(t, stage="on_select")),
    "on_init": lambda t: OnInitMessage(order=_order(t, stage="on_init")),
    "on_confirm": lambda t: OnConfirmMessage(order=_order(t, stage="on_confirm")),
    "on_status": lambda t: OnStatusMessage(order=_order(t, stage="on_status")),
    "on_track": lambda t: OnTrackMessage(tracking=Tracking(
        id=f"suivi-{ORDER_ID}",
        url=f"https://bpp.lakou.test/suivi/{ORDER_ID}",
        location=Location(gps="14.6160, -61.0588"),
        status="active",
    )),
    "on_cancel": lambda t: OnCancelMessage(order=_order(t, stage="on_cancel")),
    "on_update": lambda t: OnUpdateMessage(order=_order(t, stage="on_update")),
    "on_rating": lambda t: OnRatingMessage(feedback_form=XInput(
        form=Form(url="https://bpp.lakou.test/avis/formulaire", mime_type="text/html"),
        required=False,
    )),
    "on_support": lambda t: OnSupportMessage(support=_support_desk()),
}
