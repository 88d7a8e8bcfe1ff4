"""runtime.image.reference: distribution/reference's grammar and Docker's normalisation."""

from __future__ import annotations

import pytest

from runtime.errors import InvalidReference
from runtime.image.reference import Reference, is_reference, parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "canonical", "familiar"),
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
        ("ghcr.io/org/team/app:main", "ghcr.io/org/team/app:main", "ghcr.io/org/team/app:main"),
        ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
        ("localhost:5000/ns/repo:tag", "localhost:5000/ns/repo:tag", "localhost:5000/ns/repo:tag"),
        ("registry:5000/repo", "registry:5000/repo:latest", "registry:5000/repo:latest"),
        ("[::1]:5000/repo:t", "[::1]:5000/repo:t", "[::1]:5000/repo:t"),
        (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}"),
        (f"busybox:1@{DIGEST}", f"docker.io/library/busybox:1@{DIGEST}", f"busybox:1@{DIGEST}"),
        ("a-b__c/e---f.g:T_a.g-1", "docker.io/a-b__c/e---f.g:T_a.g-1", "a-b__c/e---f.g:T_a.g-1"),
        ("Foo/bar", "Foo/bar:latest", "Foo/bar:latest"),  # an uppercase first part is a host
        ("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000"),
    ],
)
def test_it_normalises_references(text: str, canonical: str, familiar: str) -> None:
    ref = parse_reference(text)
    assert (str(ref), ref.familiar) == (canonical, familiar)
    assert parse_reference(str(ref)) == ref


def test_it_exposes_the_parts() -> None:
    ref = parse_reference("localhost:5000/ns/repo:tag")
    assert ref == Reference("localhost:5000", "ns/repo", "tag", None)
    assert ref.name == "localhost:5000/ns/repo"
    assert parse_reference("busybox").name == "docker.io/library/busybox"
    assert parse_reference("busybox", default_tag=False).tag is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty reference"),
        ("Busybox", "must be lowercase"),
        ("docker.io/Library/busybox", "must be lowercase"),
        ("busybox:", "empty tag"),
        ("busybox:" + "t" * 129, "longer than 128"),
        ("busybox:-bad", "invalid tag"),
        ("busybox:a/b", "invalid registry domain"),
        ("a//b", "empty path component"),
        ("a/", "empty path component"),
        ("/a", "empty path component"),
        ("bad_/x", "invalid path component"),
        ("-a/b", "invalid path component"),
        ("a-/b", "invalid path component"),
        ("host:port/x", "invalid registry domain"),
        ("-host.io/x", "invalid registry domain"),
        ("busybox@", "empty digest"),
        ("busybox@sha256:abc", "expected <algorithm>:<hex>"),
        ("busybox@sha256:" + "a" * 40, "expected 64"),
        ("a_b.io/x", "invalid registry domain"),
        ("busybox@sha256:" + "AB" * 32, "lowercase hex"),
        ("busybox@md5:" + "ab" * 16, "unsupported algorithm"),
        ("busybox@nothex", "invalid digest"),
        ("busy box", "whitespace"),
        ("ab" * 32, "64-character hex"),
        ("a" * 256, "longer than 255"),
        ("a@b@c", "invalid digest"),
    ],
)
def test_it_says_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(InvalidReference, match=reason) as caught:
        parse_reference(text)
    assert caught.value.reference == text
    assert not is_reference(text)


def test_it_accepts_the_longest_tag() -> None:
    assert parse_reference("busybox:" + "t" * 128).tag == "t" * 128
