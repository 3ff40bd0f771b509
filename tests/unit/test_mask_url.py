"""`mask_url` hides a URL's password however it is written: with every character a URL
reserves (a parser would end the host part at '/', '?' or '#' and show the rest), with
'%', spaces and any Unicode, in valid and invalid URLs alike."""

from __future__ import annotations

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from connectors import mask_url
from writers.http.settings import mask_query

RESERVED = ":/?#[]@!$&'()*+,;=%"
# Reserved characters, space, a few letters and digits, and any Unicode (line breaks too).
passwords = st.text(
    alphabet=st.one_of(st.sampled_from(RESERVED + " aZ09-._~"), st.characters()), min_size=1
)
# What may follow the host: a path, a query, a fragment, '@' included.
tails = st.text(alphabet=st.sampled_from(RESERVED + "abc/"), max_size=20)


@given(passwords)
@example("pa/ss")
@example("p#w?d")
@example("a@b/c")
@example("*****")
@example("12/x")
def test_a_redis_password_is_masked_whatever_it_holds(password: str) -> None:
    assert mask_url(f"redis://user:{password}@host:6379/0") == "redis://user:*****@host:6379/0"
    assert mask_url(f"redis://:{password}@cache:6379/0") == "redis://:*****@cache:6379/0"


@given(passwords)
def test_an_http_password_is_masked_whatever_it_holds(password: str) -> None:
    url = f"https://svc:{password}@api.example.com:8443/v1/events?x=1"
    assert mask_url(url) == "https://svc:*****@api.example.com:8443/v1/events?x=1"
    assert mask_query(url) == "https://svc:*****@api.example.com:8443/v1/events?x=*****"


@given(passwords, tails)
def test_an_at_sign_after_the_host_hides_more_never_less(password: str, tail: str) -> None:
    """With '@' in the path or query the password's end is ambiguous: the mask may take
    more than the password, never leave a part of it."""
    prefix = "https://u:"
    assume(len(password) >= 4 and password not in tail and password not in prefix)
    masked = mask_url(f"{prefix}{password}@host/{tail}")
    assert password not in masked.replace("*****", "\0")


@pytest.mark.parametrize(
    "text",
    [
        "lmdb:./.local/kv",
        "redis://cache:6379/0",
        "redis://user@cache:6379/0",
        "https://api.example.com/users/@me",
        "127.0.0.1:9092,broker:9093",
        "('t1', 't2')",
    ],
)
def test_text_without_a_password_is_left_alone(text: str) -> None:
    assert mask_url(text) == text


def test_invalid_urls_are_masked_too() -> None:
    """Configuration errors show invalid values, exactly where a parser gives up."""
    assert mask_url("redis://:pw@[::1:6379/0") == "redis://:*****@[::1:6379/0"
    assert mask_url("redis://:pw@host:notaport/0") == "redis://:*****@host:notaport/0"
