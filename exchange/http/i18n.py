"""The portal's languages: which one a visitor gets, the text of a language map in it, and
the interface strings in Dutch, English and French.

A visitor's language is ``?lang=`` (which the portal keeps in the ``lang`` cookie), else
the cookie, else the first of nl, en and fr in ``Accept-Language`` (RFC 9110 §12.5.4, by
quality), else Dutch. A language map's text is the one in that language, else in Dutch,
English, French, else any: the portal never shows an empty title because a partner did
not translate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from exchange.http.negotiation import weighted

__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "LANGUAGE_NAMES",
    "Text",
    "country_name",
    "format_moment",
    "from_accept_language",
    "list_text",
    "pick",
    "strings",
]

LANGUAGES = ("nl", "en", "fr")
DEFAULT_LANGUAGE = "nl"
LANGUAGE_NAMES = {"nl": "Nederlands", "en": "English", "fr": "Français"}
FALLBACK = ("nl", "en", "fr")


def from_accept_language(header: str | None) -> str | None:
    """The supported language the ``Accept-Language`` header prefers, if any."""
    if not header:
        return None
    best: tuple[float, int] | None = None
    choice = None
    for position, (tag, quality) in enumerate(weighted(header)):
        primary = tag.split("-", 1)[0]
        if primary in LANGUAGES and quality > 0:
            rank = (quality, -position)
            if best is None or rank > best:
                best, choice = rank, primary
    return choice


@dataclass(frozen=True, slots=True)
class Text:
    """A text of a language map and the language it is in (for the ``lang`` attribute)."""

    value: str
    language: str


def _key_for(values: Mapping[str, Any], language: str) -> str | None:
    """The member of ``values`` in ``language``: the exact tag, else one of its subtags
    (``nl-BE`` for ``nl``)."""
    if language in values:
        return language
    for tag in values:
        if str(tag).lower().split("-", 1)[0] == language:
            return str(tag)
    return None


def _choose(values: object, language: str) -> tuple[Any, str] | None:
    if not isinstance(values, Mapping) or not values:
        return None
    for candidate in (language, *FALLBACK):
        key = _key_for(values, candidate)
        if key is not None:
            return values[key], key
    tag, value = next(iter(values.items()))
    return value, str(tag)


def pick(values: object, language: str) -> Text | None:
    """The text of language map ``values`` in ``language``, with the portal's fallback."""
    chosen = _choose(values, language)
    if chosen is None or not isinstance(chosen[0], str):
        return None
    return Text(chosen[0], chosen[1])


def list_text(values: object, language: str) -> tuple[list[str], str] | None:
    """The list of a language list map (``lessonsMap``) in ``language``, with fallback."""
    chosen = _choose(values, language)
    if chosen is None or not isinstance(chosen[0], list):
        return None
    return [str(item) for item in chosen[0]], chosen[1]


_MONTHS = {
    "nl": "januari februari maart april mei juni juli augustus september oktober november december",
    "en": "January February March April May June July August September October November December",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre",
}


def format_moment(moment: datetime, language: str) -> str:
    """A date and time in the event's own local time: ``21 November 2023, 17:00``."""
    month = _MONTHS[language].split()[moment.month - 1]
    joiner = {"nl": ",", "en": ",", "fr": " à"}[language]
    return f"{moment.day} {month} {moment.year}{joiner} {moment:%H:%M}"


_COUNTRIES = {
    "BE": ("België", "Belgium", "Belgique"),
    "NL": ("Nederland", "Netherlands", "Pays-Bas"),
    "LU": ("Luxemburg", "Luxembourg", "Luxembourg"),
    "FR": ("Frankrijk", "France", "France"),
    "DE": ("Duitsland", "Germany", "Allemagne"),
    "EU": ("Europese Unie", "European Union", "Union européenne"),
}


def country_name(code: str, language: str) -> str:
    names = _COUNTRIES.get(code.upper())
    return code if names is None else names[LANGUAGES.index(language)]


