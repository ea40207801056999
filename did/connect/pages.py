"""The provider's HTML pages (login, consent, errors, logout) in French, English, Spanish and German.

Every value is HTML-escaped (`html.escape`); forms carry a CSRF token. The language is the first
supported one in `ui_locales`, then in Accept-Language, else French.
"""

from __future__ import annotations

from html import escape
from urllib.parse import urlencode

LANGS = ("fr", "en", "es", "de")

TEXT: dict[str, dict[str, str]] = {
    "fr": {
        "login_title": "Connexion à Martinique Connect",
        "username": "Identifiant ou courriel",
        "password": "Mot de passe",
        "sign_in": "Se connecter",
        "wallet": "Se connecter avec mon portefeuille",
        "upstream": "Se connecter avec {name}",
        "bad_login": "Identifiant ou mot de passe incorrect.",
        "locked": "Trop de tentatives de connexion. Réessayez dans {minutes} minutes.",
        "consent_title": "Autoriser {client} ?",
        "consent_intro": "{client} demande à accéder à :",
        "allow": "Autoriser",
        "deny": "Refuser",
        "error_title": "Erreur",
        "logged_out": "Vous êtes déconnecté.",
        "logout_title": "Déconnexion",
        "csrf": "La page a expiré. Revenez en arrière et réessayez.",
        "scope_openid": "votre identifiant pour ce service",
        "scope_profile": "vos nom, prénom et date de naissance",
        "scope_email": "votre adresse électronique",
        "scope_mq_residence": "votre commune de résidence",
    },
    "en": {
        "login_title": "Sign in to Martinique Connect",
        "username": "Username or email",
        "password": "Password",
        "sign_in": "Sign in",
        "wallet": "Sign in with my wallet",
        "upstream": "Sign in with {name}",
        "bad_login": "Wrong username or password.",
        "locked": "Too many sign-in attempts. Try again in {minutes} minutes.",
        "consent_title": "Allow {client}?",
        "consent_intro": "{client} asks to access:",
        "allow": "Allow",
        "deny": "Deny",
        "error_title": "Error",
        "logged_out": "You are signed out.",
        "logout_title": "Sign out",
        "csrf": "This page has expired. Go back and try again.",
        "scope_openid": "your identifier for this service",
        "scope_profile": "your names and date of birth",
        "scope_email": "your email address",
        "scope_mq_residence": "your town of residence",
    },
    "es": {
        "login_title": "Iniciar sesión en Martinique Connect",
        "username": "Usuario o correo electrónico",
        "password": "Contraseña",
        "sign_in": "Iniciar sesión",
        "wallet": "Iniciar sesión con mi cartera",
        "upstream": "Iniciar sesión con {name}",
        "bad_login": "Usuario o contraseña incorrectos.",
        "locked": "Demasiados intentos de inicio de sesión. Inténtelo de nuevo en {minutes} minutos.",
        "consent_title": "¿Autorizar a {client}?",
        "consent_intro": "{client} solicita acceder a:",
        "allow": "Autorizar",
        "deny": "Rechazar",
        "error_title": "Error",
        "logged_out": "Ha cerrado la sesión.",
        "logout_title": "Cerrar sesión",
        "csrf": "La página ha caducado. Vuelva atrás e inténtelo de nuevo.",
        "scope_openid": "su identificador para este servicio",
        "scope_profile": "sus nombres y fecha de nacimiento",
        "scope_email": "su dirección de correo electrónico",
        "scope_mq_residence": "su municipio de residencia",
    },
    "de": {
        "login_title": "Bei Martinique Connect anmelden",
        "username": "Benutzername oder E-Mail",
        "password": "Passwort",
        "sign_in": "Anmelden",
        "wallet": "Mit meiner Wallet anmelden",
        "upstream": "Mit {name} anmelden",
        "bad_login": "Benutzername oder Passwort falsch.",
        "locked": "Zu viele Anmeldeversuche. Versuchen Sie es in {minutes} Minuten erneut.",
        "consent_title": "{client} erlauben?",
        "consent_intro": "{client} möchte zugreifen auf:",
        "allow": "Erlauben",
        "deny": "Ablehnen",
        "error_title": "Fehler",
        "logged_out": "Sie sind abgemeldet.",
        "logout_title": "Abmelden",
        "csrf": "Diese Seite ist abgelaufen. Gehen Sie zurück und versuchen Sie es erneut.",
        "scope_openid": "Ihre Kennung für diesen Dienst",
        "scope_profile": "Ihre Namen und Ihr Geburtsdatum",
        "scope_email": "Ihre E-Mail-Adresse",
        "scope_mq_residence": "Ihre Wohngemeinde",
    },
}


