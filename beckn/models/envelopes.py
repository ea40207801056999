"""The body of each of the 20 transaction endpoints, and the synchronous ACK/NACK response.

Requests need `context` and `message`, with the message contents each path requires in
transaction.yaml. Callbacks need `context` and carry `message` (the result) or `error` (a
business failure); `on_rating` needs `message`, as the spec says.
"""

from __future__ import annotations

from typing import Self

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from beckn.models.base import BecknModel
from beckn.models.objects import (
    Ack,
    Catalog,
    Context,
    Descriptor,
    Error,
    Intent,
    Order,
    Rating,
    Support,
    Tracking,
    XInput,
)

# --- request messages -----------------------------------------------------------------------


class SearchMessage(BecknModel):
    intent: Intent | None = None


class SelectMessage(BecknModel):
    order: Order


class InitMessage(BecknModel):
    order: Order


class ConfirmMessage(BecknModel):
    order: Order


class StatusMessage(BecknModel):
    order_id: str


class TrackMessage(BecknModel):
    order_id: str
    callback_url: str | None = None


class CancelMessage(BecknModel):
    order_id: str
    cancellation_reason_id: str | None = None
    descriptor: Descriptor | None = None


class UpdateMessage(BecknModel):
    update_target: str  # comma-separated paths, e.g. "fulfillment,billing"
    order: Order


class RatingMessage(BecknModel):
    ratings: list[Rating] | None = None


class SupportMessage(BecknModel):
    support: Support | None = None


# --- callback messages ----------------------------------------------------------------------


class OnSearchMessage(BecknModel):
    catalog: Catalog


class OnSelectMessage(BecknModel):
    order: Order | None = None


class OnInitMessage(BecknModel):
    order: Order


class OnConfirmMessage(BecknModel):
    order: Order


class OnStatusMessage(BecknModel):
    order: Order


class OnTrackMessage(BecknModel):
    tracking: Tracking


class OnCancelMessage(BecknModel):
    order: Order


class OnUpdateMessage(BecknModel):
    order: Order


class OnRatingMessage(BecknModel):
    feedback_form: XInput | None = None


class OnSupportMessage(BecknModel):
    support: Support | None = None


# --- envelopes ------------------------------------------------------------------------------


class SearchRequest(BecknModel):
    context: Context
    message: SearchMessage


class SelectRequest(BecknModel):
    context: Context
    message: SelectMessage


class InitRequest(BecknModel):
    context: Context
    message: InitMessage


class ConfirmRequest(BecknModel):
    context: Context
    message: ConfirmMessage


class StatusRequest(BecknModel):
    context: Context
    message: StatusMessage


class TrackRequest(BecknModel):
    context: Context
    message: TrackMessage


class CancelRequest(BecknModel):
    context: Context
    message: CancelMessage


class UpdateRequest(BecknModel):
    context: Context
    message: UpdateMessage


class RatingRequest(BecknModel):
    context: Context
    message: RatingMessage


class SupportRequest(BecknModel):
    context: Context
    message: SupportMessage


MESSAGE_OR_ERROR = "message_or_error_missing"


class CallbackEnvelope(BecknModel):
    """Common shape of the `on_*` bodies: a result in `message`, or a failure in `error`."""

    context: Context
    message: BecknModel | None = None  # narrowed by each subclass; declared here to keep key order
    error: Error | None = None

    @model_validator(mode="after")
    def _message_or_error(self) -> Self:
        # The schema lets both be absent, but such a callback answers nothing: the BAP would wait
        # for a result that never comes. Refuse it so that the sender learns at once.
        if self.message is None and self.error is None:
            raise PydanticCustomError(
                MESSAGE_OR_ERROR, "a callback must carry `message` with its result, or `error` to report a failure"
            )
        return self


class OnSearchRequest(CallbackEnvelope):
    message: OnSearchMessage | None = None


class OnSelectRequest(CallbackEnvelope):
    message: OnSelectMessage | None = None


class OnInitRequest(CallbackEnvelope):
    message: OnInitMessage | None = None


class OnConfirmRequest(CallbackEnvelope):
    message: OnConfirmMessage | None = None


class OnStatusRequest(CallbackEnvelope):
    message: OnStatusMessage | None = None


class OnTrackRequest(CallbackEnvelope):
    message: OnTrackMessage | None = None


class OnCancelRequest(CallbackEnvelope):
    message: OnCancelMessage | None = None


class OnUpdateRequest(CallbackEnvelope):
    message: OnUpdateMessage | None = None


class OnRatingRequest(CallbackEnvelope):
    message: OnRatingMessage


class OnSupportRequest(CallbackEnvelope):
    message: OnSupportMessage | None = None


# --- synchronous response -------------------------------------------------------------------


class AckMessage(BecknModel):
    ack: Ack


class AckResponse(BecknModel):
    """`{"message": {"ack": {"status": "ACK"|"NACK"}}, "error"?: {...}}`."""

    message: AckMessage
    error: Error | None = None
