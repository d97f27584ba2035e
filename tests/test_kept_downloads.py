"""What the pip route on a static mirror reuses from its one download (issue 25)."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pip_gpu.kept_downloads import KeptIndex, user_places


@pytest.mark.parametrize(
    ("index_args", "global_options", "indexes"),
    [
        ((), (), ("https://pypi.org/simple",)),
        (
            ("--index-url", "https://mirror/simple", "--extra-index-url", "https://extra/simple"),
            (),
            ("https://mirror/simple", "https://extra/simple"),
        ),
        # a file could come from a place no page lists, or the files choose indexes: reuse nothing
        (("--find-links", "/wheels"), (), None),
        (("--no-index",), (), None),
        ((), (("--index-url", "https://other/simple"),), None),
    ],
)
def test_the_places_whose_pages_decide_what_is_reused(index_args, global_options, indexes) -> None:  # type: ignore[no-untyped-def]
    assert user_places(index_args, global_options) == indexes


def test_the_local_index_serves_its_pages_only_under_its_token(tmp_path: Path) -> None:
    (tmp_path / "sympy").mkdir()
    (tmp_path / "sympy" / "index.html").write_text('<a href="file:///x/sympy-1.0-py3-none-any.whl">s</a>')
    with KeptIndex(tmp_path) as kept:
        assert b"sympy-1.0" in urllib.request.urlopen(kept.url + "sympy/").read()
        for missing in (kept.url + "numpy/", kept.url.rsplit("/", 2)[0] + "/sympy/", kept.url + "../sympy/"):
            with pytest.raises(urllib.error.HTTPError) as error:
                urllib.request.urlopen(missing)
            assert error.value.code == 404
