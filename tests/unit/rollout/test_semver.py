from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpufleet.rollout.semver import InvalidVersion, Version, dotted_at_least, parse_dotted

# The precedence example from semver.org section 11, in ascending order.
SPEC_ORDER = [
    "1.0.0-alpha",
    "1.0.0-alpha.1",
    "1.0.0-alpha.beta",
    "1.0.0-beta",
    "1.0.0-beta.2",
    "1.0.0-beta.11",
    "1.0.0-rc.1",
    "1.0.0",
    "1.0.1",
    "1.1.0",
    "2.0.0",
    "10.0.0",
]


def test_precedence_follows_semver_spec() -> None:
    parsed = [Version.parse(v) for v in SPEC_ORDER]
    shuffled = list(reversed(parsed))
    assert [str(v) for v in sorted(shuffled)] == SPEC_ORDER
    for lower, higher in itertools.pairwise(parsed):
        assert lower < higher
        assert not higher < lower


def test_build_metadata_is_ignored_for_precedence_but_kept_in_text() -> None:
    a, b = Version.parse("1.2.3+build.5"), Version.parse("1.2.3+other")
    assert a == b
    assert hash(a) == hash(b)
    assert str(a) == "1.2.3+build.5"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("v1.2.3", "drop the leading 'v'"),
        ("1.2", "MAJOR.MINOR.PATCH"),
        ("01.2.3", "invalid semantic version"),
        ("1.2.3-", "invalid semantic version"),
        ("1.2.3-01", "invalid semantic version"),
        ("", "invalid semantic version"),
    ],
)
def test_invalid_versions_are_rejected_with_a_clear_message(text: str, fragment: str) -> None:
    with pytest.raises(InvalidVersion, match=fragment):
        Version.parse(text)


def test_major_upgrade_detection() -> None:
    assert Version.parse("2.0.0").is_major_upgrade_from(Version.parse("1.9.9"))
    assert not Version.parse("1.10.0").is_major_upgrade_from(Version.parse("1.9.9"))
    assert not Version.parse("1.0.0").is_major_upgrade_from(Version.parse("2.0.0"))


@given(
    st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)),
    st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50)),
)
def test_release_versions_order_like_their_numeric_triples(
    a: tuple[int, int, int], b: tuple[int, int, int]
) -> None:
    va, vb = Version.parse(".".join(map(str, a))), Version.parse(".".join(map(str, b)))
    assert (va < vb) == (a < b)
    assert (va == vb) == (a == b)
    assert Version.parse(str(va)) == va


@given(
    st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 20)),
    st.text("abc", min_size=1, max_size=4),
)
def test_a_prerelease_ranks_below_its_release(core: tuple[int, int, int], tag: str) -> None:
    release = Version.parse(".".join(map(str, core)))
    assert Version.parse(f"{release}-{tag}") < release


def test_driver_and_cuda_versions_compare_numerically() -> None:
    assert dotted_at_least("550.54.15", "550.54.15", what="driver")
    assert dotted_at_least("550.100.1", "550.54.15", what="driver")  # 100 > 54, not text order
    assert not dotted_at_least("535.161.08", "550.54.15", what="driver")
    assert dotted_at_least("12.4", "12.4.0", what="CUDA")
    assert not dotted_at_least("12.2", "12.4", what="CUDA")
    assert parse_dotted("12.10", what="CUDA") > parse_dotted("12.9", what="CUDA")
    with pytest.raises(InvalidVersion, match="invalid driver version 'r550'"):
        parse_dotted("r550", what="driver")
