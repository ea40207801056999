"""The citizen's language, and what the API tells a citizen when something goes wrong.

Every error the citizen app can show has a short message for people in French, English, Spanish
and German: the Beckn error codes a BPP sends (BECKN-005, as the Lakou BPP uses them, see
specs/network-policy.md "Errors the BPP returns") and the API's own codes. The developer-facing
English text (and a BPP's own wording) travels beside it as `detail`; the app shows `message`.

The language is the request's `Accept-Language` (its first of fr/en/es/de by q-value), else the
language the search or cart was made in, else French: Martinique's language.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Protocol

LANGUAGES: tuple[str, ...] = ("fr", "en", "es", "de")
DEFAULT_LANGUAGE = "fr"

# The current request's Accept-Language header, set by the API's middleware (bap.api.errors), so
# that code far from the request (the outcome of a Beckn request) answers in the citizen's language.
_ACCEPT_LANGUAGE: ContextVar[str | None] = ContextVar("lakou_accept_language", default=None)


class _HasHeaders(Protocol):
    @property
    def headers(self) -> Any: ...


def accepted_language(header: str | None) -> str | None:
    """The first of fr/en/es/de in an Accept-Language header by q-value, or None.

    `de-CH,de;q=0.9,en;q=0.8` → de; `it,en;q=0.5` → en; `en;q=0` → None (q=0 means "not this").
    """
    if not header:
        return None
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:32]):  # bounded: the header is client input
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGUAGES:
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else None


def request_language(request: _HasHeaders | None = None, fallback: str | None = None) -> str:
    """The citizen's language: the request's Accept-Language, else `fallback` (the cart's or the
    search's `lang`), else French. Without a request, the one being served (see `bind_request_language`)."""
    header = request.headers.get("accept-language") if request is not None else _ACCEPT_LANGUAGE.get()
    chosen = accepted_language(header)
    if chosen is not None:
        return chosen
    if fallback:
        primary = fallback.strip().lower().split("-")[0]
        if primary in LANGUAGES:
            return primary
    return DEFAULT_LANGUAGE


def bind_request_language(header: str | None) -> object:
    """Remember the request's Accept-Language for this task; returns a token for `unbind`."""
    return _ACCEPT_LANGUAGE.set(header)


def unbind_request_language(token: object) -> None:
    _ACCEPT_LANGUAGE.reset(token)  # type: ignore[arg-type]


# code → (fr, en, es, de). Written for citizens: what happened and what they can do, no jargon.
_MESSAGES: dict[str, tuple[str, str, str, str]] = {
    # --- The API's own codes
    "unauthorized": (
        "Votre session a expiré. Veuillez rouvrir l'application.",
        "Your session has expired. Please reopen the app.",
        "Su sesión ha caducado. Vuelva a abrir la aplicación.",
        "Ihre Sitzung ist abgelaufen. Bitte öffnen Sie die App erneut.",
    ),
    "not_found": (
        "Introuvable. Cet élément n'existe pas ou n'est plus disponible.",
        "Not found. This item does not exist or is no longer available.",
        "No encontrado. Este elemento no existe o ya no está disponible.",
        "Nicht gefunden. Dieser Eintrag existiert nicht oder ist nicht mehr verfügbar.",
    ),
    "invalid_request": (
        "Certaines informations sont manquantes ou incorrectes. Vérifiez votre saisie.",
        "Some information is missing or incorrect. Please check what you entered.",
        "Falta información o es incorrecta. Revise los datos introducidos.",
        "Einige Angaben fehlen oder sind falsch. Bitte prüfen Sie Ihre Eingaben.",
    ),
    "invalid_json": (
        "La demande n'a pas pu être lue. Veuillez réessayer.",
        "The request could not be read. Please try again.",
        "No se pudo leer la solicitud. Inténtelo de nuevo.",
        "Die Anfrage konnte nicht gelesen werden. Bitte versuchen Sie es erneut.",
    ),
    "method_not_allowed": (
        "Cette action n'est pas possible ici.",
        "This action is not possible here.",
        "Esta acción no es posible aquí.",
        "Diese Aktion ist hier nicht möglich.",
    ),
    "http_error": (
        "Une erreur est survenue. Veuillez réessayer.",
        "Something went wrong. Please try again.",
        "Se ha producido un error. Inténtelo de nuevo.",
        "Ein Fehler ist aufgetreten. Bitte versuchen Sie es erneut.",
    ),
    "internal_error": (
        "Une erreur est survenue de notre côté. Veuillez réessayer dans un instant.",
        "Something went wrong on our side. Please try again in a moment.",
        "Se ha producido un error por nuestra parte. Inténtelo de nuevo en un momento.",
        "Bei uns ist ein Fehler aufgetreten. Bitte versuchen Sie es gleich noch einmal.",
    ),
    "registry_unavailable": (
        "Le service est momentanément indisponible. Veuillez réessayer dans quelques minutes.",
        "The service is temporarily unavailable. Please try again in a few minutes.",
        "El servicio no está disponible por el momento. Inténtelo de nuevo en unos minutos.",
        "Der Dienst ist vorübergehend nicht verfügbar. Bitte versuchen Sie es in einigen Minuten erneut.",
    ),
    "no_gateway": (
        "La recherche est momentanément indisponible. Veuillez réessayer plus tard.",
        "Search is temporarily unavailable. Please try again later.",
        "La búsqueda no está disponible por el momento. Inténtelo más tarde.",
        "Die Suche ist vorübergehend nicht verfügbar. Bitte versuchen Sie es später erneut.",
    ),
    "bpp_unreachable": (
        "Ce commerçant ne répond pas pour le moment. Réessayez plus tard ou choisissez un autre commerçant.",
        "This shop is not responding right now. Try again later or choose another shop.",
        "Este comercio no responde en este momento. Inténtelo más tarde o elija otro comercio.",
        "Dieses Geschäft antwortet gerade nicht. Versuchen Sie es später oder wählen Sie ein anderes Geschäft.",
    ),
    "bpp_refused": (
        "Ce commerçant n'a pas pu traiter votre demande. Réessayez ou choisissez un autre commerçant.",
        "This shop could not handle your request. Try again or choose another shop.",
        "Este comercio no pudo atender su solicitud. Inténtelo de nuevo o elija otro comercio.",
        "Dieses Geschäft konnte Ihre Anfrage nicht bearbeiten. Versuchen Sie es erneut oder wählen Sie ein anderes.",
    ),
    "timeout": (
        "Le commerçant n'a pas répondu à temps. Veuillez réessayer.",
        "The shop did not answer in time. Please try again.",
        "El comercio no respondió a tiempo. Inténtelo de nuevo.",
        "Das Geschäft hat nicht rechtzeitig geantwortet. Bitte versuchen Sie es erneut.",
    ),
    "expired": (
        "Cette demande a expiré. Veuillez recommencer.",
        "This request has expired. Please start again.",
        "Esta solicitud ha caducado. Vuelva a empezar.",
        "Diese Anfrage ist abgelaufen. Bitte beginnen Sie von vorn.",
    ),
    "price_changed": (
        "Le prix a changé. Vérifiez le nouveau total avant de commander.",
        "The price has changed. Please check the new total before ordering.",
        "El precio ha cambiado. Revise el nuevo total antes de hacer el pedido.",
        "Der Preis hat sich geändert. Bitte prüfen Sie den neuen Gesamtbetrag vor der Bestellung.",
    ),
    "not_checked_out": (
        "Indiquez d'abord vos coordonnées et le mode de retrait ou de livraison.",
        "Please first enter your details and choose pickup or delivery.",
        "Indique primero sus datos y elija recogida o entrega.",
        "Bitte geben Sie zuerst Ihre Daten ein und wählen Sie Abholung oder Lieferung.",
    ),
    "unknown_bpp": (
        "Ce commerçant ne fait pas partie des résultats de votre recherche.",
        "This shop is not among your search results.",
        "Este comercio no figura entre los resultados de su búsqueda.",
        "Dieses Geschäft ist nicht unter Ihren Suchergebnissen.",
    ),
    "select_first": (
        "Choisissez d'abord des articles.",
        "Please choose some items first.",
        "Elija primero algunos artículos.",
        "Bitte wählen Sie zuerst Artikel aus.",
    ),
    "init_first": (
        "Indiquez d'abord vos coordonnées et le mode de retrait ou de livraison.",
        "Please first enter your details and choose pickup or delivery.",
        "Indique primero sus datos y elija recogida o entrega.",
        "Bitte geben Sie zuerst Ihre Daten ein und wählen Sie Abholung oder Lieferung.",
    ),
    "confirm_first": (
        "Cette commande n'est pas encore passée.",
        "This order has not been placed yet.",
        "Este pedido aún no se ha realizado.",
        "Diese Bestellung wurde noch nicht aufgegeben.",
    ),
    "already_confirmed": (
        "Cette commande est déjà passée.",
        "This order has already been placed.",
        "Este pedido ya se ha realizado.",
        "Diese Bestellung wurde bereits aufgegeben.",
    ),
    "pending": (
        "Le commerçant n'a pas encore répondu. Patientez un instant.",
        "The shop has not answered yet. Please wait a moment.",
        "El comercio aún no ha respondido. Espere un momento.",
        "Das Geschäft hat noch nicht geantwortet. Bitte warten Sie einen Moment.",
    ),
    "conflict": (
        "Cette action n'est pas possible dans l'état actuel de votre commande.",
        "This action is not possible in your order's current state.",
        "Esta acción no es posible en el estado actual de su pedido.",
        "Diese Aktion ist im aktuellen Zustand Ihrer Bestellung nicht möglich.",
    ),
    "empty_search": (
        "Indiquez ce que vous cherchez : un mot, une catégorie, une commune ou un lieu.",
        "Tell us what you are looking for: a word, a category, a town or a place.",
        "Indique qué busca: una palabra, una categoría, un municipio o un lugar.",
        "Sagen Sie uns, was Sie suchen: ein Wort, eine Kategorie, einen Ort oder eine Gegend.",
    ),
    "distance_needs_near": (
        "Le tri par distance demande une recherche autour d'un lieu.",
        "Sorting by distance needs a search around a place.",
        "Ordenar por distancia requiere una búsqueda alrededor de un lugar.",
        "Die Sortierung nach Entfernung braucht eine Suche rund um einen Ort.",
    ),
    "unknown_provider": (
        "Ce commerçant ne fait pas partie des résultats de votre recherche.",
        "This shop is not among your search results.",
        "Este comercio no figura entre los resultados de su búsqueda.",
        "Dieses Geschäft ist nicht unter Ihren Suchergebnissen.",
    ),
    "unknown_item": (
        "Cet article ne fait pas partie des offres de ce commerçant.",
        "This item is not among this shop's offers.",
        "Este artículo no figura entre las ofertas de este comercio.",
        "Dieser Artikel gehört nicht zu den Angeboten dieses Geschäfts.",
    ),
    "empty_cart": (
        "Votre panier doit contenir au moins un article.",
        "Your basket must contain at least one item.",
        "Su cesta debe contener al menos un artículo.",
        "Ihr Warenkorb muss mindestens einen Artikel enthalten.",
    ),
    "fulfillment_unavailable": (
        "Ce commerçant ne propose pas ce mode de retrait ou de livraison. Choisissez-en un autre.",
        "This shop does not offer this pickup or delivery option. Please choose another one.",
        "Este comercio no ofrece esta forma de recogida o entrega. Elija otra.",
        "Dieses Geschäft bietet diese Abhol- oder Lieferart nicht an. Bitte wählen Sie eine andere.",
    ),
    "unknown_location": (
        "Ce point de retrait n'existe pas chez ce commerçant. Choisissez-en un autre.",
        "This shop has no such pickup point. Please choose another one.",
        "Este comercio no tiene ese punto de recogida. Elija otro.",
        "Diese Abholstelle gibt es bei diesem Geschäft nicht. Bitte wählen Sie eine andere.",
    ),
    "gps_required": (
        "Indiquez le lieu de livraison sur la carte : ce commerçant ne livre qu'autour de sa boutique.",
        "Please mark the delivery place on the map: this shop only delivers around its store.",
        "Marque el lugar de entrega en el mapa: este comercio solo entrega cerca de su tienda.",
        "Bitte markieren Sie den Lieferort auf der Karte: Dieses Geschäft liefert nur in seiner Umgebung.",
    ),
    "payment_unavailable": (
        "Ce moyen de paiement n'est pas accepté par le commerçant. Choisissez-en un autre.",
        "The shop does not accept this payment method. Please choose another one.",
        "El comercio no acepta este medio de pago. Elija otro.",
        "Das Geschäft akzeptiert diese Zahlungsart nicht. Bitte wählen Sie eine andere.",
    ),
    "payment_required": (
        "Payez d'abord avec le lien de paiement, puis validez la commande.",
        "Please pay first with the payment link, then place the order.",
        "Pague primero con el enlace de pago y luego confirme el pedido.",
        "Bitte bezahlen Sie zuerst über den Zahlungslink und bestellen Sie dann.",
    ),
    # --- logging in through Martinique Connect (bap.api.auth)
    "login_unavailable": (
        "La connexion n'est pas proposée sur ce service pour le moment.",
        "Logging in is not offered on this service at the moment.",
        "El inicio de sesión no está disponible en este servicio por ahora.",
        "Die Anmeldung ist bei diesem Dienst derzeit nicht verfügbar.",
    ),
    "invalid_state": (
        "La connexion a expiré ou n'est plus valable. Recommencez depuis l'application.",
        "The login has expired or is no longer valid. Please start again from the app.",
        "El inicio de sesión ha caducado o ya no es válido. Vuelva a empezar desde la aplicación.",
        "Die Anmeldung ist abgelaufen oder nicht mehr gültig. Bitte beginnen Sie erneut in der App.",
    ),
    "wrong_issuer": (
        "La réponse ne vient pas de Martinique Connect. Recommencez la connexion.",
        "The answer did not come from Martinique Connect. Please log in again.",
        "La respuesta no procede de Martinique Connect. Vuelva a iniciar sesión.",
        "Die Antwort stammt nicht von Martinique Connect. Bitte melden Sie sich erneut an.",
    ),
    "login_refused": (
        "La connexion a été annulée ou refusée par Martinique Connect.",
        "The login was cancelled or refused by Martinique Connect.",
        "Martinique Connect canceló o rechazó el inicio de sesión.",
        "Die Anmeldung wurde von Martinique Connect abgebrochen oder abgelehnt.",
    ),
    "login_failed": (
        "La connexion n'a pas pu aboutir. Recommencez depuis l'application.",
        "The login could not be completed. Please start again from the app.",
        "No se pudo completar el inicio de sesión. Vuelva a empezar desde la aplicación.",
        "Die Anmeldung konnte nicht abgeschlossen werden. Bitte beginnen Sie erneut in der App.",
    ),
    "invalid_id_token": (
        "La réponse de Martinique Connect n'a pas pu être vérifiée. Recommencez la connexion.",
        "Martinique Connect's answer could not be verified. Please log in again.",
        "No se pudo verificar la respuesta de Martinique Connect. Vuelva a iniciar sesión.",
        "Die Antwort von Martinique Connect konnte nicht geprüft werden. Bitte melden Sie sich erneut an.",
    ),
    "acr_not_met": (
        "Cette connexion demande votre portefeuille. Recommencez et connectez-vous avec le portefeuille.",
        "This login needs your wallet. Please start again and sign in with the wallet.",
        "Este inicio de sesión requiere su cartera. Vuelva a empezar e inicie sesión con la cartera.",
        "Für diese Anmeldung brauchen Sie Ihre Wallet. Bitte beginnen Sie erneut und melden Sie sich mit der Wallet an.",
    ),
    "invalid_login_code": (
        "Cette connexion n'a pas été lancée depuis cette application, a déjà servi ou a expiré. "
        "Recommencez la connexion depuis l'application.",
        "This login was not started from this app, was already used or has expired. "
        "Please log in again from the app.",
        "Este inicio de sesión no se inició desde esta aplicación, ya se usó o ha caducado. "
        "Vuelva a iniciar sesión desde la aplicación.",
        "Diese Anmeldung wurde nicht in dieser App begonnen, wurde bereits verwendet oder ist abgelaufen. "
        "Bitte melden Sie sich erneut in der App an.",
    ),
    # --- Beckn codes a BPP may send (BECKN-005, ONDC extensions)
    "10001": (
        "La communication avec le réseau a échoué. Veuillez réessayer.",
        "Communication with the network failed. Please try again.",
        "La comunicación con la red ha fallado. Inténtelo de nuevo.",
        "Die Verbindung zum Netzwerk ist fehlgeschlagen. Bitte versuchen Sie es erneut.",
    ),
    "20001": (
        "La communication avec le commerçant a échoué. Veuillez réessayer.",
        "Communication with the shop failed. Please try again.",
        "La comunicación con el comercio ha fallado. Inténtelo de nuevo.",
        "Die Verbindung zum Geschäft ist fehlgeschlagen. Bitte versuchen Sie es erneut.",
    ),
    "20002": (
        "La réponse du commerçant est arrivée trop tard. Veuillez réessayer.",
        "The shop's answer arrived too late. Please try again.",
        "La respuesta del comercio llegó demasiado tarde. Inténtelo de nuevo.",
        "Die Antwort des Geschäfts kam zu spät. Bitte versuchen Sie es erneut.",
    ),
    "20009": (
        "Le commerçant n'a pas répondu à temps. Veuillez réessayer.",
        "The shop did not answer in time. Please try again.",
        "El comercio no respondió a tiempo. Inténtelo de nuevo.",
        "Das Geschäft hat nicht rechtzeitig geantwortet. Bitte versuchen Sie es erneut.",
    ),
    "30000": (
        "Certaines informations sont manquantes : vérifiez votre nom et l'adresse de livraison.",
        "Some information is missing: please check your name and the delivery address.",
        "Falta información: revise su nombre y la dirección de entrega.",
        "Es fehlen Angaben: Bitte prüfen Sie Ihren Namen und die Lieferadresse.",
    ),
    "30001": (
        "Ce commerçant n'est plus disponible.",
        "This shop is no longer available.",
        "Este comercio ya no está disponible.",
        "Dieses Geschäft ist nicht mehr verfügbar.",
    ),
    "30002": (
        "Ce point de retrait n'existe pas chez ce commerçant. Choisissez-en un autre.",
        "This shop has no such pickup point. Please choose another one.",
        "Este comercio no tiene ese punto de recogida. Elija otro.",
        "Diese Abholstelle gibt es bei diesem Geschäft nicht. Bitte wählen Sie eine andere.",
    ),
    "30003": (
        "Cette catégorie n'existe pas chez ce commerçant.",
        "This shop has no such category.",
        "Este comercio no tiene esa categoría.",
        "Diese Kategorie gibt es bei diesem Geschäft nicht.",
    ),
    "30004": (
        "Cet article n'est plus proposé par le commerçant.",
        "This item is no longer offered by the shop.",
        "Este artículo ya no lo ofrece el comercio.",
        "Dieser Artikel wird vom Geschäft nicht mehr angeboten.",
    ),
    "30005": (
        "Cette catégorie n'existe pas.",
        "This category does not exist.",
        "Esta categoría no existe.",
        "Diese Kategorie gibt es nicht.",
    ),
    "30006": (
        "Cette offre n'est plus valable.",
        "This offer is no longer valid.",
        "Esta oferta ya no es válida.",
        "Dieses Angebot ist nicht mehr gültig.",
    ),
    "30007": (
        "Cette option n'est plus proposée.",
        "This option is no longer offered.",
        "Esta opción ya no se ofrece.",
        "Diese Option wird nicht mehr angeboten.",
    ),
    "30008": (
        "Ce commerçant ne propose pas ce mode de retrait ou de livraison, ou ne livre pas dans votre zone.",
        "This shop does not offer this pickup or delivery option, or does not deliver to your area.",
        "Este comercio no ofrece esta forma de recogida o entrega, o no entrega en su zona.",
        "Dieses Geschäft bietet diese Abhol- oder Lieferart nicht an oder liefert nicht in Ihr Gebiet.",
    ),
    "30009": (
        "Ce mode de livraison n'est pas disponible pour le moment.",
        "This delivery option is not available right now.",
        "Esta forma de entrega no está disponible en este momento.",
        "Diese Lieferart ist derzeit nicht verfügbar.",
    ),
    "30010": (
        "Cette commande est introuvable chez le commerçant.",
        "The shop cannot find this order.",
        "El comercio no encuentra este pedido.",
        "Das Geschäft findet diese Bestellung nicht.",
    ),
    "30011": (
        "Choisissez un motif d'annulation dans la liste.",
        "Please choose a cancellation reason from the list.",
        "Elija un motivo de cancelación de la lista.",
        "Bitte wählen Sie einen Stornierungsgrund aus der Liste.",
    ),
    "30012": (
        "Cette modification n'est pas possible : seules vos coordonnées et la livraison peuvent être changées.",
        "This change is not possible: only your details and the delivery can be changed.",
        "Este cambio no es posible: solo se pueden modificar sus datos y la entrega.",
        "Diese Änderung ist nicht möglich: Nur Ihre Daten und die Lieferung können geändert werden.",
    ),
    "30013": (
        "Cette modification ne correspond pas à votre commande.",
        "This change does not match your order.",
        "Este cambio no corresponde a su pedido.",
        "Diese Änderung passt nicht zu Ihrer Bestellung.",
    ),
    "30014": (
        "Vous ne pouvez noter que ce qui fait partie de votre commande.",
        "You can only rate what is part of your order.",
        "Solo puede valorar lo que forma parte de su pedido.",
        "Sie können nur bewerten, was zu Ihrer Bestellung gehört.",
    ),
    "30015": (
        "Donnez une note de 1 à 5.",
        "Please give a rating from 1 to 5.",
        "Dé una valoración de 1 a 5.",
        "Bitte vergeben Sie eine Bewertung von 1 bis 5.",
    ),
    "30016": (
        "La communication avec le commerçant a échoué. Veuillez réessayer.",
        "Communication with the shop failed. Please try again.",
        "La comunicación con el comercio ha fallado. Inténtelo de nuevo.",
        "Die Verbindung zum Geschäft ist fehlgeschlagen. Bitte versuchen Sie es erneut.",
    ),
    "30022": (
        "La demande est arrivée trop tard chez le commerçant. Veuillez réessayer.",
        "The request reached the shop too late. Please try again.",
        "La solicitud llegó demasiado tarde al comercio. Inténtelo de nuevo.",
        "Die Anfrage kam zu spät beim Geschäft an. Bitte versuchen Sie es erneut.",
    ),
    "40000": (
        "Le paiement n'a pas encore été reçu. Payez avec le lien de paiement, puis validez à nouveau la commande.",
        "The payment has not been received yet. Pay with the payment link, then place the order again.",
        "El pago aún no se ha recibido. Pague con el enlace de pago y vuelva a confirmar el pedido.",
        "Die Zahlung ist noch nicht eingegangen. Bezahlen Sie über den Zahlungslink und bestellen Sie dann erneut.",
    ),
    "40001": (
        "Cette action n'est pas possible pour cette commande.",
        "This action is not possible for this order.",
        "Esta acción no es posible para este pedido.",
        "Diese Aktion ist für diese Bestellung nicht möglich.",
    ),
    "40002": (
        "Stock insuffisant : le commerçant n'a pas assez de cet article. Réduisez la quantité.",
        "Not enough stock: the shop does not have enough of this item. Please lower the quantity.",
        "No hay suficiente existencia: el comercio no tiene bastante de este artículo. Reduzca la cantidad.",
        "Nicht genug auf Lager: Das Geschäft hat nicht genug von diesem Artikel. Bitte verringern Sie die Menge.",
    ),
    "40003": (
        "Le commerçant ne peut pas donner de prix pour le moment. Veuillez réessayer.",
        "The shop cannot give a price right now. Please try again.",
        "El comercio no puede dar un precio en este momento. Inténtelo de nuevo.",
        "Das Geschäft kann gerade keinen Preis nennen. Bitte versuchen Sie es erneut.",
    ),
    "40004": (
        "Ce moyen de paiement n'est pas accepté par le commerçant. Choisissez-en un autre.",
        "The shop does not accept this payment method. Please choose another one.",
        "El comercio no acepta este medio de pago. Elija otro.",
        "Das Geschäft akzeptiert diese Zahlungsart nicht. Bitte wählen Sie eine andere.",
    ),
    "40005": (
        "Le suivi n'est pas disponible pour cette commande.",
        "Tracking is not available for this order.",
        "El seguimiento no está disponible para este pedido.",
        "Die Sendungsverfolgung ist für diese Bestellung nicht verfügbar.",
    ),
    "40006": (
        "Aucun livreur n'est disponible pour le moment. Réessayez plus tard ou choisissez le retrait.",
        "No delivery person is available right now. Try again later or choose pickup.",
        "No hay repartidor disponible en este momento. Inténtelo más tarde o elija la recogida.",
        "Derzeit ist kein Zusteller verfügbar. Versuchen Sie es später oder wählen Sie Abholung.",
    ),
    "50000": (
        "Le commerçant ne permet pas cette action.",
        "The shop does not allow this action.",
        "El comercio no permite esta acción.",
        "Das Geschäft erlaubt diese Aktion nicht.",
    ),
    "50001": (
        "Cette commande ne peut plus être annulée.",
        "This order can no longer be cancelled.",
        "Este pedido ya no se puede cancelar.",
        "Diese Bestellung kann nicht mehr storniert werden.",
    ),
    "50002": (
        "Cette commande ne peut plus être modifiée.",
        "This order can no longer be changed.",
        "Este pedido ya no se puede modificar.",
        "Diese Bestellung kann nicht mehr geändert werden.",
    ),
    "50003": (
        "Ce type de note n'est pas accepté.",
        "This kind of rating is not accepted.",
        "Este tipo de valoración no se acepta.",
        "Diese Art von Bewertung wird nicht angenommen.",
    ),
    "50004": (
        "Ce commerçant n'a pas de contact d'assistance.",
        "This shop has no support contact.",
        "Este comercio no tiene contacto de asistencia.",
        "Dieses Geschäft hat keinen Support-Kontakt.",
    ),
}

# Other spellings of the same situation.
_ALIASES = {"validation": "invalid_request", "validation_error": "invalid_request",
            "select_failed": "bpp_refused", "nack": "bpp_refused"}

_GENERIC: dict[str, tuple[str, str, str, str]] = {
    # By the first digit of an unknown Beckn code: context, core, business, policy.
    "1": _MESSAGES["10001"],
    "2": _MESSAGES["20001"],
    "3": (
        "Le commerçant n'a pas pu traiter votre demande. Vérifiez votre commande et réessayez.",
        "The shop could not handle your request. Check your order and try again.",
        "El comercio no pudo atender su solicitud. Revise su pedido e inténtelo de nuevo.",
        "Das Geschäft konnte Ihre Anfrage nicht bearbeiten. Prüfen Sie Ihre Bestellung und versuchen Sie es erneut.",
    ),
    "4": _MESSAGES["40001"],
    "5": _MESSAGES["50000"],
}
_FALLBACK = _MESSAGES["http_error"]


def citizen_message(code: str | None, lang: str | None = None) -> str:
    """What to tell the citizen about `code`, in `lang` (fr/en/es/de; anything else → French).
    An unknown code still gets a sensible message: by its Beckn family, else a generic one."""
    index = LANGUAGES.index(lang) if lang in LANGUAGES else 0
    key = _ALIASES.get(code or "", code or "")
    texts = _MESSAGES.get(key)
    if texts is None:
        texts = _GENERIC.get(key[:1], _FALLBACK) if key.isdigit() and len(key) == 5 else _FALLBACK
    return texts[index]


def known_codes() -> list[str]:
    """Every code with a message of its own (for the docs and the tests)."""
    return sorted(_MESSAGES)


# Short, per-field validation messages: pydantic's error type → (fr, en, es, de).
_FIELD_MESSAGES: dict[str, tuple[str, str, str, str]] = {
    "missing": ("obligatoire", "required", "obligatorio", "erforderlich"),
    "string_too_short": ("trop court", "too short", "demasiado corto", "zu kurz"),
    "string_too_long": ("trop long", "too long", "demasiado largo", "zu lang"),
    "string_pattern_mismatch": ("format invalide", "invalid format", "formato no válido", "ungültiges Format"),
    "greater_than_equal": ("valeur trop petite", "value too small", "valor demasiado pequeño", "Wert zu klein"),
    "greater_than": ("valeur trop petite", "value too small", "valor demasiado pequeño", "Wert zu klein"),
    "less_than_equal": ("valeur trop grande", "value too large", "valor demasiado grande", "Wert zu groß"),
    "less_than": ("valeur trop grande", "value too large", "valor demasiado grande", "Wert zu groß"),
    "literal_error": ("valeur non proposée", "not one of the allowed values", "valor no permitido",
                      "kein erlaubter Wert"),
    "enum": ("valeur non proposée", "not one of the allowed values", "valor no permitido", "kein erlaubter Wert"),
    "too_short": ("liste trop courte", "list too short", "lista demasiado corta", "Liste zu kurz"),
    "too_long": ("liste trop longue", "list too long", "lista demasiado larga", "Liste zu lang"),
    "extra_forbidden": ("champ non prévu", "unexpected field", "campo no previsto", "unerwartetes Feld"),
}
_FIELD_INVALID = ("valeur invalide", "invalid value", "valor no válido", "ungültiger Wert")


def field_message(error_type: str | None, lang: str | None = None) -> str:
    """A short localised phrase for one invalid field (pydantic error `type`)."""
    index = LANGUAGES.index(lang) if lang in LANGUAGES else 0
    return _FIELD_MESSAGES.get(error_type or "", _FIELD_INVALID)[index]