_STRINGS: dict[str, tuple[str, str, str]] = {
    # key: (nl, en, fr)
    "portal": ("Portaal", "Portal", "Portail"),
    "home": ("Start", "Home", "Accueil"),
    "cases": ("Cases", "Cases", "Cas"),
    "events": ("Evenementen", "Events", "Événements"),
    "practices": ("Goede praktijken", "Best practices", "Bonnes pratiques"),
    "about": ("Over dit knooppunt", "About this node", "À propos de ce nœud"),
    "intro": (
        "Grensoverschrijdende cases, evenementen en goede praktijken van overheden, "
        "gecontroleerd aan de handtekening van wie ze publiceerde.",
        "Cross-border cases, events and best practices of public bodies, each checked "
        "against the signature of the body that published it.",
        "Cas, événements et bonnes pratiques transfrontaliers des administrations, vérifiés "
        "avec la signature de qui les a publiés.",
    ),
    "all_cases": ("Alle cases", "All cases", "Tous les cas"),
    "all_events": ("Alle evenementen", "All events", "Tous les événements"),
    "all_practices": ("Alle goede praktijken", "All best practices", "Toutes les bonnes pratiques"),
    "upcoming": ("Komende evenementen", "Upcoming events", "Événements à venir"),
    "past": ("Voorbije evenementen", "Past events", "Événements passés"),
    "past_mark": ("Voorbij", "Past", "Passé"),
    "nothing": ("Nog niets.", "Nothing yet.", "Rien pour l'instant."),
    "from": ("Uit", "From", "De"),
    "platform": ("Platform", "Platform", "Plateforme"),
    "country": ("Land", "Country", "Pays"),
    "verified": ("Geverifieerd", "Verified", "Vérifié"),
    "verified_title": (
        "Handtekening en checkpoint van de herkomst gecontroleerd",
        "Signature and checkpoint of its origin verified",
        "Signature et point de contrôle de l'origine vérifiés",
    ),
    "own": ("Hier gepubliceerd", "Published here", "Publié ici"),
    "next_page": ("Volgende pagina", "Next page", "Page suivante"),
    "previous_page": ("Vorige pagina", "Previous page", "Page précédente"),
    "first_page": ("Eerste pagina", "First page", "Première page"),
    "date": ("Datum", "Date", "Date"),
    "ends": ("Tot", "Until", "Jusqu'au"),
    "venue": ("Locatie", "Venue", "Lieu"),
    "register": ("Inschrijven", "Register", "S'inscrire"),
    "organizers": ("Organisatoren", "Organisers", "Organisateurs"),
    "in_language": ("Taal van het evenement", "Language of the event", "Langue de l'événement"),
    "central_question": ("Centrale vraag", "Central question", "Question centrale"),
    "approach": ("Aanpak", "Approach", "Approche"),
    "next_step": ("Volgende stap", "Next step", "Prochaine étape"),
    "status": ("Status", "Status", "Statut"),
    "countries": ("Deelnemende landen", "Participating countries", "Pays participants"),
    "participants": ("Deelnemers", "Participants", "Participants"),
    "kind": ("Soort", "Kind", "Type"),
    "outcome": ("Resultaat", "Outcome", "Résultat"),
    "actions": ("Acties", "Actions", "Actions"),
    "lessons": ("Lessen", "Lessons", "Leçons"),
    "publisher": ("Uitgever", "Publisher", "Éditeur"),
    "themes": ("Thema's", "Themes", "Thèmes"),
    "more_info": ("Meer informatie", "More information", "Plus d'informations"),
    "license": ("Licentie", "Licence", "Licence"),
    "version": ("Versie", "Version", "Version"),
    "updated": ("Bijgewerkt", "Updated", "Mis à jour"),
    "signed_source": ("Ondertekend object", "Signed object", "Objet signé"),
    "not_found": ("Niet gevonden", "Not found", "Introuvable"),
    "not_found_text": (
        "Dit object bestaat hier niet, of het werd verwijderd.",
        "This object does not exist here, or it was deleted.",
        "Cet objet n'existe pas ici, ou il a été supprimé.",
    ),
    "network": ("Platforms in dit netwerk", "Platforms in this network", "Plateformes du réseau"),
    "this_node": ("dit knooppunt", "this node", "ce nœud"),
    "language": ("Taal", "Language", "Langue"),
    "in_other_language": ("in het", "in", "en"),
    "Case": ("Case", "Case", "Cas"),
    "Event": ("Evenement", "Event", "Événement"),
    "BestPractice": ("Goede praktijk", "Best practice", "Bonne pratique"),
    # Case status, practice kind and outcome: the schema's enumerations
    "proposed": ("voorgesteld", "proposed", "proposé"),
    "active": ("lopend", "active", "en cours"),
    "paused": ("gepauzeerd", "paused", "en pause"),
    "completed": ("afgerond", "completed", "terminé"),
    "stopped": ("gestopt", "stopped", "arrêté"),
    "experience": ("ervaring", "experience", "expérience"),
    "instrument": ("instrument", "instrument", "instrument"),
    "knowledge": ("kennis", "knowledge", "connaissance"),
    "connector": ("verbinder", "connector", "connecteur"),
    "success": ("geslaagd", "success", "réussite"),
    "partial-success": ("deels geslaagd", "partial success", "réussite partielle"),
    "enriching-failure": ("leerrijke mislukking", "enriching failure", "échec instructif"),
    "ongoing": ("lopend", "ongoing", "en cours"),
}


def strings(language: str) -> dict[str, str]:
    """The interface strings in ``language`` (one of :data:`LANGUAGES`)."""
    index = LANGUAGES.index(language)
    return {key: values[index] for key, values in _STRINGS.items()}