def choose_lang(ui_locales: str | None, accept_language: str | None) -> str:
    for tag in (ui_locales or "").split():
        base = tag.split("-")[0].lower()
        if base in LANGS:
            return base
    ranked = []
    for i, part in enumerate((accept_language or "").split(",")):
        bits = part.strip().split(";")
        q = 1.0
        for b in bits[1:]:
            if b.strip().startswith("q="):
                try:
                    q = float(b.strip()[2:])
                except ValueError:
                    q = 0.0
        ranked.append((-q, i, bits[0].strip().split("-")[0].lower()))
    for _, _, base in sorted(ranked):
        if base in LANGS:
            return base
    return "fr"


def _page(lang: str, title: str, body: str) -> str:
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title></head><body><main><h1>{escape(title)}</h1>{body}</main></body></html>")


def _hidden(fields: dict[str, str]) -> str:
    return "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in fields.items())


def login_page(lang: str, *, csrf: str, params: dict[str, str], error: str | None = None,
               username: str = "", upstream: str | None = None) -> str:
    t = TEXT[lang]
    err = f'<p role="alert" class="error">{escape(error)}</p>' if error else ""
    body = (f'{err}<form method="post" action="login">{_hidden({"csrf": csrf, **params})}'
            f'<label>{escape(t["username"])} <input name="username" autocomplete="username" '
            f'value="{escape(username)}" required></label>'
            f'<label>{escape(t["password"])} <input name="password" type="password" '
            f'autocomplete="current-password" required></label>'
            f'<button type="submit">{escape(t["sign_in"])}</button></form>')
    body += (f'<p><a class="wallet" href="wallet/login?{escape(urlencode(params))}">'
             f'{escape(t["wallet"])}</a></p>')
    if upstream:
        body += (f'<p><a class="upstream" href="upstream/start?{escape(urlencode(params))}">'
                 f'{escape(t["upstream"].format(name=upstream))}</a></p>')
    return _page(lang, t["login_title"], body)


def consent_page(lang: str, *, csrf: str, params: dict[str, str], client_name: str, scopes: list[str]) -> str:
    t = TEXT[lang]
    items = "".join(f"<li>{escape(t.get('scope_' + s, s))}</li>" for s in scopes)
    body = (f"<p>{escape(t['consent_intro'].format(client=client_name))}</p><ul>{items}</ul>"
            f'<form method="post" action="consent">{_hidden({"csrf": csrf, **params})}'
            f'<button type="submit" name="decision" value="allow">{escape(t["allow"])}</button>'
            f'<button type="submit" name="decision" value="deny">{escape(t["deny"])}</button></form>')
    return _page(lang, t["consent_title"].format(client=client_name), body)


def error_page(lang: str, error: str, description: str | None) -> str:
    t = TEXT[lang]
    body = f"<p><code>{escape(error)}</code></p><p>{escape(description or '')}</p>"
    return _page(lang, t["error_title"], body)


def message_page(lang: str, title_key: str, message: str) -> str:
    return _page(lang, TEXT[lang][title_key], f"<p>{escape(message)}</p>")
