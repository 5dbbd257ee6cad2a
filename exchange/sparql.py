"""The SPARQL endpoint's pure parts: what it refuses to run, and how it writes answers.

The endpoint is read-only (SPARQL 1.1 Protocol, query operation only). Oxigraph's query
parser already rejects every update form; ``check_read_only`` also refuses ``SERVICE``
(a query that makes the node fetch from elsewhere) and ``LOAD`` with a clear message,
looking at the query's keywords outside strings, IRIs and comments.

Answers of SELECT and ASK are written as SPARQL 1.1 Query Results JSON, XML, CSV or TSV;
CONSTRUCT and DESCRIBE answers are RDF, written by Oxigraph.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

import pyoxigraph as ox

from exchange.errors import QueryRefused

__all__ = [
    "BELGIAN_EVENTS_NEXT_30_DAYS",
    "GRAPH_TYPES",
    "RESULT_TYPES",
    "Answer",
    "check_read_only",
    "write_results",
]

RESULTS_JSON = "application/sparql-results+json"
RESULTS_XML = "application/sparql-results+xml"
#: What a SELECT or ASK answer can be written as, the default first.
RESULT_TYPES = (
    RESULTS_JSON,
    RESULTS_XML,
    "text/csv",
    "text/tab-separated-values",
    "application/json",
)
#: What a CONSTRUCT or DESCRIBE answer can be written as, the default first.
GRAPH_TYPES = ("text/turtle", "application/n-triples", "application/ld+json")

#: The acceptance query (docs/decisions.md, "Linked data and SPARQL"): events that start
#: in the next 30 days, published by nodes in Belgium, soonest first. A node's country is
#: the ``exv:country`` of its base URL, which the node is ``as:attributedTo``. (Oxigraph
#: subtracts dateTimes but does not add a duration to one: hence ``?start - NOW()``.)
BELGIAN_EVENTS_NEXT_30_DAYS = """\
PREFIX as: <https://www.w3.org/ns/activitystreams#>
PREFIX exv: <https://w3id.org/exchange/ns#>
PREFIX xsd: <http://www.w3.org/2001/XMLSchema#>
SELECT ?event ?start ?name ?node WHERE {
  ?node exv:country "BE" .
  ?event a as:Event ;
         as:attributedTo ?node ;
         as:startTime ?start .
  FILTER (?start >= NOW() && ?start - NOW() < "P30D"^^xsd:dayTimeDuration)
  OPTIONAL { ?event as:name ?name . FILTER (langMatches(lang(?name), "nl")) }
}
ORDER BY ?start
"""

_XSD_STRING = "http://www.w3.org/2001/XMLSchema#string"
_SKIPPED = re.compile(
    r'"""(?:[^\\]|\\.)*?"""'
    r"|'''(?:[^\\]|\\.)*?'''"
    r'|"(?:[^"\\\n]|\\.)*"'
    r"|'(?:[^'\\\n]|\\.)*'"
    r'|<[^<>"{}|^`\\\x00-\x20]*>'
    r"|#[^\n]*",
    re.DOTALL,
)
_FORBIDDEN = re.compile(
    r"(?<![\w:?$@.-])(SERVICE|LOAD|INSERT|DELETE|CLEAR|DROP|CREATE|ADD|MOVE|COPY)(?![\w:-])",
    re.IGNORECASE,
)


def check_read_only(query: str) -> None:
    """Raise QueryRefused for ``SERVICE``, ``LOAD`` and every update operation."""
    bare = _SKIPPED.sub(" ", query)
    found = _FORBIDDEN.search(bare)
    if found is None:
        return
    keyword = found.group(1).upper()
    if keyword == "SERVICE":
        raise QueryRefused("SERVICE is not allowed: this endpoint queries the merged view only")
    raise QueryRefused(f"{keyword}: this endpoint is read-only; it runs queries, not updates")


@dataclass(frozen=True, slots=True)
class Answer:
    """What a query answered: solutions (SELECT), a boolean (ASK) or triples (CONSTRUCT,
    DESCRIBE)."""

    form: str  # solutions | boolean | graph
    variables: tuple[str, ...] = ()
    rows: Sequence[tuple[ox.NamedNode | ox.BlankNode | ox.Literal | ox.Triple | None, ...]] = ()
    boolean: bool = False
    triples: Sequence[ox.Triple] = field(default_factory=tuple)


def write_results(answer: Answer, media_type: str) -> bytes:
    """A SELECT or ASK answer in one of RESULT_TYPES."""
    if media_type in (RESULTS_JSON, "application/json"):
        return _json(answer)
    if media_type == RESULTS_XML:
        return _xml(answer)
    if media_type == "text/csv":
        return _csv(answer)
    return _tsv(answer)


def _json_term(term: object) -> dict[str, object]:
    if isinstance(term, ox.NamedNode):
        return {"type": "uri", "value": term.value}
    if isinstance(term, ox.BlankNode):
        return {"type": "bnode", "value": term.value}
    if isinstance(term, ox.Literal):
        value: dict[str, object] = {"type": "literal", "value": term.value}
        if term.language:
            value["xml:lang"] = term.language
        elif term.datatype.value != _XSD_STRING:
            value["datatype"] = term.datatype.value
        return value
    if isinstance(term, ox.Triple):
        return {
            "type": "triple",
            "value": {
                "subject": _json_term(term.subject),
                "predicate": _json_term(term.predicate),
                "object": _json_term(term.object),
            },
        }
    raise TypeError(f"not an RDF term: {term!r}")


def _json(answer: Answer) -> bytes:
    if answer.form == "boolean":
        return json.dumps({"head": {}, "boolean": answer.boolean}).encode()
    bindings = [
        {name: _json_term(term) for name, term in zip(answer.variables, row, strict=True) if term}
        for row in answer.rows
    ]
    document = {"head": {"vars": list(answer.variables)}, "results": {"bindings": bindings}}
    return json.dumps(document, ensure_ascii=False).encode()


def _xml_term(term: object) -> str:
    if isinstance(term, ox.NamedNode):
        return f"<uri>{escape(term.value)}</uri>"
    if isinstance(term, ox.BlankNode):
        return f"<bnode>{escape(term.value)}</bnode>"
    if isinstance(term, ox.Literal):
        if term.language:
            return f"<literal xml:lang={quoteattr(term.language)}>{escape(term.value)}</literal>"
        if term.datatype.value != _XSD_STRING:
            datatype = quoteattr(term.datatype.value)
            return f"<literal datatype={datatype}>{escape(term.value)}</literal>"
        return f"<literal>{escape(term.value)}</literal>"
    return f"<literal>{escape(str(term))}</literal>"


def _xml(answer: Answer) -> bytes:
    parts = [
        '<?xml version="1.0"?>\n<sparql xmlns="http://www.w3.org/2005/sparql-results#">',
        "<head>",
    ]
    parts += [f"<variable name={quoteattr(name)}/>" for name in answer.variables]
    parts.append("</head>")
    if answer.form == "boolean":
        parts.append(f"<boolean>{'true' if answer.boolean else 'false'}</boolean>")
    else:
        parts.append("<results>")
        for row in answer.rows:
            parts.append("<result>")
            for name, term in zip(answer.variables, row, strict=True):
                if term is not None:
                    parts.append(f"<binding name={quoteattr(name)}>{_xml_term(term)}</binding>")
            parts.append("</result>")
        parts.append("</results>")
    parts.append("</sparql>\n")
    return "".join(parts).encode()


def _csv_value(term: object) -> str:
    if term is None:
        return ""
    if isinstance(term, ox.BlankNode):
        return f"_:{term.value}"
    if isinstance(term, ox.NamedNode | ox.Literal):
        return term.value
    return str(term)


def _csv(answer: Answer) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if answer.form == "boolean":
        writer.writerow(["boolean"])
        writer.writerow(["true" if answer.boolean else "false"])
    else:
        writer.writerow(answer.variables)
        writer.writerows([_csv_value(term) for term in row] for row in answer.rows)
    return out.getvalue().encode()


def _tsv(answer: Answer) -> bytes:
    if answer.form == "boolean":
        return f"?boolean\n{'true' if answer.boolean else 'false'}\n".encode()
    lines = ["\t".join(f"?{name}" for name in answer.variables)]
    lines += ["\t".join("" if term is None else str(term) for term in row) for row in answer.rows]
    return ("\n".join(lines) + "\n").encode()
