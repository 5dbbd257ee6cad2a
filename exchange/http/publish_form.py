"""The dashboard's publish form: its fields, the draft a submission builds, and where each
schema issue is shown.

Field names (``name-nl``, ``startTime``, ``participant``...) and the JSON Pointer each
stands for are in :data:`FIELDS`. A field whose text is one item per line (participants,
organisers, actions, lessons) or a single name (the venue) is written in the form's
``language``. Date-times come from ``datetime-local`` inputs plus ``utcOffset``
(``+01:00``), as the schema wants RFC 3339 with an offset. Empty fields are left out,
so that the schema says what is missing.

A schema issue is shown next to the field whose pointer is the longest prefix of the
issue's pointer (``/nameMap/nl`` -> ``name-nl``), else next to the first field under it
(``/location`` -> ``venue``), else above the form.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exchange.errors import Issue
from exchange.http.html import Child, Safe, el
from exchange.http.i18n import LANGUAGE_NAMES, LANGUAGES

__all__ = ["FIELDS", "Field", "draft_from_form", "place_issues", "render_form"]

TYPES = ("Case", "Event", "BestPractice")


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    label: str
    pointer: str  # "" for a field that is not a member of its own
    kind: str = "text"  # text | textarea | select | datetime | url
    group: str = "common"  # common | Case | Event | BestPractice
    options: tuple[str, ...] = ()
    hint: str = ""


def _per_language(
    prefix: str, member: str, label: str, kind: str = "text", group: str = "common"
) -> list[Field]:
    return [
        Field(
            f"{prefix}-{lang}",
            f"{label} ({LANGUAGE_NAMES[lang]})",
            f"/{member}/{lang}",
            kind,
            group,
        )
        for lang in LANGUAGES
    ]


FIELDS: tuple[Field, ...] = (
    Field("type", "Type", "/type", "select", options=TYPES),
    Field(
        "language",
        "Language of names and lists below",
        "",
        "select",
        options=LANGUAGES,
        hint="participants, organisers, venue, actions and lessons are written in it",
    ),
    *_per_language("name", "nameMap", "Title"),
    *_per_language("summary", "summaryMap", "Summary", "textarea"),
    *_per_language("content", "contentMap", "Text", "textarea"),
    Field("url", "More information (URL)", "/url", "url"),
    Field("license", "Licence (URL)", "/license", "url"),
    *_per_language("centralQuestion", "centralQuestionMap", "Central question", "textarea", "Case"),
    Field(
        "status",
        "Status",
        "/status",
        "select",
        "Case",
        ("", "proposed", "active", "paused", "completed", "stopped"),
    ),
    Field(
        "participatingCountry",
        "Participating countries",
        "/participatingCountry",
        group="Case",
        hint="ISO codes separated by spaces, e.g. BE NL",
    ),
    Field(
        "participant",
        "Participating organisations",
        "/participant",
        "textarea",
        "Case",
        hint="one per line",
    ),
    Field("startTime", "Starts", "/startTime", "datetime", "Event"),
    Field("endTime", "Ends", "/endTime", "datetime", "Event"),
    Field("utcOffset", "UTC offset of these times", "", group="Event", hint="e.g. +01:00"),
    Field("venue", "Venue", "/location/nameMap", group="Event"),
    Field("venueAddress", "Venue address", "/location/address", group="Event"),
    Field("organizer", "Organisers", "/organizer", "textarea", "Event", hint="one per line"),
    Field("registrationPage", "Registration page (URL)", "/registrationPage", "url", "Event"),
    Field(
        "practiceKind",
        "Kind",
        "/practiceKind",
        "select",
        "BestPractice",
        ("", "experience", "instrument", "knowledge", "connector"),
    ),
    Field(
        "outcome",
        "Outcome",
        "/outcome",
        "select",
        "BestPractice",
        ("", "success", "partial-success", "enriching-failure", "ongoing"),
    ),
    Field("actions", "Actions", "/actionsMap", "textarea", "BestPractice", hint="one per line"),
    Field("lessons", "Lessons", "/lessonsMap", "textarea", "BestPractice", hint="one per line"),
)

_LOCAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?")


def _value(form: Mapping[str, str], name: str) -> str:
    return form.get(name, "").strip()


def _lines(form: Mapping[str, str], name: str) -> list[str]:
    return [line.strip() for line in form.get(name, "").splitlines() if line.strip()]


def _moment(form: Mapping[str, str], name: str) -> str:
    value = _value(form, name)
    match = _LOCAL.fullmatch(value)
    if match is None:
        return value  # typed in full (or wrong): the schema judges it
    seconds = "" if match.group(1) else ":00"
    return f"{value}{seconds}{_value(form, 'utcOffset') or 'Z'}"


def _organisations(names: Sequence[str], language: str) -> list[dict[str, Any]]:
    return [{"type": "Organization", "nameMap": {language: name}} for name in names]


def draft_from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """The draft object a submission of the form stands for (not yet validated)."""
    type_name = _value(form, "type")
    language = _value(form, "language")
    language = language if language in LANGUAGES else LANGUAGES[0]
    draft: dict[str, Any] = {"type": type_name}

    def language_map(prefix: str, member: str) -> None:
        values = {lang: _value(form, f"{prefix}-{lang}") for lang in LANGUAGES}
        found = {lang: text for lang, text in values.items() if text}
        if found:
            draft[member] = found

    def plain(name: str, member: str | None = None) -> None:
        if _value(form, name):
            draft[member or name] = _value(form, name)

    language_map("name", "nameMap")
    language_map("summary", "summaryMap")
    language_map("content", "contentMap")
    plain("url")
    plain("license")
    if type_name == "Case":
        language_map("centralQuestion", "centralQuestionMap")
        plain("status")
        countries = re.split(r"[\s,;]+", _value(form, "participatingCountry"))
        if any(countries):
            draft["participatingCountry"] = [c.upper() for c in countries if c]
        if _lines(form, "participant"):
            draft["participant"] = _organisations(_lines(form, "participant"), language)
    elif type_name == "Event":
        for name in ("startTime", "endTime"):
            if _value(form, name):
                draft[name] = _moment(form, name)
        location: dict[str, Any] = {"type": "Place"}
        if _value(form, "venue"):
            location["nameMap"] = {language: _value(form, "venue")}
        if _value(form, "venueAddress"):
            location["address"] = {"type": "Address", "fullAddress": _value(form, "venueAddress")}
        if len(location) > 1:
            draft["location"] = location
        if _lines(form, "organizer"):
            draft["organizer"] = _organisations(_lines(form, "organizer"), language)
        plain("registrationPage")
    elif type_name == "BestPractice":
        plain("practiceKind")
        plain("outcome")
        for name, member in (("actions", "actionsMap"), ("lessons", "lessonsMap")):
            if _lines(form, name):
                draft[member] = {language: _lines(form, name)}
    return draft


def _under(pointer: str, prefix: str) -> bool:
    return pointer == prefix or pointer.startswith(prefix + "/")


def place_issues(
    issues: Sequence[Issue], type_name: str
) -> tuple[dict[str, list[Issue]], list[Issue]]:
    """Which field each issue is shown next to, and the issues shown above the form."""
    fields = [f for f in FIELDS if f.pointer and f.group in ("common", type_name)]
    by_field: dict[str, list[Issue]] = {}
    general: list[Issue] = []
    for issue in issues:
        holders = [f for f in fields if _under(issue.pointer, f.pointer)]
        if holders:
            holder = max(holders, key=lambda f: len(f.pointer))
        else:
            below = [f for f in fields if issue.pointer and _under(f.pointer, issue.pointer)]
            if not below:
                general.append(issue)
                continue
            holder = below[0]
        by_field.setdefault(holder.name, []).append(issue)
    return by_field, general


def _error(issue: Issue, element_id: str | None = None) -> Safe:
    return el(
        "p",
        {
            "class": "error",
            "data-testid": "field-error",
            "data-field": issue.pointer,
            "id": element_id,
        },
        issue.message,
    )


def _control(field: Field, value: str, invalid: bool) -> Safe:
    attrs: dict[str, str | bool | None] = {
        "id": f"f-{field.name}",
        "name": field.name,
        "aria-invalid": "true" if invalid else None,
        "aria-describedby": f"e-{field.name}" if invalid else None,
    }
    if field.kind == "textarea":
        return el("textarea", attrs, value)
    if field.kind == "select":
        return el(
            "select",
            attrs,
            [
                el("option", {"value": option, "selected": option == value}, option or "—")
                for option in field.options
            ],
        )
    kinds = {"datetime": "datetime-local", "url": "url", "text": "text"}
    return el("input", {**attrs, "type": kinds[field.kind], "value": value})


def render_form(
    *,
    action: str,
    values: Mapping[str, str],
    by_field: Mapping[str, Sequence[Issue]],
    general: Sequence[Issue],
    csrf: str | None,
) -> Safe:
    """The form, with the user's input kept and each issue next to its field."""
    defaults = {"language": "nl", "utcOffset": "+01:00", "type": "Case"}
    groups: dict[str, list[Child]] = {}
    for field in FIELDS:
        value = values.get(field.name, defaults.get(field.name, ""))
        issues = by_field.get(field.name, ())
        groups.setdefault(field.group, []).append(
            [
                el("label", {"for": f"f-{field.name}"}, field.label),
                el("small", None, field.hint) if field.hint else None,
                _control(field, value, bool(issues)),
                [
                    _error(issue, f"e-{field.name}" if i == 0 else None)
                    for i, issue in enumerate(issues)
                ],
            ]
        )
    legends = {
        "common": "Every type",
        "Case": "For a case",
        "Event": "For an event",
        "BestPractice": "For a best practice",
    }
    return el(
        "form",
        {"method": "post", "action": action, "class": "stack", "data-testid": "publish-form"},
        el("div", {"role": "alert"}, [_error(issue) for issue in general]) if general else None,
        el("input", {"type": "hidden", "name": "csrf", "value": csrf}) if csrf else None,
        [el("fieldset", None, el("legend", None, legends[g]), groups[g]) for g in legends],
        el("button", {"type": "submit"}, "Publish"),
    )
