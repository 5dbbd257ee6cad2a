"""Hypothesis strategies for I-JSON values (RFC 7493)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from exchange.canonical import MAX_SAFE_INTEGER

# Any Unicode scalar value: no lone surrogates (category Cs excluded).
ijson_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
safe_integers = st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)

ijson_scalars = st.none() | st.booleans() | safe_integers | finite_floats | ijson_text
integer_scalars = st.none() | st.booleans() | safe_integers | ijson_text


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=5) | st.dictionaries(ijson_text, children, max_size=5)


ijson_values = st.recursive(ijson_scalars, _containers, max_leaves=25)
# Floats whose canonical form reads back as a number the parser accepts: an integral double
# beyond 2^53 prints as an integer literal, which I-JSON parsing rejects on purpose.
bounded_floats = st.floats(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
reparseable_values = st.recursive(
    st.none() | st.booleans() | safe_integers | bounded_floats | ijson_text,
    _containers,
    max_leaves=25,
)
integer_values = st.recursive(integer_scalars, _containers, max_leaves=25)
ijson_objects = st.dictionaries(ijson_text, ijson_values, min_size=1, max_size=6)
