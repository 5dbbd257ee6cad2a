"""Find the portal's and dashboard's ``data-testid`` hooks in a page (stdlib parser only)."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"meta", "link", "input", "br", "hr", "img"}


@dataclass
class Hook:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Hook] = field(default_factory=list)

    def find(self, testid: str) -> list[Hook]:
        return [h for h in self.children if h.attrs.get("data-testid") == testid]

    def one(self, testid: str) -> Hook:
        found = self.find(testid)
        assert len(found) == 1, (testid, found)
        return found[0]


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hooks: list[Hook] = []
        self.open: list[tuple[str, Hook | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        hook = Hook(tag, values) if "data-testid" in values else None
        if hook is not None:
            for _, outer in self.open:
                if outer is not None:
                    outer.children.append(hook)
            self.hooks.append(hook)
        if tag not in VOID:
            self.open.append((tag, hook))

    def handle_endtag(self, tag: str) -> None:
        while self.open:
            name, _ = self.open.pop()
            if name == tag:
                break

    def handle_data(self, data: str) -> None:
        for _, hook in self.open:
            if hook is not None:
                hook.text += data


def hooks(page: str, testid: str | None = None) -> list[Hook]:
    """Every element with a data-testid (or only ``testid``), with its text and the hooks
    inside it, in document order."""
    collector = _Collector()
    collector.feed(page)
    collector.close()
    if testid is None:
        return collector.hooks
    return [h for h in collector.hooks if h.attrs.get("data-testid") == testid]
